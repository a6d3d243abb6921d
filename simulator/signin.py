"""Signing the simulator's users in: cached tokens first (the access token while it lasts, else
the refresh token), else phone OTP through the API with the code read from the dummy SMS
outbox, paced under the server's throttles.

The server limits OTP requests per phone (THROTTLE_OTP_REQUEST_PHONE, a 60 s resend cooldown
and OTP_MAX_SENDS_PER_HOUR, counted in PostgreSQL) and per client IP
(THROTTLE_OTP_REQUEST_IP, 30 an hour by default, 1000 on a development server), and
verifications likewise. All simulated users come from one IP, so:
- tokens are kept between runs (api.TokenStore); a later run starts with the access tokens
  while they last, else signs everyone in through `token/refresh/`, which has no throttle,
  and never asks for a code;
- at most OTP_CONCURRENCY sign-ins run at once (unless the caller knows the throttle allows
  more: Config.new_customer_per_order);
- a 429 `throttled` closes a gate for every OTP sign-in until its Retry-After has passed (one
  user's `otp_cooldown` only delays that user), and the wait is announced once;
- with --mint-when-throttled, a user the throttle turns away gets tokens issued straight from
  the database instead (database.mint_tokens; demo only).
"""

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta

from django.utils import timezone

from simulator import database
from simulator.api import RENEW_BEFORE_SECONDS, Api, Session, TokenStore, token_expiry
from simulator.database import Database, NotDummyOutbox
from simulator.stats import Stats

logger = logging.getLogger("simulator")

OTP_REQUEST_PATH = "/api/v1/auth/otp/request/"
OTP_VERIFY_PATH = "/api/v1/auth/otp/verify/"
OTP_CONCURRENCY = 2
REFRESH_CONCURRENCY = 8
OTP_ATTEMPTS = 4
# The SMS row is committed with the code's challenge, before the 202; a little slack anyway.
OUTBOX_WAIT_SECONDS = 10.0


class SignIn:
    def __init__(
        self,
        api: Api,
        db: Database,
        store: TokenStore,
        stats: Stats,
        *,
        running: Callable[[], bool],
        say: Callable[[str], None],
        mint_when_throttled: bool = False,
        otp_at_once: int = OTP_CONCURRENCY,
    ) -> None:
        self.api, self.db, self.store, self.stats = api, db, store, stats
        self.running, self.say = running, say
        self.mint_when_throttled = mint_when_throttled
        self._otp_slots = asyncio.Semaphore(otp_at_once)
        self._refresh_slots = asyncio.Semaphore(REFRESH_CONCURRENCY)
        self._gate_until = 0.0  # time.monotonic() before which no OTP request goes out
        self.fatal: str | None = None  # set when OTP sign-in cannot work at all

    async def session(self, phone: str, role: str) -> Session | None:
        """A signed-in session for the simulator's `phone` in `role`, or None (counted)."""
        cached = self.store.get(phone)
        if cached is not None and cached.get("role") == role:
            session = Session(
                self.api,
                self.store,
                phone=phone,
                role=role,
                access=cached.get("access") or "",
                refresh=cached["refresh"],
            )
            if token_expiry(session.access) - time.time() >= RENEW_BEFORE_SECONDS:
                # The app still holds a good access token (a 401 later renews it).
                self.stats.count(f"{role}s signed in: cached token")
                return session
            async with self._refresh_slots:
                if await session.renew():
                    self.stats.count(f"{role}s signed in: cached token")
                    return session
            self.store.drop(phone)
            self.stats.count("cached tokens the server refused (signing in again)")
        session = await self._otp(phone, role)
        if session is None:
            self.stats.count(f"{role}s not signed in")
        return session

    async def _otp(self, phone: str, role: str) -> Session | None:
        failures = 0  # a throttled request is not one: it waits for the gate and goes again
        while failures < OTP_ATTEMPTS:
            if self.fatal or not self.running():
                return None
            phone_wait = 0.0
            async with self._otp_slots:
                await self._wait_for_gate()
                if not self.running():
                    return None
                since = timezone.now() - timedelta(seconds=5)  # the server's clock is this host's
                asked = await self.api.call(
                    "otp request",
                    "POST",
                    OTP_REQUEST_PATH,
                    json_body={"phone": phone},
                    retry_429=False,
                )
                if asked.status == 429:
                    wait = asked.retry_after or 60.0
                    if asked.code == "otp_cooldown":
                        phone_wait = wait  # this number only
                    elif self.mint_when_throttled:
                        return await self._mint(phone, role)
                    else:
                        self._close_gate(wait)
                        continue
                elif asked.status == 202:
                    session = await self._verify(phone, role, since)
                    if session is not None:
                        return session
                    failures += 1
                    phone_wait = 60.0  # the resend cooldown
                else:
                    failures += 1
                    phone_wait = 5.0
            await self.api.sleep(phone_wait)
        return None

    async def _verify(self, phone: str, role: str, since) -> Session | None:
        code = await self._code_from_outbox(phone, since)
        if code is None:
            return None
        for _ in range(3):
            verified = await self.api.call(
                "otp verify",
                "POST",
                OTP_VERIFY_PATH,
                json_body={"phone": phone, "otp": code, "role": role},
                retry_429=False,
            )
            if verified.ok:
                body = verified.body
                self.store.put(phone, role, body["refresh"], body["access"])
                self.stats.count(f"{role}s signed in: OTP")
                return Session(
                    self.api,
                    self.store,
                    phone=phone,
                    role=role,
                    access=body["access"],
                    refresh=body["refresh"],
                )
            if verified.status != 429:
                return None
            if self.mint_when_throttled:
                return await self._mint(phone, role)
            self._close_gate(verified.retry_after or 60.0)
            await self._wait_for_gate()  # the code lives OTP_EXPIRY_SECONDS; worth a wait
            if not self.running():
                return None
        return None

    async def _code_from_outbox(self, phone: str, since) -> str | None:
        deadline = time.monotonic() + OUTBOX_WAIT_SECONDS
        while time.monotonic() < deadline:
            try:
                code = await self.db.run(database.login_code, phone, since)
            except NotDummyOutbox as error:
                self.fatal = str(error)
                self.stats.error("otp: the SMS outbox is not the dummy provider's")
                self.say(f"Cannot sign in: {error}.")
                return None
            if code:
                return code
            await asyncio.sleep(0.2)
        self.stats.error("otp: no code in the SMS outbox", phone)
        return None

    async def _mint(self, phone: str, role: str) -> Session:
        access, refresh = await self.db.run(database.mint_tokens, phone, role)
        self.store.put(phone, role, refresh, access)
        self.stats.count(f"{role}s signed in: minted (OTP throttled)")
        return Session(self.api, self.store, phone=phone, role=role, access=access, refresh=refresh)

    def _close_gate(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        if until > self._gate_until + 1:
            self.say(
                f"The server throttles OTP sign-ins from this address for {seconds:.0f} s "
                "(THROTTLE_OTP_REQUEST_IP / THROTTLE_OTP_VERIFY_IP); waiting. Users signed in "
                "once sign in from cached tokens next time; --mint-when-throttled skips the "
                "wait."
            )
        self._gate_until = max(self._gate_until, until)

    async def _wait_for_gate(self) -> None:
        while self.running():
            left = self._gate_until - time.monotonic()
            if left <= 0:
                return
            await self.api.sleep(min(left, 5.0))
