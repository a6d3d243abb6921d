"""The simulator against the real stack: gunicorn + uvicorn, a Celery worker dispatching, a
Redis of its own, PostGIS. Nothing is mocked; the simulator talks to the server over HTTP and
WebSockets only, and reads the SMS outbox and approves its riders in the shared database.

The city is shrunk and sped up so deliveries finish within a minute: a 400 m zone, short
trips, riders at 100-110 km/h (under RIDER_MAX_SPEED_KMH, 120), fixes every 2 s and short
stops. The movement tests (test_movement.py) cover the realistic defaults.
"""

import asyncio
import io
from dataclasses import replace

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import override_settings

from devstack.ports import free_port
from orders.models import Order, OrderEvent
from orders.tests.factories import AREA, OrderFactory, ServiceAreaFactory
from riders.models import Earning, Rider, RiderLocation
from simulator import customers
from simulator.api import Api, Session, TokenStore
from simulator.database import mint_tokens
from simulator.geo import metres_between
from simulator.riders import RIDER_PHONE_PREFIX
from simulator.run import Config, Simulation

FAST_CITY = Config(
    riders=5,
    customers=3,
    orders_per_minute=20,
    minutes=1.25,
    seed=11,
    radius_km=0.4,
    trip_km=(0.2, 0.5),
    speed_kmh=(100.0, 110.0),
    ping_seconds=2.0,
    dwell_seconds=(0.5, 1.5),
    accept_delay_seconds=(0.3, 1.0),
    decline_rate=0.1,
    http_share=0.4,
    report_seconds=10.0,
    ramp_seconds=1.0,
)


def simulated_riders():
    return Rider.objects.filter(user__phone__startswith=RIDER_PHONE_PREFIX)


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.django_db(transaction=True)
def test_a_short_run_signs_in_rides_books_and_delivers_through_the_api(
    dev_server, dev_worker, tmp_path, monkeypatch
):
    # given a service area, as the demo data has one
    ServiceAreaFactory(area=AREA)
    tokens = tmp_path / "tokens.json"
    lines = []
    # and customers who change their mind on a fifth of their bookings, within seconds
    monkeypatch.setattr(customers, "CHANGE_OF_MIND_SECONDS", (0.5, 3.0))

    # when the simulator runs for 75 s with 5 riders and 3 customers
    simulation = Simulation(
        replace(FAST_CITY, url=dev_server.base_url, token_file=tokens, cancel_share=0.2),
        lines.append,
    )
    asyncio.run(simulation.run())
    summary = simulation.summary()
    print("\n".join(lines), summary, sep="\n")  # shown when the test fails
    events, stats = simulation.stats.events, simulation.stats

    # then every rider and customer signed in by OTP through the API and the riders went online
    assert events["riders signed in: OTP"] == 5, summary
    assert events["customers signed in: OTP"] == 3, summary
    assert events["riders approved by the simulator"] == 5, summary
    assert events["riders went online"] == 5, summary
    assert simulation.online_at_end == 5, summary
    assert stats.statuses[("otp request", 202)] == 8
    assert stats.statuses[("otp verify", 200)] == 8

    # orders were booked through the API, offered over the riders' sockets and delivered with
    # the customers' codes; each delivered order earned its rider the fixed pay once
    booked = Order.objects.filter(customer__phone__startswith="+91900006")
    assert booked.count() == events["orders booked"] >= 10, summary
    assert events["offers received"] >= 1 and events["offers accepted"] >= 1, summary
    delivered = booked.filter(status="delivered")
    assert delivered.count() >= 1, summary
    # some were cancelled by their customer through the API before a rider picked them up
    changed_mind = OrderEvent.objects.filter(
        order__in=booked, to_status="cancelled", reason=customers.CHANGED_MIND
    )
    assert changed_mind.count() == events["orders cancelled by their customer"] >= 1, summary
    assert not changed_mind.filter(from_status__in=["picked_up", "at_dropoff"]).exists()
    assert delivered.count() == events["deliveries completed"]
    for order in delivered:
        earning = Earning.objects.get(order=order)
        assert earning.rider_id == order.rider_id
        assert earning.amount_paise == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE
        assert earning.cash_collected_paise == order.amount_paise  # cash on delivery
    # the customers watched: status and location frames on /ws/delivery/<id>/
    assert events["tracking socket frames: status"] >= events["orders booked"]
    assert events["tracking socket frames: location"] >= 1, summary

    # the riders' positions moved in the database, over both the socket and HTTP
    assert events["fixes sent over the socket"] > 0 and events["fixes sent over HTTP"] > 0
    assert stats.statuses[("location (WS)", 202)] > 0
    assert stats.statuses[("location (HTTP)", 202)] > 0
    for rider in simulated_riders():
        trail = [
            (p.y, p.x)
            for p in RiderLocation.objects.filter(rider=rider).values_list("point", flat=True)
        ]
        assert len(trail) >= 10
        assert max(metres_between(trail[0], point) for point in trail) > 100

    # no 5xx, no location refused, no step refused by the geofence
    assert stats.server_errors == 0, summary
    assert not [key for key in stats.errors if "location" in key], summary
    assert not [key for key in stats.errors if "outside_geofence" in key], summary
    assert "Traceback" not in dev_server.output()

    # and the shutdown left nothing behind: riders offline, no simulated order still live
    assert not simulated_riders().exclude(status=Rider.Status.OFFLINE).exists()
    assert not booked.exclude(status__in=["delivered", "cancelled", "failed"]).exists()
    assert events["riders went offline at the end"] == 5
    assert "Simulation summary" in summary and "p95 ms" in summary

    # when it runs again through the command, the same users sign in from the cached tokens
    out = io.StringIO()
    call_command(
        "simulate",
        url=dev_server.base_url,
        riders=5,
        customers=3,
        orders_per_minute=0,
        minutes=0.3,
        seed=12,
        radius_km=0.4,
        token_file=str(tokens),
        report_seconds=60,
        stdout=out,
    )
    text = out.getvalue()
    assert "signed in 5 (OTP 0, cached token 5, minted 0)" in text, text
    assert "went online 5 (online already 0); online at the end 5" in text, text
    assert "5xx answers 0" in text, text
    assert not simulated_riders().exclude(status=Rider.Status.OFFLINE).exists()


@pytest.mark.timeout(120)
@pytest.mark.django_db(transaction=True)
def test_a_screen_dropped_before_the_last_frame_reconnects_to_show_how_the_order_ended(dev_server):
    # given an order the rider's app has delivered (seq 13), whose customer's screen was cut
    # by a restart while it showed seq 12, at the drop
    order = OrderFactory(status="delivered", tracking_seq=13)
    order_id = str(order.pk)
    access, refresh = mint_tokens(order.customer.phone, "customer")
    simulation = Simulation(replace(FAST_CITY, url=dev_server.base_url), print)
    screen = customers.TrackingScreen(order_id, seq=12, status="at_dropoff")

    async def reconnect():
        simulation.api = Api(dev_server.base_url, simulation.stats)
        try:
            customer = customers.SimCustomer(simulation, 0)
            customer.session = Session(
                simulation.api,
                TokenStore(None, dev_server.base_url),
                phone=order.customer.phone,
                role="customer",
                access=access,
                refresh=refresh,
            )
            simulation.orders.booked(order_id, customer, "4321", "at_dropoff")
            simulation.orders.ended(order_id, "delivered")  # as the rider's app saw it
            await asyncio.wait_for(customer.watch(screen), timeout=60)
        finally:
            await simulation.api.close()

    # when the screen comes back
    asyncio.run(reconnect())

    # then it reconnected once, read the order's last frame, and stopped on the server's 1000
    assert (screen.sockets, screen.seq, screen.status) == (1, 13, "delivered")
    assert simulation.stats.errors == {}, simulation.summary()


@override_settings(SMS_PROVIDER="msg91")
def test_the_command_refuses_without_the_dummy_sms_outbox():
    with pytest.raises(CommandError, match="SMS_PROVIDER=dummy"):
        call_command("simulate", minutes=1)


def test_the_command_refuses_speeds_the_server_would_refuse():
    with pytest.raises(CommandError, match="RIDER_MAX_SPEED_KMH"):
        call_command("simulate", speed_kmh=(20.0, 130.0), minutes=1)


@pytest.mark.django_db
def test_the_command_says_so_when_no_server_answers():
    with pytest.raises(CommandError, match="No server answers"):
        call_command("simulate", url=f"http://127.0.0.1:{free_port()}", minutes=1, token_file="")
