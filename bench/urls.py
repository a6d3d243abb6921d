"""Bench-only endpoints: bare Django views used as baselines. Never routed in production."""

import logging
import time

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path

from core.db import database_call

logger = logging.getLogger(__name__)
# The slowest request the slow view will make; keeps a stray call from holding a worker.
SLOW_VIEW_MAX_SECONDS = 60.0


def one_row_update(request):
    # The smallest realistic write: one indexed row, one statement, one round trip.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE bench_row SET hits = hits + 1 WHERE id = 1")
    return JsonResponse({"ok": True})


def plain_json(request):
    return JsonResponse({"ok": True})


async def plain_json_async(request):
    return JsonResponse({"ok": True})


def _update_row() -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE bench_row SET hits = hits + 1 WHERE id = 1")


async def one_row_update_async(request):
    # As the rider-location view does its database work.
    await database_call(_update_row)()
    return JsonResponse({"ok": True})


def slow(request):
    """Answers after ?seconds= (at most SLOW_VIEW_MAX_SECONDS): a request in flight on demand.

    The graceful-shutdown test sends SIGTERM while one of these is running.
    """
    try:
        seconds = min(max(float(request.GET.get("seconds", "1")), 0.0), SLOW_VIEW_MAX_SECONDS)
    except ValueError:
        return JsonResponse({"error": "seconds must be a number"}, status=400)
    logger.info("slow view: sleeping %s s", seconds)
    time.sleep(seconds)
    return JsonResponse({"ok": True, "slept": seconds})


urlpatterns = [
    path("bench/update/", one_row_update),
    path("bench/json/", plain_json),
    path("bench/async/update/", one_row_update_async),
    path("bench/async/json/", plain_json_async),
    path("bench/slow/", slow),
    path("", include("config.urls")),
]
