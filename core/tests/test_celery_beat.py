"""Celery beat: only on the primary, and never two schedules at once.

Proves, with real `celery beat` processes on the real Redis:
- without IS_PRIMARY=1, beat refuses to start (non-zero exit, the reason on its output);
- two beats started together send one schedule, not two: RedBeat's Redis lock lets one run
  while the other waits, and the waiting one takes over when the first stops.
"""

import signal
import subprocess
import time

import pytest

from core.tests import celery_processes as processes
from core.tests.celery_tasks import BEAT_PROBE_QUEUE as PROBE_QUEUE

pytestmark = [pytest.mark.slow]

RUN_SECONDS = 8


@pytest.fixture
def beats(django_db_setup, tmp_path):
    processes.flush_broker()
    started = []

    def start(**env):
        beat = processes.start_beat(tmp_path, app="core.tests.celery_beat_app", **env)
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.close()


@pytest.mark.checklist("P5.18", "P7.9")
def test_beat_refuses_to_start_off_the_primary(django_db_setup):
    env = processes.process_env()
    env.pop("IS_PRIMARY", None)

    finished = subprocess.run(
        [processes.CELERY, "-A", "config", "beat", "--loglevel", "INFO"],
        cwd=processes.ROOT,
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
    broker = processes.redis_client()

    # when they have run for a while
    processes.wait_for(
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
    processes.wait_for(lambda: broker.llen(PROBE_QUEUE) >= before + 2, 10, "the schedule to resume")
