"""The hourly purge task deletes day-old login codes, expired refresh-token records and the
canary times of workers silent for an hour."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken

from accounts.models import OtpChallenge
from accounts.tests.factories import OtpChallengeFactory, UserFactory
from core.health import redis_client
from core.tasks import purge_expired_records
from core.worker_liveness import CANARY_HASH


@pytest.mark.django_db
def test_purge_keeps_recent_codes_and_live_tokens_and_deletes_the_rest():
    # given a day-old code, a fresh one, an expired refresh token and a live one
    old, fresh = OtpChallengeFactory(), OtpChallengeFactory()
    OtpChallenge.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=2))
    user = UserFactory()
    now = timezone.now()
    expired = OutstandingToken.objects.create(
        user=user, jti="expired", token="x", created_at=now, expires_at=now - timedelta(days=1)
    )
    live = OutstandingToken.objects.create(
        user=user, jti="live", token="y", created_at=now, expires_at=now + timedelta(days=1)
    )

    # when the periodic task runs
    purge_expired_records.apply()

    # then only the old rows are gone
    assert set(OtpChallenge.objects.values_list("pk", flat=True)) == {fresh.pk}
    assert set(OutstandingToken.objects.values_list("pk", flat=True)) == {live.pk}
    assert expired.pk not in OutstandingToken.objects.values_list("pk", flat=True)


@pytest.mark.django_db
def test_purge_forgets_the_canaries_of_workers_silent_for_an_hour():
    # given a worker killed from outside two hours ago and one that ran its canary just now
    client = redis_client()
    client.delete(CANARY_HASH)
    client.hset(CANARY_HASH, mapping={"killed@host": time.time() - 7200, "alive@host": time.time()})
    try:
        # when the periodic task runs
        purge_expired_records.apply()

        # then /metrics no longer reports the killed one
        assert set(client.hkeys(CANARY_HASH)) == {b"alive@host"}
    finally:
        client.delete(CANARY_HASH)
