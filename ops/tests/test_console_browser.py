"""The ops console in a real browser against the real stack: headless Chromium (Debian's, driven
by Playwright), gunicorn + uvicorn serving the app, the Redis channel layer, PostGIS.

A dispatcher signs in through the admin's sign-in page and opens /ops/; a rider's ping over
the HTTP API moves that rider's marker; an order booked through the API as a customer joins
the waiting queue; assigning it from the order panel reaches the rider's own socket. Map tiles
point at a closed port, as they would fail without internet: the markers must show anyway. The
test takes a screenshot; with UPDATE_SCREENSHOT=1 it replaces the README's, docs/ops-console.png:

    UPDATE_SCREENSHOT=1 .venv/bin/pytest ops/tests/test_console_browser.py
"""

import os
import secrets
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
import websockets.sync.client
from django.conf import settings
from django.contrib.gis.geos import Point
from django.db import connections
from django.utils import timezone

from accounts.tests.factories import UserFactory
from delivery.tests.journey import book_cash_order, fix, frames_until
from delivery.tests.support import METRES_PER_DEGREE_LAT
from devstack.env import PROJECT_DIR, base_env, database_url
from devstack.ports import LOCALHOST, free_port
from devstack.redis import RedisServer
from devstack.web import start_server
from orders.models import Order, OrderEvent, OrderStatus
from orders.tests.factories import AREA, DROP, PICKUP, OrderFactory, ServiceAreaFactory
from orders.tests.support import ops_user
from riders.models import Rider, RiderLocation
from riders.tests.factories import RiderFactory, access_token, located

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = PROJECT_DIR / "docs" / "ops-console.png"
STAFF_PASSWORD = secrets.token_urlsafe(16)  # a throwaway account's, made fresh each run


def north(metres: float, east_metres: float = 0) -> tuple[float, float]:
    return (
        PICKUP["lat"] + metres / METRES_PER_DEGREE_LAT,
        PICKUP["lng"] + east_metres / (METRES_PER_DEGREE_LAT * 0.975),
    )


@pytest.fixture
def server(tmp_path):
    """The app under gunicorn on its own Redis, on the test database; tiles from a dead port."""
    if not Path(CHROMIUM).exists():
        pytest.fail("needs Debian's chromium: scripts/bootstrap.sh (make test) installs it")
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = base_env(
        DJANGO_ENV="development",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=database_url(connections["default"].settings_dict),
        REDIS_URL=redis.url,
        CELERY_TASK_ALWAYS_EAGER="false",  # no worker: orders wait in the queue for ops
        MAP_TILE_URL=f"http://{LOCALHOST}:{free_port()}/{{z}}/{{x}}/{{y}}.png",
    )
    web = start_server(env, tmp_path / "web")
    yield web
    web.stop()
    redis.kill()


@pytest.fixture
def browser(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread, which Django takes for async
    # code and refuses the ORM. The test's own queries are plain sync code between page steps.
    # While that loop runs, Django keeps this thread's connections apart from the usual ones
    # (asgiref's Local follows contextvars in a thread with a loop): close them before it
    # stops, or they outlive the test and hold the test database open.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            connections.close_all()
            chromium.close()


def the_rest_of_the_city() -> None:
    """Riders and orders the screenshot shows besides the ones the test acts on."""
    for index, (metres, east) in enumerate(((-900, 1200), (1500, -700), (2600, 1800))):
        rider = RiderFactory(status=Rider.Status.ONLINE, user__name=f"Idle rider {index + 1}")
        located(rider, lat=north(metres, east)[0], lng=north(metres, east)[1], seconds_ago=15)
    stale = RiderFactory(status=Rider.Status.ONLINE, user__name="Quiet rider")
    located(stale, lat=north(-2200, -1500)[0], lng=north(-2200, -1500)[1], seconds_ago=900)

    # a delivery under way, with the path its rider took from the pickup
    carried = OrderFactory(status=OrderStatus.PICKED_UP)
    courier = carried.rider
    courier.user.name = "Courier on the way"
    courier.user.save(update_fields=["name"])
    steps = [(-400 * step, 350 * step) for step in range(8)]
    for step, (metres, east) in enumerate(steps):
        lat, lng = north(metres, east)
        RiderLocation.objects.create(
            rider=courier,
            point=Point(lng, lat, srid=4326),
            recorded_at=timezone.now() - timedelta(seconds=240 - 30 * step),
        )
    lat, lng = north(*steps[-1])
    located(courier, lat=lat, lng=lng, seconds_ago=30)
    Rider.objects.filter(pk=courier.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=6)
    )

    # an order nobody has taken for a quarter of an hour: queued and alerted
    lat, lng = north(1800, 2600)
    waiting = OrderFactory(
        status=OrderStatus.SEARCHING_RIDER,
        quote__pickup_address="Indiranagar",
        quote__pickup_location=Point(lng, lat, srid=4326),
    )
    Order.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(minutes=15))
    OrderEvent.objects.create(
        order=waiting, action="confirm_cash", to_status="searching_rider", actor_kind="system"
    )
    OrderEvent.objects.filter(order=waiting).update(
        created_at=timezone.now() - timedelta(minutes=15)
    )


def book(server, token: str, key: str, *, pickup=PICKUP, drop=DROP) -> dict:
    headers = {"Authorization": f"Bearer {token}"}
    return book_cash_order(server.request, headers, key, pickup=pickup, drop=drop)


def dispatcher_with_password():
    staff = ops_user("dispatcher", name="Asha (dispatch)")
    staff.set_password(STAFF_PASSWORD)
    staff.save(update_fields=["password"])
    return staff


def open_console(browser, server, staff):
    """A dispatcher signs in through the admin's page and lands on the live console; returns the
    page and the list its script errors are collected in."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Failed to load resource" not in message.text
            else None
        ),
    )
    page.goto(f"{server.base_url}/ops/")
    assert "/admin/login/?next=/ops/" in page.url
    page.fill("#id_username", staff.phone)
    page.fill("#id_password", STAFF_PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{server.base_url}/ops/")
    # Predicates are functions, never expression strings: those would need eval, which the
    # page's Content-Security-Policy forbids.
    page.wait_for_function(
        "() => window.opsConsole && window.opsConsole.socketState() === 'live'"
        " && window.opsConsole.snapshotLoads() > 0",
        timeout=15_000,
    )
    return page, problems


def test_a_dispatcher_watches_riders_move_orders_arrive_and_assigns_one(server, browser, tmp_path):
    # given a service area, a dispatcher with a password, and a city at work
    ServiceAreaFactory(area=AREA)
    staff = dispatcher_with_password()
    the_rest_of_the_city()

    # a rider whose app pings near the pickup and goes online, all through the API
    rider = RiderFactory(status=Rider.Status.OFFLINE, user__name="Ravi (test rider)")
    rider_token = access_token(rider.user)
    rider_headers = {"Authorization": f"Bearer {rider_token}"}
    start = north(600, -400)
    ping = server.request(
        "POST",
        "/api/v1/riders/me/location/",
        json=fix(*start, seconds_ago=40),
        headers=rider_headers,
    )
    assert ping.status_code == 202, ping.text
    online = server.request("POST", "/api/v1/riders/me/online/", headers=rider_headers)
    assert online.json()["status"] == "online", online.text

    # when the dispatcher signs in through the admin's page and lands on the console
    page, problems = open_console(browser, server, staff)

    # then the rider's marker is where the rider last was, drawn without any tile
    before = page.evaluate("id => window.opsConsole.riderLatLng(id)", str(rider.pk))
    assert before == pytest.approx({"lat": start[0], "lng": start[1]})
    assert page.locator(f'[data-rider-id="{rider.pk}"]').count() == 1

    # when the rider's app reports a new position over HTTP
    moved = north(300, -150)
    ping = server.request(
        "POST",
        "/api/v1/riders/me/location/",
        json=fix(*moved, seconds_ago=20),
        headers=rider_headers,
    )
    assert ping.status_code == 202, ping.text

    # then the marker moves there, through the ops socket
    page.wait_for_function(
        "([id, lat]) => Math.abs(window.opsConsole.riderLatLng(id).lat - lat) < 1e-9",
        arg=[str(rider.pk), moved[0]],
        timeout=5_000,
    )
    after = page.evaluate("id => window.opsConsole.riderLatLng(id)", str(rider.pk))
    assert after == pytest.approx({"lat": moved[0], "lng": moved[1]})

    # when a customer books two orders through the API
    customer = UserFactory(name="A customer")
    customer_token = access_token(customer)
    first = book(server, customer_token, "console-1")
    lat, lng = north(-1500, -2500)
    second = book(
        server,
        customer_token,
        "console-2",
        pickup={"lat": lat, "lng": lng, "address": "Lalbagh"},
        drop={"lat": 12.99, "lng": 77.57, "address": "Malleshwaram"},
    )

    # then both join the waiting queue
    for order in (first, second):
        page.wait_for_selector(f'#ops-queue li[data-order-id="{order["id"]}"]', timeout=5_000)

    # when the dispatcher opens the first and assigns the rider by hand, the rider listening
    origin = f"http://{LOCALHOST}:{server.port}"
    rider_socket_url = f"ws://{LOCALHOST}:{server.port}/ws/rider/?token={rider_token}"
    with websockets.sync.client.connect(rider_socket_url, origin=origin, open_timeout=10) as app:
        page.click(f'#ops-queue li[data-order-id="{first["id"]}"]')
        page.wait_for_selector(
            f'#ops-assign-rider option[value="{rider.pk}"]', state="attached", timeout=5_000
        )
        page.select_option("#ops-assign-rider", str(rider.pk))
        page.click("#ops-assign")

        # then the rider's app hears of it on its own socket
        assigned = frames_until(app, "assigned", order_id=first["id"])
    assert assigned["pickup"]["address"] == PICKUP["address"]

    # and the panel says so, the order leaves the queue and the other one stays
    page.wait_for_selector("#ops-panel-message.message--success", timeout=5_000)
    assert "Assigned to Ravi (test rider)" in page.inner_text("#ops-panel-message")
    page.wait_for_function(
        "id => !window.opsConsole.queuedOrderIds().includes(id)", arg=first["id"], timeout=5_000
    )
    assert second["id"] in page.evaluate("() => window.opsConsole.queuedOrderIds()")
    assert "Rider assigned" in page.inner_text('#ops-panel [data-field="status"]')
    assert Order.objects.get(pk=first["id"]).rider_id == rider.pk

    # the rider heads for the pickup: their path on the assigned order grows
    on_the_way = north(120, -60)
    ping = server.request(
        "POST",
        "/api/v1/riders/me/location/",
        json=fix(*on_the_way, seconds_ago=1),
        headers=rider_headers,
    )
    assert ping.status_code == 202, ping.text
    page.wait_for_function(
        "([id, lat]) => Math.abs(window.opsConsole.riderLatLng(id).lat - lat) < 1e-9",
        arg=[str(rider.pk), on_the_way[0]],
        timeout=5_000,
    )

    # the alerts show the order nobody took
    assert page.locator('#ops-alerts li[data-kind="no_rider"]').count() >= 1
    assert not problems, problems

    shot = tmp_path / "ops-console.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000  # a picture, not an empty page
    if os.environ.get("UPDATE_SCREENSHOT"):
        shutil.move(shot, SCREENSHOT)
    assert "Exception in ASGI application" not in server.output()


MARKUP = '<img id="injected" src="x"><a href="https://evil.example/">Pay here</a>'


def test_markup_in_an_address_or_a_rider_name_shows_as_text_on_the_dispatchers_map(server, browser):
    # given a dispatcher, and a rider whose name is markup, pinging near the pickup
    ServiceAreaFactory(area=AREA)
    staff = dispatcher_with_password()
    rider = RiderFactory(status=Rider.Status.ONLINE, user__name="<b id='rider-markup'>R</b>")
    lat, lng = north(600, -400)
    located(rider, lat=lat, lng=lng, seconds_ago=10)
    page, problems = open_console(browser, server, staff)

    # when a customer books an order whose pickup address is markup
    customer = UserFactory(name="A customer")
    order = book(
        server,
        access_token(customer),
        "markup-1",
        pickup={**PICKUP, "address": MARKUP},
    )
    assert order["pickup"]["address"] == MARKUP  # stored as typed: it is the display that counts
    page.wait_for_selector(f'#ops-queue li[data-order-id="{order["id"]}"]', timeout=5_000)

    # and the dispatcher points at the order and at the rider on the map
    page.locator(f'path[data-order-id="{order["id"]}"]').nth(1).hover(force=True)  # the pickup
    order_tooltip = page.wait_for_selector(".leaflet-tooltip", timeout=5_000)
    order_text = order_tooltip.inner_text()
    page.mouse.move(0, 0)
    page.locator(f'[data-rider-id="{rider.pk}"]').hover(force=True)
    page.wait_for_function(
        "() => [...document.querySelectorAll('.leaflet-tooltip')]"
        ".some((tip) => tip.textContent.includes('rider-markup'))",
        timeout=5_000,
    )

    # then the tooltips show the characters, and no element was made from them anywhere
    assert MARKUP in order_text
    assert page.locator("#injected").count() == 0
    assert page.locator("#rider-markup").count() == 0
    assert page.locator(".leaflet-tooltip img, .leaflet-tooltip a, .leaflet-tooltip b").count() == 0
    assert page.locator('a[href="https://evil.example/"]').count() == 0
    assert problems == []
