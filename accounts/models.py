"""Users are keyed by phone number; one person may be a customer, a rider and staff."""

import contextlib
import uuid

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from accounts.phone import normalize_phone, validate_e164
from core.models import TimestampedModel


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, phone):
        # The admin login accepts "98123 45678" as well as "+919812345678".
        with contextlib.suppress(ValidationError):  # an unparsable number matches nobody
            phone = normalize_phone(phone)
        return self.get(phone=phone)

    def create_user(self, phone, password=None, **fields):
        user = self.model(phone=normalize_phone(phone), **fields)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()  # customers and riders sign in with an OTP
        user.save(using=self._db)
        return user

    def create_superuser(self, phone, password=None, **fields):
        fields.update(is_staff=True, is_superuser=True)
        return self.create_user(phone, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    phone = models.CharField(
        max_length=16, unique=True, validators=[validate_e164], help_text="E.164, e.g. +9198..."
    )
    name = models.CharField(max_length=100, blank=True)
    is_customer = models.BooleanField(default=False)
    is_rider = models.BooleanField(default=False)
    is_staff = models.BooleanField(default=False, help_text="Can sign in to the admin.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    USERNAME_FIELD = "phone"
    REQUIRED_FIELDS = ["name"]

    objects = UserManager()

    class Meta:
        ordering = ["-date_joined"]

    def __str__(self):
        return f"{self.name or 'user'} ({self.phone})"

    @property
    def roles(self) -> list[str]:
        flags = {"customer": self.is_customer, "rider": self.is_rider, "staff": self.is_staff}
        return [role for role, held in flags.items() if held]


class OtpChallenge(TimestampedModel):
    """One login code sent to one phone; only the phone's newest challenge can be verified.

    The code itself is never stored: `code_hmac` is HMAC-SHA256 of phone and code under
    OTP_HMAC_KEY, so a database leak does not hand out live codes.
    """

    phone = models.CharField(max_length=16, validators=[validate_e164])
    code_hmac = models.CharField(max_length=64)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Wrong codes tried.")
    used_at = models.DateTimeField(null=True, blank=True)
    burned_at = models.DateTimeField(
        null=True, blank=True, help_text="Set when too many wrong codes were tried."
    )
    ip = models.GenericIPAddressField(null=True, blank=True, help_text="Who asked for it.")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["phone", "-created_at"], name="otp_phone_newest"),
            # the hour's codes, all numbers: SMS_HOURLY_BUDGET
            models.Index(fields=["created_at"], name="otp_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(used_at__isnull=True) | models.Q(burned_at__isnull=True),
                name="otp_not_both_used_and_burned",
            )
        ]

    def __str__(self):
        return f"OTP for {self.phone} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class SmsMessage(TimestampedModel):
    """An outgoing SMS: the dummy provider's outbox and the delivery record of real providers.

    Real providers' rows have the code masked in `body` and `params` once the send is settled;
    dummy rows keep it, because reading it back (manage.py sms_outbox) is their purpose.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    phone = models.CharField(max_length=16, validators=[validate_e164])
    body = models.TextField()
    params = models.JSONField(
        default=dict, blank=True, help_text="Template variables for providers that use templates."
    )
    provider = models.CharField(max_length=16)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    provider_message_id = models.CharField(max_length=100, blank=True)
    error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["phone", "-created_at"], name="sms_phone_newest")]

    def __str__(self):
        return f"SMS to {self.phone} ({self.status})"
