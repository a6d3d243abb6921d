"""Bench-only endpoints: bare Django views used as baselines. Never routed in production."""

from django.db import connection
from django.http import JsonResponse
from django.urls import include, path


def one_row_update(request):
    # The smallest realistic write: one indexed row, one statement, one round trip.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE bench_row SET hits = hits + 1 WHERE id = 1")
    return JsonResponse({"ok": True})


def plain_json(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("bench/update/", one_row_update),
    path("bench/json/", plain_json),
    path("", include("config.urls")),
]
