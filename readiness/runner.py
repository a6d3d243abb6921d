"""One run: the URL under test and what was found, each fetched once; running every check."""

import contextlib
import json
import os
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from http.cookies import CookieError, Morsel, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from config.redis_probe import redact
from readiness.masking import describe, scrub
from readiness.registry import (
    FAIL,
    PASS,
    SKIP,
    Check,
    NotHere,
    Outcome,
    Result,
    Unreachable,
    failed,
)

HTTP_TIMEOUT_SECONDS = 4.0
# The whole run; a check still running then is reported as a FAIL.
RUN_TIMEOUT_SECONDS = 30.0
_THREADS = 12


@dataclass(frozen=True)
class Answer:
    """One HTTP answer of the server under test."""

    method: str
    path: str
    status: int
    headers: Any  # httpx.Headers
    text: str
    seconds: float

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def cookie(self, name: str) -> Morsel | None:
        jar: SimpleCookie = SimpleCookie()
        for raw in self.headers.get_list("set-cookie"):
            try:
                jar.load(raw)
            except CookieError:
                continue
        return jar.get(name)

    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    def error_code(self) -> str | None:
        body = self.json()
        error = body.get("error") if isinstance(body, dict) else None
        return error.get("code") if isinstance(error, dict) else None


class Context:
    """What the checks of one run share: the base URL and every fact, fetched once."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.parts = urlsplit(self.base_url)
        if self.parts.scheme not in {"http", "https"} or not self.parts.hostname:
            raise ValueError(f"not an http(s) URL: {redact(base_url)!r}")
        self._values: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()

    def once(self, key, compute: Callable[[], Any]) -> Any:
        """compute(), run by the first check that asks; the others wait for it and share it."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                try:
                    self._values[key] = (True, compute())
                except Exception as error:
                    self._values[key] = (False, error)
        ok, value = self._values[key]
        if not ok:
            raise value
        return value

    @cached_property
    def host(self) -> str:
        """The Host header: the URL's own if ALLOWED_HOSTS takes it, else the first allowed."""
        from django.http.request import split_domain_port, validate_host

        domain, _ = split_domain_port(self.parts.netloc)
        allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"])
        if validate_host(domain, allowed):
            return self.parts.netloc
        for entry in settings.ALLOWED_HOSTS:
            candidate = entry.lstrip(".")
            if candidate and "*" not in candidate:
                return candidate
        return self.parts.netloc

    @cached_property
    def https_headers(self) -> dict[str, str]:
        """What the TLS-terminating proxy adds (SECURE_PROXY_SSL_HEADER), for a plain URL."""
        if self.parts.scheme == "https" or not settings.SECURE_PROXY_SSL_HEADER:
            return {}
        meta_name, value = settings.SECURE_PROXY_SSL_HEADER
        return {meta_name.removeprefix("HTTP_").replace("_", "-").title(): value}

    @property
    def sees_https(self) -> bool:
        return self.parts.scheme == "https" or bool(self.https_headers)

    def request(
        self,
        method: str,
        path: str,
        *,
        https: bool = True,
        probe: bool = False,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """One request, sent once per run. `https`: as if through the TLS proxy; `probe`: as a
        load balancer would, by the URL's own host and over plain HTTP."""
        extra = dict(headers or {})
        key = ("http", method, path, https and not probe, probe, tuple(sorted(extra.items())))
        return self.once(key, lambda: self._send(method, path, https and not probe, probe, extra))

    def _send(self, method, path, https, probe, extra) -> Answer:
        import httpx

        headers = {} if probe else {"Host": self.host}
        if https:
            headers.update(self.https_headers)
        headers.update(extra)
        started = time.monotonic()
        try:
            with httpx.Client(timeout=HTTP_TIMEOUT_SECONDS, follow_redirects=False) as client:
                response = client.request(method, self.base_url + path, headers=headers)
        except httpx.HTTPError as error:
            raise Unreachable(
                f"{method} {path}: no answer from {redact(self.base_url)} ({describe(error)})"
            ) from None
        return Answer(
            method,
            path,
            response.status_code,
            response.headers,
            response.text,
            time.monotonic() - started,
        )

    def socket(self, path: str, origin: str | None = None) -> tuple[str, int | None]:
        """A WebSocket handshake to `path`: ("closed", code), ("frame", None), ("open", None)
        or ("refused", HTTP status)."""
        return self.once(("ws", path, origin), lambda: self._connect(path, origin))

    def _connect(self, path: str, origin: str | None) -> tuple[str, int | None]:
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
        from websockets.sync.client import connect

        scheme = "wss" if self.parts.scheme == "https" else "ws"
        url = f"{scheme}://{self.parts.netloc}{path}"
        try:
            with connect(
                url, origin=origin, open_timeout=HTTP_TIMEOUT_SECONDS, close_timeout=1
            ) as socket:
                try:
                    socket.recv(timeout=HTTP_TIMEOUT_SECONDS)
                    return "frame", None
                except ConnectionClosed as closed:
                    return "closed", closed.rcvd.code if closed.rcvd else None
                except TimeoutError:
                    return "open", None
        except InvalidStatus as refused:
            return "refused", refused.response.status_code
        except (OSError, InvalidHandshake, TimeoutError) as error:
            raise Unreachable(f"WebSocket {path}: {describe(error)}") from None


def default_base_url() -> str:
    """This container's own web server: gunicorn listens on $PORT (default 5000)."""
    return f"http://127.0.0.1:{os.environ.get('PORT', '').strip() or '5000'}"


def run(base_url: str | None = None, *, timeout: float = RUN_TIMEOUT_SECONDS) -> list[Result]:
    """Every checked line, in checklist order. Never raises, returns within about `timeout`."""
    from readiness import checks  # the check modules import this one

    try:
        _import_tasks()
        context = Context(base_url or default_base_url())
        return _per_line(_run_checks(context, timeout))
    except Exception as error:  # the report comes out whatever happens
        detail = scrub(f"the readiness run itself failed: {describe(error)}")
        return [Result(line_id, FAIL, detail) for line_id in _in_order(checks.live_ids())]


def _import_tasks() -> None:
    """Registers every app's Celery tasks (and the beat schedule they add), as a worker does.

    Done once, before the checks start: Celery's Django fix-up answers the import by calling
    django.setup() again, which sets logging up afresh (Django's defaults, then LOGGING). Run
    on a check's thread, that let a logging check running beside it see Django's defaults
    (an AdminEmailHandler, django.db.backends at INFO) and fail.
    """
    from config.celery import app

    app.loader.import_default_modules()


def _run_checks(context: Context, timeout: float) -> dict[str, Outcome]:
    """Runs the checks on daemon threads: one that hangs is abandoned, never waited for."""
    from readiness import checks

    every = checks.CHECKS
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for item in every:
        pending.put(item)
    outcomes: dict[str, Outcome] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def work() -> None:
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            outcome = _run_one(item, context)
            with lock:
                outcomes[item.name] = outcome
                if len(outcomes) == len(every):
                    finished.set()

    for number in range(min(_THREADS, len(every))):
        threading.Thread(target=work, name=f"readiness-{number}", daemon=True).start()
    finished.wait(timeout)
    late = failed(f"did not finish within {timeout:.0f} s")
    with lock:
        return {item.name: outcomes.get(item.name, late) for item in every}


def _run_one(item: Check, context: Context) -> Outcome:
    from django.db import connections

    try:
        outcome = item.func(context)
    except NotHere as reason:
        outcome = Outcome(SKIP, str(reason))
    except Exception as error:
        outcome = failed(describe(error))
    finally:
        # This thread's connections (returned to the pool, if any): none may outlive the check.
        with contextlib.suppress(Exception):  # a failed close must not replace the outcome
            connections.close_all()
    return Outcome(outcome.status, scrub(outcome.detail))


def _per_line(outcomes: dict[str, Outcome]) -> list[Result]:
    from readiness import checks

    by_id: dict[str, list[Outcome]] = defaultdict(list)
    for item in checks.CHECKS:
        for line_id in item.ids:
            by_id[line_id].append(outcomes[item.name])
    results = []
    for line_id in _in_order(by_id):
        statuses = {outcome.status for outcome in by_id[line_id]}
        status = FAIL if FAIL in statuses else PASS if PASS in statuses else SKIP
        details = dict.fromkeys(o.detail for o in by_id[line_id] if o.status == status)
        results.append(Result(line_id, status, "; ".join(details)))
    return results


def _in_order(line_ids) -> list[str]:
    def position(line_id: str) -> tuple[int, int]:
        phase, _, number = line_id.removeprefix("P").partition(".")
        return int(phase), int(number)

    return sorted(line_ids, key=position)


def line_texts() -> dict[str, str]:
    """Checklist id -> the line's text, from checklist/lines.toml when the deployment has it."""
    try:
        from checklist.spec import load

        return {line["id"]: line["text"] for line in load()}
    except Exception:
        return {}


def report(results: list[Result], base_url: str | None = None) -> dict:
    """The report as JSON: what `readiness --json` prints and the ops endpoint answers."""
    texts = line_texts()
    counts = {status: sum(r.status == status for r in results) for status in (PASS, FAIL, SKIP)}
    return {
        "url": redact(base_url or default_base_url()),
        "results": [
            {"id": r.id, "status": r.status, "detail": r.detail, "text": texts.get(r.id, "")}
            for r in results
        ],
        "summary": {"pass": counts[PASS], "fail": counts[FAIL], "skip": counts[SKIP]},
    }
