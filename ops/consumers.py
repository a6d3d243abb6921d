"""The ops console's socket, /ws/ops/ (routed in ops/routing.py)."""

import json
import logging
import time

from accounts.models import User
from core.db import database_call
from core.realtime import OPS_GROUP
from delivery.consumers import (
    CLOSE_FORBIDDEN,
    CountedConsumer,
    accept_signed_in,
    read_only_answer,
)
from ops.permissions import console_allowed

logger = logging.getLogger(__name__)


class OpsConsumer(CountedConsumer):
    """The ops console's feed: every rider's moves and status, every order's status.

    For staff who may watch the console (ops.permissions.console_allowed), signed in with the
    admin session (the console page) or a JWT. Server-to-client only. The first frame is
    {"type": "ready"}: the console reads its snapshot after it, so nothing sent between the
    read and the join is lost. Then, as they happen (core.realtime): {"type":
    "riders_moved", "riders": [{"rider_id", "lat", "lng", "at"}, ...]} (about once a second
    per web worker, each rider at its newest position), {"type": "rider_status", "rider_id",
    "status", "lat", "lng", "at"}, {"type": "order_status", "order_id", "seq", "status",
    "payment_status", "rider_id", "at"} and {"type": "alerts_changed", "alert", "order_id"}
    (an alert an event starts, such as a failed refund: the console re-reads its snapshot).
    """

    joined = False
    # A console stays open for a shift: its user's rights are read again this often (on the
    # next frame after), so someone whose group, staff flag or account is taken away stops
    # watching within about a minute (4403), not at their next sign-in.
    recheck_seconds = 60.0
    checked_at = 0.0

    async def connect(self):
        user = await accept_signed_in(self)
        if user is None or not await self.check_in(user):
            return
        if not await database_call(console_allowed)(user):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        await self.channel_layer.group_add(OPS_GROUP, self.channel_name)
        self.joined = True
        self.checked_at = time.monotonic()
        await self.send(text_data=json.dumps({"type": "ready"}))
        logger.info("ops console opened by user %s", user.pk)

    async def disconnect(self, code):
        if self.joined:
            await self.channel_layer.group_discard(OPS_GROUP, self.channel_name)
        await super().disconnect(code)

    async def receive(self, text_data=None, bytes_data=None):
        if not self.joined:
            return
        await self.send(text_data=read_only_answer("act through the console's buttons"))

    async def _relay(self, event):
        """Group messages are typed "ops.<name>"; the browser sees "<name>"."""
        if not self.joined:
            return
        if time.monotonic() - self.checked_at >= self.recheck_seconds:
            self.checked_at = time.monotonic()
            user_id = self.scope["user"].pk
            if not await database_call(_console_still_allowed)(user_id):
                await self.channel_layer.group_discard(OPS_GROUP, self.channel_name)
                self.joined = False
                await self.close(code=CLOSE_FORBIDDEN)
                return
            await self.still_open()
        await self.send(text_data=json.dumps({**event, "type": event["type"].removeprefix("ops.")}))

    async def ops_riders_moved(self, event):
        await self._relay(event)

    async def ops_rider_status(self, event):
        await self._relay(event)

    async def ops_order_status(self, event):
        await self._relay(event)

    async def ops_alerts_changed(self, event):
        await self._relay(event)


def _console_still_allowed(user_id) -> bool:
    return console_allowed(User.objects.filter(pk=user_id).first())
