"""/metrics under gunicorn with two workers counts every request once, whichever worker answers."""

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.db import connections
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

import devstack.env
from devstack.env import base_env
from devstack.redis import RedisServer
from devstack.web import Server, start_server

# django_db makes pytest-django create the test database the server is pointed at.
pytestmark = [pytest.mark.slow, pytest.mark.django_db]

REQUESTS_PER_BATCH = 60
MAX_BATCHES = 5
BY_VIEW = "django_http_requests_total_by_view_transport_method"
# /metrics is answered by core.middleware.ProbeMiddleware before URL resolution, so it has no
# by-view sample; it shows up in the count of every request that entered the middleware.
ALL_REQUESTS = "django_http_requests_before_middlewares_total"


@pytest.fixture(scope="module")
def server(django_db_setup, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("metrics")
    redis = RedisServer(work_dir / "redis")
    redis.start()
    database_url = devstack.env.database_url(connections["default"].settings_dict)
    env = base_env(DJANGO_ENV="test", DATABASE_URL=database_url, REDIS_URL=redis.url)
    try:
        server = start_server(env, work_dir, workers=2)
    except Exception:
        redis.kill()
        raise
    yield server
    server.stop()
    redis.kill()


def samples_by_pid(
    prometheus_dir: Path, sample_name: str, kind: str = "counter", **labels: str
) -> Counter:
    """A sample's value in each process's own file (<kind>_<pid>.db), for matching labels."""
    counts: Counter = Counter()
    for path in prometheus_dir.glob(f"{kind}_*.db"):
        pid = int(path.stem.removeprefix(f"{kind}_"))
        for key, value, *_ in MmapedDict.read_all_values_from_file(str(path)):
            _metric, sample, sample_labels, _help = json.loads(key)
            if sample == sample_name and labels.items() <= sample_labels.items() and value:
                counts[pid] += int(value)
    return counts


def requests_by_pid(prometheus_dir: Path, view: str) -> Counter:
    """Requests routed to `view`, per worker."""
    return samples_by_pid(prometheus_dir, f"{BY_VIEW}_total", view=view)


def scrapes_by_pid(prometheus_dir: Path) -> Counter:
    """Requests that were not for the config view (here: the scrapes), per worker."""
    scrapes = samples_by_pid(prometheus_dir, ALL_REQUESTS)
    scrapes.subtract(requests_by_pid(prometheus_dir, "config"))
    return +scrapes  # drops workers that answered no scrape


def scraped_requests(text: str, view: str) -> float:
    """The by-view request counter for `view` in a /metrics answer (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != BY_VIEW:
            continue
        for sample in family.samples:
            if sample.name == f"{BY_VIEW}_total" and sample.labels.get("view") == view:
                total += sample.value
    return total


def worker_pids(server: Server) -> set[int]:
    """The live children of the gunicorn master, read from /proc."""
    pids = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == server.process.pid:
            pids.add(int(status.parent.name))
    return pids


@pytest.mark.checklist("P6.15", "P6.16", "P6.19")
def test_both_workers_serve_and_every_scrape_counts_each_request_exactly_once(server):
    # given two workers and nothing sent to /api/config/ yet
    workers = worker_pids(server)
    assert len(workers) == 2, f"expected two gunicorn workers, found {workers}"
    assert scraped_requests(server.get("/metrics").text, "config") == 0

    # when requests arrive concurrently, each on a fresh connection, until both workers have
    # served some (the kernel decides which worker accepts a connection)
    sent = 0
    with ThreadPoolExecutor(max_workers=12) as pool:
        for _ in range(MAX_BATCHES):
            statuses = list(
                pool.map(
                    lambda _: server.get("/api/config/").status_code, range(REQUESTS_PER_BATCH)
                )
            )
            assert statuses == [200] * REQUESTS_PER_BATCH
            sent += REQUESTS_PER_BATCH
            served = requests_by_pid(server.prometheus_dir, "config")
            if len(served) >= 2:
                break

    # then each worker counted its own share in its own file, and the shares add up
    served = requests_by_pid(server.prometheus_dir, "config")
    assert set(served) == workers, f"served by {dict(served)}, workers are {workers}"
    assert all(count > 0 for count in served.values())
    assert sum(served.values()) == sent

    # and every scrape reports the exact total, whichever worker answers it; keep scraping
    # until both workers have answered at least one scrape
    # (counted from here on: start-up health polls also entered the middleware)
    before_scraping = scrapes_by_pid(server.prometheus_dir)
    scrapes = 0
    while scrapes < 6 or len(scrapes_by_pid(server.prometheus_dir) - before_scraping) < 2:
        response = server.get("/metrics")
        assert response.status_code == 200
        assert scraped_requests(response.text, "config") == sent
        scrapes += 1
        assert scrapes <= 60, "one worker never answered a scrape"
    scrape_answerers = scrapes_by_pid(server.prometheus_dir) - before_scraping
    assert set(scrape_answerers) == workers


def gc_pauses_by_pid(prometheus_dir: Path) -> Counter:
    """Garbage collections timed in each process's own file: the files hold each bucket's own
    count, so every collection is in exactly one bucket."""
    return samples_by_pid(prometheus_dir, "python_gc_pause_seconds_bucket", kind="histogram")


def scraped_gc_pauses(text: str) -> float:
    families = text_string_to_metric_families(text)
    family = next((f for f in families if f.name == "python_gc_pause_seconds"), None)
    assert family is not None, "no python_gc_pause_seconds in /metrics"
    return sum(s.value for s in family.samples if s.name == "python_gc_pause_seconds_count")


def test_each_worker_times_its_garbage_collections_for_metrics(server):
    # given two workers serving requests until each has timed collections of its own
    workers = worker_pids(server)
    deadline = time.monotonic() + 20
    while set(gc_pauses_by_pid(server.prometheus_dir)) < workers:
        assert time.monotonic() < deadline, f"timed by {gc_pauses_by_pid(server.prometheus_dir)}"
        assert server.get("/api/config/").status_code == 200

    # then they are those workers' alone, and a scrape adds them all up
    timed = gc_pauses_by_pid(server.prometheus_dir)
    assert set(timed) == workers, f"timed by {dict(timed)}, workers are {workers}"
    assert scraped_gc_pauses(server.get("/metrics").text) >= sum(timed.values())
