"""Approves a rider by phone number: `python manage.py rider_approve +919812345678`."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.phone import normalize_phone
from core.exceptions import ApiError
from riders.services import rider_approve_by_phone


class Command(BaseCommand):
    help = (
        "Approve the rider signed in with this phone number, so they can go online. The rider "
        "must have signed in to the rider app once. Ops can also approve in the admin."
    )

    def add_arguments(self, parser):
        parser.add_argument("phone", help="E.164 (+919812345678) or a local number.")

    def handle(self, *args, phone: str, **options):
        try:
            phone = normalize_phone(phone)
        except ValidationError as error:
            raise CommandError(error.messages[0]) from None
        try:
            rider, changed = rider_approve_by_phone(phone=phone)
        except ApiError as error:
            raise CommandError(error.message) from None
        if changed:
            self.stdout.write(self.style.SUCCESS(f"Approved rider {rider.user.phone}."))
        else:
            self.stdout.write(f"Rider {rider.user.phone} was already approved.")
