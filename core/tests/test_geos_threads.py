"""core/geos_threads.py: requests that read geometries leave no GEOS state behind when their
thread ends (ASGI runs each request's synchronous code in a thread of its own). The requests
go through the served ASGI app in a process of its own, in production settings."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connections

from devstack.env import PROJECT_DIR, database_url, local_production_env
from orders.tests.factories import ServiceAreaFactory

CALLS = 100

# Run by the child process: CALLS requests to /api/config/ (which reads each active service
# area's polygon), then the GEOS context handles still alive and the answers' statuses.
CHILD = f"""
import asyncio, gc
import django
django.setup()
import httpx
from django.contrib.gis.geos.prototypes.threadsafe import GEOSContextHandle
from config.asgi import application

async def main():
    transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return {{(await client.get("/api/config/")).status_code for _ in range({CALLS})}}

statuses = asyncio.run(main())
gc.collect()
alive = sum(1 for thing in gc.get_objects() if isinstance(thing, GEOSContextHandle))
print(sorted(statuses), alive)
"""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_requests_that_read_a_geometry_leave_no_geos_handle_behind():
    # given a service area, whose polygon /api/config/ reads in each request's own thread
    ServiceAreaFactory()

    # when the app answers 100 of them in production settings
    env = local_production_env(
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=os.environ.get("REDIS_URL") or settings.REDIS_URL,
        LOG_LEVEL="WARNING",
    )
    result = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # then no GEOS context handle is left from the threads they ran in: without
    # core.geos_threads, one was lost per request (100 here)
    assert result.returncode == 0, result.stderr[-3000:]
    statuses, alive = result.stdout.strip().splitlines()[-1].rsplit(" ", 1)
    assert statuses == "[200]", result.stdout
    assert int(alive) <= 2, result.stdout
