"""Reads for accounts: the SMS outbox."""

from django.db.models import QuerySet

from accounts.models import SmsMessage


def sms_message_list(*, phone: str | None = None) -> QuerySet[SmsMessage]:
    """Newest first; all of them, or one phone's."""
    messages = SmsMessage.objects.order_by("-created_at", "-id")
    return messages.filter(phone=phone) if phone else messages
