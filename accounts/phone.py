"""Phone numbers: everything is stored and compared in E.164 (+919812345678)."""

import phonenumbers
from django.conf import settings
from django.core.exceptions import ValidationError


def normalize_phone(raw: str) -> str:
    """E.164 form of a phone number; numbers without a country code are read as Indian."""
    try:
        number = phonenumbers.parse(str(raw).strip(), settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise ValidationError("Enter a valid phone number, e.g. +919812345678.") from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError("Enter a valid phone number, e.g. +919812345678.")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def validate_e164(value: str) -> None:
    if normalize_phone(value) != value:
        raise ValidationError("Store phone numbers in E.164 form, e.g. +919812345678.")


def mask_phone(phone: str) -> str:
    """+919812345678 -> +91******5678: enough to recognise, not enough to call."""
    return phone[:3] + "*" * max(0, len(phone) - 7) + phone[-4:]
