"""The network side of the apps: one pooled HTTP client, every call timed and counted, 429s
waited out (Retry-After), an expired access token renewed once, a connection the server cut
retried once on a fresh one (WebSocket handshakes too); signed-in sessions and the token cache.

Nothing raises on an API error: a call returns an Answer (status 0 when no answer came), the
error is counted by kind in Stats and logged the first few times, and the caller decides.
"""

import asyncio
import base64
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets.asyncio.client
from websockets.exceptions import InvalidMessage

from simulator.stats import Stats

logger = logging.getLogger("simulator")

REFRESH_PATH = "/api/v1/auth/token/refresh/"
# An access token this close to its expiry is renewed before use.
RENEW_BEFORE_SECONDS = 60
# A 429 whose Retry-After is longer than this is not waited out inside one call.
MAX_RETRY_AFTER_SECONDS = 60.0
# One attempt at a call gives up after CONNECT_TIMEOUT_SECONDS to connect, or READ_TIMEOUT_SECONDS
# waiting for a pooled connection, to send, or for each read (httpx's phases); a call without
# an answer is a failed call.
CONNECT_TIMEOUT_SECONDS = 10.0
READ_TIMEOUT_SECONDS = 20.0
USER_AGENT = "delivery-simulator/1 (python manage.py simulate)"
RETRIED = "retried on a fresh connection: "  # + the call's kind: an event counted in Stats


@dataclass(frozen=True)
class Answer:
    status: int  # 0: no answer (connection failed or timed out)
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def code(self) -> str | None:
        """The error code of the project's error shape, if the body has one."""
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None

    @property
    def retry_after(self) -> float | None:
        try:
            return max(0.0, float(self.headers.get("retry-after", "")))
        except ValueError:
            return None


class Api:
    def __init__(self, base_url: str, stats: Stats, *, max_connections: int = 100) -> None:
        self.base_url = base_url.rstrip("/")
        self.sockets_url: str | None = None  # /api/config/'s websocket_url, when it gives one
        self.stats = stats
        # Set while shutting down: waits for Retry-After are cut short.
        self.hurry = asyncio.Event()
        self.client = self._client(max_connections, keep_alive=max_connections)
        # A call cut by a transport error is retried on a connection of its own: none is kept
        # alive in this one, so each request opens a new connection.
        self.retry_client = self._client(max_connections, keep_alive=0)

    def _client(self, max_connections: int, *, keep_alive: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(READ_TIMEOUT_SECONDS, connect=CONNECT_TIMEOUT_SECONDS),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=keep_alive
            ),
            headers={"User-Agent": USER_AGENT},
        )

    async def close(self) -> None:
        await self.client.aclose()
        await self.retry_client.aclose()

    def ws_url(self, path: str, token: str) -> str:
        if self.sockets_url:
            return f"{self.sockets_url}{path}?token={token}"
        scheme, rest = self.base_url.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}?token={token}"

    async def open_socket(
        self, kind: str, path: str, token: str
    ) -> websockets.asyncio.client.ClientConnection:
        """A WebSocket opened, its handshake timed under `kind`. A connection the server closed
        without answering the handshake (a web worker leaving) is tried once more, as an HTTP
        call is; any other failure is the caller's to count (Stats.socket_refused)."""
        url = self.ws_url(path, token)
        started = time.monotonic()
        try:
            socket = await websockets.asyncio.client.connect(url, open_timeout=20, close_timeout=5)
        except (InvalidMessage, ConnectionResetError):
            self.stats.count(f"{RETRIED}{kind}")
            socket = await websockets.asyncio.client.connect(url, open_timeout=20, close_timeout=5)
        self.stats.socket_opened(kind, time.monotonic() - started)
        return socket

    async def sleep(self, seconds: float) -> None:
        """Sleeps, or less once the run is winding down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.hurry.wait(), timeout=max(0.0, seconds))

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        session: "Session | None" = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        retry_429: bool = True,
        expected: frozenset[int] = frozenset(),
    ) -> Answer:
        """One API call, timed under `kind`. Statuses in `expected` are outcomes, not errors.

        Retries: once on a transport error, on a fresh connection, up to three times on 429
        when Retry-After is at most a minute (retry_429), and once with a renewed access token
        on 401.
        """
        renewed = False
        throttled = 0
        client = self.client
        while True:
            request_headers = dict(headers or {})
            if session is not None:
                request_headers["Authorization"] = f"Bearer {await session.token()}"
            started = time.monotonic()
            try:
                response = await client.request(
                    method, path, json=json_body, headers=request_headers
                )
            except httpx.HTTPError as error:
                elapsed = time.monotonic() - started
                if client is self.client and isinstance(error, httpx.TransportError):
                    # A kept-alive connection the server closed as the request went out (a web
                    # worker recycled after GUNICORN_MAX_REQUESTS): mobile HTTP stacks such as
                    # OkHttp try once more on a fresh connection, and so does this -- really
                    # fresh, not another kept-alive one from the pool, which may belong to the
                    # same leaving worker. Every call the apps make is safe to repeat (fixes by
                    # recorded_at, bookings by Idempotency-Key, steps and offers answer 409
                    # once taken).
                    self.stats.count(f"{RETRIED}{kind}")
                    client = self.retry_client
                    continue
                self.stats.latencies[kind].append(elapsed)
                self.stats.statuses[(kind, 0)] += 1
                self.stats.error(f"{kind}: no answer ({type(error).__name__})", str(error))
                return Answer(0)
            elapsed = time.monotonic() - started
            answer = Answer(response.status_code, _json(response), dict(response.headers))
            if answer.status in expected:
                self.stats.latencies[kind].append(elapsed)
                self.stats.statuses[(kind, answer.status)] += 1
            else:
                self.stats.call(kind, elapsed, answer.status, answer.code)
                if answer.status >= 500:
                    logger.debug("%s %s answered %s: %s", method, path, answer.status, answer.body)
            if answer.status == 401 and session is not None and not renewed:
                renewed = True
                if await session.renew(stale=request_headers["Authorization"][7:]):
                    continue
            if answer.status == 429 and retry_429 and throttled < 3 and not self.hurry.is_set():
                wait = answer.retry_after
                if wait is not None and wait <= MAX_RETRY_AFTER_SECONDS:
                    throttled += 1
                    await self.sleep(wait + 0.1)
                    continue
            return answer


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def token_expiry(token: str) -> float:
    """The `exp` of a JWT (seconds since the epoch), read without checking the signature: the
    client only needs to know when to renew. 0 when unreadable."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return 0.0


class TokenStore:
    """Tokens kept between runs, per server URL and phone: `.local/simulator-tokens.json` by
    default (mode 0600, ignored by git). The refresh token, and the access token with it, as an
    app keeps them: a later run within the access token's lifetime needs no call to sign in.
    Refresh tokens rotate, so the file is rewritten on every renewal; a token the server no
    longer takes is dropped and the user signs in again."""

    def __init__(self, path: Path | None, base_url: str) -> None:
        self.path = path
        self.base_url = base_url.rstrip("/")
        self._all: dict[str, dict] = {}
        if path is not None and path.exists():
            try:
                loaded = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                logger.warning("ignoring unreadable token cache %s: %s", path, error)
                loaded = {}
            if isinstance(loaded, dict):
                self._all = {k: v for k, v in loaded.items() if isinstance(v, dict)}
        self._mine = self._all.setdefault(self.base_url, {})

    def get(self, phone: str) -> dict | None:
        entry = self._mine.get(phone)
        return entry if isinstance(entry, dict) and entry.get("refresh") else None

    def put(self, phone: str, role: str, refresh: str, access: str | None = None) -> None:
        self._mine[phone] = {"role": role, "refresh": refresh}
        if access:
            self._mine[phone]["access"] = access
        self.save()

    def drop(self, phone: str) -> None:
        if self._mine.pop(phone, None) is not None:
            self.save()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            json.dump(self._all, handle, indent=1, sort_keys=True)
        os.replace(temporary, self.path)


class Session:
    """A signed-in user: the access token renewed through the refresh endpoint before it
    expires (one renewal at a time, since each one rotates the refresh token)."""

    def __init__(
        self, api: Api, store: TokenStore, *, phone: str, role: str, access: str, refresh: str
    ) -> None:
        self.api, self.store = api, store
        self.phone, self.role = phone, role
        self.access, self.refresh = access, refresh
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        if token_expiry(self.access) - time.time() < RENEW_BEFORE_SECONDS:
            await self.renew(stale=self.access)
        return self.access

    async def renew(self, *, stale: str | None = None) -> bool:
        """Renews the tokens; True when this session now holds working ones. `stale` is the
        access token the caller found wanting: if another task renewed meanwhile, done."""
        async with self._lock:
            if stale is not None and self.access != stale:
                return True
            answer = await self.api.call(
                "token refresh", "POST", REFRESH_PATH, json_body={"refresh": self.refresh}
            )
            if answer.status in {400, 401}:
                # Refused (a database reset since the tokens were cached, say): the next run
                # signs this user in again instead of trusting a cached access token.
                self.store.drop(self.phone)
            if not answer.ok or not isinstance(answer.body, dict):
                return False
            self.access, self.refresh = answer.body["access"], answer.body["refresh"]
            self.store.put(self.phone, self.role, self.refresh, self.access)
            return True
