"""The project's Celery app plus one fast beat entry; only the two-beats test runs it.

`celery -A core.tests.celery_beat_app beat` uses the production configuration (RedBeat, its
lock, the five real entries) and adds `test-beat-probe`, due every second, sent to a queue no
worker consumes so the test can count the messages. The tests never import this module:
it changes the schedule of the one shared app object.
"""

from config.celery import app
from core.tests.celery_tasks import BEAT_PROBE_QUEUE

app.conf.beat_schedule = {
    **app.conf.beat_schedule,
    "test-beat-probe": {
        "task": "core.tests.celery_tasks.beat_probe",
        "schedule": 1.0,
        "options": {"queue": BEAT_PROBE_QUEUE, "expires": 60},
    },
}
