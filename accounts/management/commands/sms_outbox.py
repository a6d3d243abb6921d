"""Prints the SMS outbox, newest first: how you read login codes with SMS_PROVIDER=dummy."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.phone import normalize_phone
from accounts.selectors import sms_message_list


class Command(BaseCommand):
    help = (
        "Print the SMS outbox, newest first. With SMS_PROVIDER=dummy this is where login codes "
        "go; messages sent through a real provider show the code masked."
    )

    def add_arguments(self, parser):
        parser.add_argument("--phone", help="Only messages to this number (E.164 or local).")
        parser.add_argument("--limit", type=int, default=20, help="How many (default 20).")

    def handle(self, *args, phone=None, limit=20, **options):
        if phone:
            try:
                phone = normalize_phone(phone)
            except ValidationError as error:
                raise CommandError(f"--phone: {error.messages[0]}") from None
        if limit < 1:
            raise CommandError("--limit must be at least 1.")
        messages = list(sms_message_list(phone=phone)[:limit])
        if not messages:
            self.stdout.write("The outbox is empty" + (f" for {phone}." if phone else "."))
            return
        for sms in messages:
            self.stdout.write(
                f"{timezone.localtime(sms.created_at):%Y-%m-%d %H:%M:%S}  {sms.phone}  "
                f"{sms.provider}/{sms.status}  {sms.body}"
            )
