"""Demo data for a local run: a staff user, a customer, a service area and riders in Bengaluru.

Safe to run again: it updates what it created before instead of adding more. Refuses to run
in production.
"""

import random

from django.conf import settings
from django.contrib.gis.geos import MultiPolygon, Point, Polygon
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from orders.models import ServiceArea
from riders.models import Rider

STAFF_PHONE = "+919000000001"
CUSTOMER_PHONE = "+919000000002"
RIDER_PHONE_PREFIX = "+9190000001"  # + two digits
CITY_CENTRE = (77.5946, 12.9716)  # Bengaluru, (lng, lat)
# A generous outline of the city; ops redraw service areas in the admin.
BENGALURU_OUTLINE = [
    (77.45, 12.83),
    (77.78, 12.83),
    (77.80, 13.00),
    (77.76, 13.14),
    (77.47, 13.14),
    (77.43, 13.00),
    (77.45, 12.83),
]
RIDER_NAMES = [
    "Arjun", "Bhavna", "Chetan", "Divya", "Farhan", "Gita", "Harish", "Imran", "Jaya", "Kiran",
    "Lakshmi", "Manoj", "Nandini", "Omkar", "Pooja", "Rahul", "Sana", "Tarun", "Uma", "Vikram",
]  # fmt: skip


class Command(BaseCommand):
    help = "Load idempotent demo data (staff, customer, riders, a service area in Bengaluru)."

    def add_arguments(self, parser):
        parser.add_argument("--riders", type=int, default=20, help="How many riders (max 99).")

    @transaction.atomic
    def handle(self, *args, riders: int, **options):
        if settings.IS_PRODUCTION:
            raise CommandError("Refusing to load demo data with DJANGO_ENV=production.")
        if not 0 <= riders <= 99:
            raise CommandError("--riders must be between 0 and 99.")

        ServiceArea.objects.update_or_create(
            name="Bengaluru",
            defaults={"area": MultiPolygon(Polygon(BENGALURU_OUTLINE)), "is_active": True},
        )
        staff = self._user(STAFF_PHONE, "Demo Ops", is_staff=True, is_superuser=True)
        if settings.DEMO_STAFF_PASSWORD:
            staff.set_password(settings.DEMO_STAFF_PASSWORD)
            staff.save(update_fields=["password"])
        self._user(CUSTOMER_PHONE, "Demo Customer", is_customer=True)

        # Same seed every time: riders land on the same spots on every run.
        spread = random.Random(7)  # noqa: S311 - demo positions, not security
        now = timezone.now()
        for index in range(riders):
            user = self._user(
                f"{RIDER_PHONE_PREFIX}{index:02d}",
                f"{RIDER_NAMES[index % len(RIDER_NAMES)]} (demo rider)",
                is_rider=True,
            )
            lng = CITY_CENTRE[0] + spread.uniform(-0.08, 0.08)
            lat = CITY_CENTRE[1] + spread.uniform(-0.08, 0.08)
            Rider.objects.update_or_create(
                user=user,
                defaults={
                    "vehicle_type": Rider.VehicleType.MOTORCYCLE,
                    "vehicle_number": f"KA01AB{1000 + index}",
                    "approved": True,
                    "status": Rider.Status.ONLINE,
                    "last_location": Point(lng, lat, srid=4326),
                    "last_location_at": now,
                },
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo data ready: staff {STAFF_PHONE}, customer {CUSTOMER_PHONE}, "
                f"{riders} approved riders around Bengaluru."
            )
        )

    def _user(self, phone: str, name: str, **flags) -> User:
        user = User.objects.filter(phone=phone).first()
        return user or User.objects.create_user(phone, name=name, **flags)
