"""Celery beat: only on the primary, and never two schedules at once.

Proves, with real `celery beat` processes on the real Redis:
- without IS_PRIMARY=1, beat refuses to start (non-zero exit, the reason on its output);
- two beats started together send one schedule, not two: RedBeat's Redis lock lets one run
  while the other waits, and the waiting one takes over when the first stops;
- beat outlives its Redis dying and coming back empty (core/beat.py): it waits out the outage,
  takes its lock again and writes its schedule back, and the schedule runs again.
"""

import signal
import subprocess
import time

import pytest
import redis

from config.celery import app as celery_app
from core.tests.celery_tasks import BEAT_PROBE_QUEUE as PROBE_QUEUE
from devstack.celery import CELERY, flush_broker, process_env, redis_client, start_beat
from devstack.env import PROJECT_DIR
from devstack.redis import RedisServer
from devstack.wait import wait_for

pytestmark = [pytest.mark.slow]

RUN_SECONDS = 8


@pytest.fixture
def beats(django_db_setup, tmp_path):
    flush_broker()
    started = []

    def start(**env):
        beat = start_beat(tmp_path, app="core.tests.celery_beat_app", **env)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.close()


@pytest.mark.checklist("P5.18", "P7.9")
def test_beat_refuses_to_start_off_the_primary(django_db_setup):
    env = process_env()
    env.pop("IS_PRIMARY", None)

    finished = subprocess.run(
        [CELERY, "-A", "config", "beat", "--loglevel", "INFO"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode != 0
    assert "Refusing to start celery beat: IS_PRIMARY is not 1" in (
        finished.stdout + finished.stderr
    )


@pytest.mark.checklist("P5.18", "P9.20")
def test_two_beats_started_together_send_one_schedule_and_the_second_takes_over(beats):
    # given two beats started at the same moment, with an entry due every second
    first, second = beats(IS_PRIMARY="1"), beats(IS_PRIMARY="1")
    broker = redis_client()

    # when they have run for a while
    wait_for(
        lambda: "beat: Acquired lock" in first.output() + second.output(), 30, "a beat to lock"
    )
    locked_at = time.monotonic()
    time.sleep(RUN_SECONDS)
    sent = broker.llen(PROBE_QUEUE)
    elapsed = time.monotonic() - locked_at

    # then exactly one of them holds the lock and the entry was sent once a second, not twice
    holders = [beat for beat in (first, second) if "beat: Acquired lock" in beat.output()]
    assert len(holders) == 1
    assert first.process.poll() is None and second.process.poll() is None  # both still up
    assert elapsed - 2 <= sent <= elapsed + 2, f"{sent} probes in {elapsed:.1f} s"

    # when the running beat stops (a deploy), releasing its lock
    (holder,) = holders
    standby = second if holder is first else first
    holder.kill(signal.SIGTERM)
    assert "beat: Releasing lock" in holder.output()

    # then the waiting beat takes over (it retries every beat_max_loop_interval = 5 s)
    standby.wait_for_output("beat: Acquired lock", 15)
    before = broker.llen(PROBE_QUEUE)
    wait_for(lambda: broker.llen(PROBE_QUEUE) >= before + 2, 10, "the schedule to resume")


REDIS_DOWN_SECONDS = 8  # more than one beat_max_loop_interval (5 s): beat ticks into the outage


@pytest.mark.checklist("P5.18")
def test_beat_outlives_its_redis_restarting_empty_and_sends_its_schedule_again(
    django_db_setup, tmp_path
):
    # given beat, with an entry due every second, on a Redis of its own without persistence
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    beat = start_beat(
        tmp_path, app="core.tests.celery_beat_app", IS_PRIMARY="1", REDIS_URL=redis_server.url
    )
    try:
        beat.wait_for_output("beat: Acquired lock", 30)
        client = redis.Redis.from_url(redis_server.url)
        wait_for(lambda: client.llen(PROBE_QUEUE) >= 2, 10, "the schedule to run")
        lock_key = celery_app.conf.redbeat_key_prefix + ":lock"
        schedule_key = celery_app.conf.redbeat_key_prefix + ":schedule"
        entries = set(celery_app.conf.beat_schedule) | {"test-beat-probe"}
        assert client.exists(lock_key) and client.zcard(schedule_key) == len(entries)
        client.close()

        # when Redis dies, stays down past a tick, and comes back empty on the same port
        redis_server.kill()
        time.sleep(REDIS_DOWN_SECONDS)
        redis_server.start()
        back_at = time.monotonic()
        client = redis.Redis.from_url(redis_server.url)

        # then beat is still running: it took its lock again, wrote its schedule back and sent
        # the heartbeat at once (/health/ lost the last one), and the every-second entry is
        # sent again
        wait_for(lambda: client.llen(PROBE_QUEUE) >= 2, 30, "the schedule to resume")
        queued = b"".join(client.lrange("high", 0, -1))
        assert b"core.tasks.beat_heartbeat" in queued
        resumed_in = time.monotonic() - back_at
        assert beat.process.poll() is None, beat.output()[-3000:]
        output = beat.output()
        assert "beat: Redis unreachable" in output
        assert "beat: Lost the Redis lock" in output
        assert output.count("beat: Acquired lock") == 2
        assert client.get(lock_key) is not None
        prefix = celery_app.conf.redbeat_key_prefix
        names = {key.decode().removeprefix(prefix) for key in client.zrange(schedule_key, 0, -1)}
        assert names == entries
        assert resumed_in < 20, f"the schedule resumed {resumed_in:.1f} s after Redis came back"
        client.close()
    finally:
        beat.close()
        redis_server.kill()
