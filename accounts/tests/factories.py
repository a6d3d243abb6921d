"""Factories for accounts: users and login-code challenges with a known code."""

from datetime import timedelta

import factory
from django.conf import settings
from django.utils import timezone

from accounts.models import OtpChallenge, User
from accounts.services import otp_code_hmac


def phone_number(n: int) -> str:
    # +91 98xxxxxxxx numbers are valid Indian mobiles for the phonenumbers library.
    return f"+9198{n:08d}"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ["phone"]

    phone = factory.Sequence(lambda n: phone_number(10_000_000 + n))
    name = factory.Faker("name")
    is_customer = True


class OtpChallengeFactory(factory.django.DjangoModelFactory):
    """A challenge whose plain code is `code` (default 123456)."""

    class Meta:
        model = OtpChallenge
        exclude = ["code"]

    phone = factory.Sequence(lambda n: phone_number(20_000_000 + n))
    code = "123456"
    code_hmac = factory.LazyAttribute(lambda o: otp_code_hmac(phone=o.phone, code=o.code))
    expires_at = factory.LazyFunction(
        lambda: timezone.now() + timedelta(seconds=settings.OTP_EXPIRY_SECONDS)
    )
    ip = "127.0.0.1"
