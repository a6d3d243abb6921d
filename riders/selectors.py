"""Reads for riders: their earnings."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import QuerySet, Sum
from django.utils import timezone

from riders.models import Earning, Rider


@dataclass(frozen=True)
class EarningsPeriod:
    entries: QuerySet[Earning]
    total_paise: int
    cash_collected_paise: int


def earnings_for_rider(*, rider: Rider, date_from: date, date_to: date) -> EarningsPeriod:
    """The rider's earnings credited from date_from to date_to, both whole days in TIME_ZONE."""
    zone = timezone.get_current_timezone()
    start = datetime.combine(date_from, time.min, tzinfo=zone)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=zone)
    entries = Earning.objects.filter(rider=rider, created_at__gte=start, created_at__lt=end)
    totals = entries.aggregate(total=Sum("amount_paise"), cash=Sum("cash_collected_paise"))
    return EarningsPeriod(
        entries=entries.order_by("-created_at", "-id"),
        total_paise=totals["total"] or 0,
        cash_collected_paise=totals["cash"] or 0,
    )
