"""What the simulator reads and writes straight on the server's database, which it shares (as
`make run` does): login codes from the dummy SMS outbox (what `manage.py sms_outbox` prints),
approving its own riders (what `manage.py rider_approve` does), where its riders were left by
an earlier run, and, with --mint-when-throttled, tokens for its own numbers.

Django's ORM is synchronous, so every call runs in one thread of its own; `close` closes that
thread's connection.
"""

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from django.db import close_old_connections, connection


class NotDummyOutbox(Exception):
    """The outbox message was sent by a real SMS provider: its code is masked and unreadable."""


class Database:
    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="simulator-db")

    async def run(self, function, /, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(_fresh, function, *args, **kwargs)
        )

    async def close(self) -> None:
        await self.run(_close_connection)
        self._executor.shutdown(wait=True)


def _close_connection() -> None:
    connection.close()  # this thread's: `connection` is looked up in the thread that runs this


def _fresh(function, *args, **kwargs):
    close_old_connections()  # a connection the server side closed is replaced, not reused
    return function(*args, **kwargs)


def login_code(phone: str, since: datetime) -> str | None:
    """The newest login code sent to `phone` at or after `since`, from the SMS outbox."""
    from accounts.selectors import sms_message_list
    from accounts.sms import DummySmsProvider

    sms = sms_message_list(phone=phone).filter(created_at__gte=since).first()
    if sms is None:
        return None
    if sms.provider != DummySmsProvider.name:
        raise NotDummyOutbox(
            f"the login code for {phone} went out through SMS provider {sms.provider!r}; the "
            "simulator only works with SMS_PROVIDER=dummy"
        )
    code = (sms.params or {}).get("otp")
    return str(code) if code else None


def approve_rider(phone: str) -> bool:
    """Approves the simulator's rider as `manage.py rider_approve` does; True when it changed."""
    from riders.services import rider_approve_by_phone

    _, changed = rider_approve_by_phone(phone=phone)
    return changed


def rider_last_fix(phone: str) -> tuple[float, float, datetime] | None:
    """(lat, lng, when) of the rider's latest stored position, if any."""
    from riders.models import Rider

    rider = Rider.objects.filter(user__phone=phone).only("last_location", "last_location_at")
    found = rider.first()
    if found is None or found.last_location is None or found.last_location_at is None:
        return None
    return (found.last_location.y, found.last_location.x, found.last_location_at)


def rider_current_order(phone: str) -> str | None:
    """The order the rider is carrying (left by an earlier run that stopped abruptly)."""
    from orders.models import CARRYING_STATUSES, Order

    order_id = (
        Order.objects.filter(rider__user__phone=phone, status__in=CARRYING_STATUSES)
        .order_by("-created_at")
        .values_list("pk", flat=True)
        .first()
    )
    return str(order_id) if order_id else None


def order_customer_phone(order_id: str) -> str | None:
    from orders.models import Order

    return Order.objects.filter(pk=order_id).values_list("customer__phone", flat=True).first()


def mint_tokens(phone: str, role: str) -> tuple[str, str]:
    """(access, refresh) for the simulator's own number, issued here instead of by the OTP
    endpoints (--mint-when-throttled): the account is created with the role as a first OTP
    login would. Good only while this process and the server share DJANGO_SECRET_KEY."""
    from rest_framework_simplejwt.tokens import RefreshToken

    from accounts.models import User

    flag = {"rider": "is_rider", "customer": "is_customer"}[role]
    user = User.objects.filter(phone=phone).first()
    if user is None:
        user = User.objects.create_user(phone, **{flag: True})
    elif not getattr(user, flag):
        setattr(user, flag, True)
        user.save(update_fields=[flag])
    refresh = RefreshToken.for_user(user)
    return str(refresh.access_token), str(refresh)
