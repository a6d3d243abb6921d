"""A client generated from the live OpenAPI schema delivers an order end to end, as the app teams'
generated clients will: gunicorn + uvicorn, a Celery worker dispatching, a Redis of its own,
PostGIS. Every API call goes through a generated function and every answer must parse into the
model the schema promises, with the schema's types (core.tests.generated_client). The socket
frames, sent and received, are checked against the AsyncAPI document (core.tests.asyncapi).

What is not in the API is done in the database as ops and phones do it: the login codes are read
from the dummy SMS outbox (what `manage.py sms_outbox` prints) and the rider is approved with the
service behind `manage.py rider_approve` (ops have no API for it, only the admin).
"""

import asyncio
import contextlib
import json
import math
import time
import typing
import uuid
from datetime import UTC, datetime

import pytest
import websockets.asyncio.client
from django.conf import settings
from django.db import connection

from core.tests import generated_client
from core.tests.asyncapi import validate_frame
from core.tests.generated_client import parsed
from orders.tests.factories import AREA, ServiceAreaFactory

CUSTOMER_PHONE = "+919000071001"
RIDER_PHONE = "+919000071002"
# A pickup in the factories' service area and a drop 250 m north of it: long enough to quote
# (ORDER_MIN_DISTANCE_M, 200), short enough that the rider's first fix, 75 m from the pickup,
# is where the trip starts, and one ride of ~150 m at a believable speed reaches the drop.
METRES_PER_DEGREE_LAT = 111_320
PICKUP = (12.9716, 77.5946)
DROP = (PICKUP[0] + 250 / METRES_PER_DEGREE_LAT, PICKUP[1])
NEAR_PICKUP = (PICKUP[0] + 75 / METRES_PER_DEGREE_LAT, PICKUP[1])
NEAR_DROP = (DROP[0] - 30 / METRES_PER_DEGREE_LAT, DROP[1])
RIDING_KMH = 60  # well under RIDER_MAX_SPEED_KMH (120), so the fixes are never refused
FRAME_TIMEOUT = 20.0


@pytest.fixture
def generated(dev_server, tmp_path):
    """The package openapi-python-client generates from the running server's /api/schema/."""
    answer = dev_server.get("/api/schema/?format=json")
    assert answer.status_code == 200, answer.text
    schema = tmp_path / "openapi.json"
    schema.write_bytes(answer.content)
    yield generated_client.generate(schema, tmp_path)
    generated_client.forget_package()


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.django_db(transaction=True)
def test_a_client_generated_from_the_live_schema_books_and_delivers_an_order(
    dev_server, dev_worker, generated
):
    # given a service area, as the demo data has one
    ServiceAreaFactory(area=AREA)

    # when a customer and a rider, through the generated client only, deliver one order
    flow = Flow(generated.package, dev_server.base_url)
    flow.defects += generated_client.answers_without_a_schema(generated.schema)
    try:
        asyncio.run(flow.run())
    finally:
        print("tracking frames:", *flow.tracking_frames, sep="\n")  # shown when the test fails

    # then (the calls' answers were checked as they came) the customer's tracking socket
    # streamed the order's life, in order, and was closed normally once it was delivered
    statuses = [frame["status"] for frame in flow.tracking_frames if frame["type"] == "status"]
    assert statuses == [
        "searching_rider",
        "rider_assigned",
        "at_pickup",
        "picked_up",
        "at_dropoff",
        "delivered",
    ]
    # every event of the order, each numbered one more than the last (a gap means one missed)
    seqs = [frame["seq"] for frame in flow.tracking_frames]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
    assert flow.tracking_frames[-1]["type"] == "status", flow.tracking_frames
    assert flow.tracking_frames[-1]["seq"] == flow.final_seq
    assert any(frame["type"] == "location" for frame in flow.tracking_frames), flow.tracking_frames
    assert flow.tracking_close_code == 1000
    assert "Traceback" not in dev_server.output()
    # and the schema defects the flow could go on past stand no more
    assert not flow.defects, flow.defects


class Flow:
    """One delivery, driven through the generated package `api`."""

    def __init__(self, api, base_url: str) -> None:
        self.api = api
        self.base_url = base_url
        self.ws_url = base_url.replace("http://", "ws://", 1)
        self.tracking_frames: list[dict] = []
        self.tracking_close_code: int | None = None
        self.final_seq: int | None = None
        self.last_answer = ""
        self.defects: list[str] = []  # found on the way, where the flow can go on

    def module(self, name: str):
        """A generated module, e.g. "api.orders.orders_create" or "models"."""
        return __import__(f"{self.api.__name__}.{name}", fromlist=["_"])

    def call(self, name: str):
        """The generated operation `name` (e.g. "orders.orders_create"), whose model failing to
        read an answer fails the test with the operation and the answer's body."""
        function = self.module(f"api.{name}").asyncio_detailed

        async def call(*args, **kwargs):
            try:
                return await function(*args, **kwargs)
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise AssertionError(
                    f"{name}: the generated model cannot read the answer: {error!r}\n"
                    f"{self.last_answer}"
                ) from error

        return call

    def client_options(self) -> dict:
        """Every answer is kept (as last_answer) for the failure message of call()."""

        async def remember(response) -> None:
            await response.aread()
            request = response.request
            self.last_answer = (
                f"{request.method} {request.url.path} -> {response.status_code}: {response.text}"
            )

        return {
            "base_url": self.base_url,
            "raise_on_unexpected_status": True,
            "httpx_args": {"event_hooks": {"response": [remember]}},
        }

    async def run(self) -> None:
        models = self.module("models")
        api = self.api
        anonymous = api.Client(**self.client_options())

        # The app's first call, before anyone signs in: the bootstrap config. The generated
        # function must take an anonymous client; a schema that asks for a token here makes it
        # demand an AuthenticatedClient (recorded, and the flow goes on to find more).
        config_call = self.call("service.service_config")
        takes = self.module("api.service.service_config").asyncio_detailed.__annotations__["client"]
        if api.Client not in (typing.get_args(takes) or (takes,)):
            self.defects.append(
                "service_config: the generated function demands an AuthenticatedClient, so an "
                f"app cannot read its bootstrap config before sign-in (client: {takes})"
            )
        config = parsed(await config_call(client=anonymous), models.ConfigOutput)

        customer = await self.sign_in(anonymous, CUSTOMER_PHONE, models.Role.CUSTOMER)
        rider = await self.sign_in(anonymous, RIDER_PHONE, models.Role.RIDER)

        # the rider fills in the profile, and ops approve it (no ops API for that: the service
        # behind `manage.py rider_approve`)
        profile = parsed(
            await self.call("riders.riders_me_replace")(
                client=rider,
                body=models.RiderMeInput(
                    name="Generated Rider",
                    vehicle_type=models.VehicleType.SCOOTER,
                    vehicle_number="KA01AB1234",
                ),
            ),
            models.RiderProfileOutput,
        )
        assert profile.approved is False
        await in_thread(approve_rider, RIDER_PHONE)
        profile = parsed(
            await self.call("riders.riders_me_get")(client=rider), models.RiderProfileOutput
        )
        assert profile.approved is True

        # a first fix near the pickup, then online, with the rider's socket open for offers
        last_fix = await self.send_fix_http(rider, models, NEAR_PICKUP)
        online = parsed(
            await self.call("riders.riders_go_online")(client=rider), models.RiderProfileOutput
        )
        assert online.status == models.RiderStatus.ONLINE
        rider_socket = await websockets.asyncio.client.connect(
            f"{self.ws_url}/ws/rider/?token={rider.token}", open_timeout=20, close_timeout=5
        )
        rider_frames: asyncio.Queue[dict] = asyncio.Queue()
        rider_reader = asyncio.create_task(read_frames(rider_socket, "rider", rider_frames))
        tracking = None
        try:
            # the customer asks a quote and books it, cash on delivery
            quote = parsed(
                await self.call("orders.orders_quote")(
                    client=customer,
                    body=models.QuoteCreateInput(
                        pickup=models.PlaceInput(lat=PICKUP[0], lng=PICKUP[1], address="MG Road 1"),
                        drop=models.PlaceInput(lat=DROP[0], lng=DROP[1], address="MG Road 2"),
                        package=models.QuotePackageInput(description="Keys", weight_grams=200),
                    ),
                ),
                models.QuoteCreateOutput,
            )
            assert quote.total_paise > 0 and quote.distance_m >= 200
            booked = await self.call("orders.orders_create")(
                client=customer,
                body=models.OrderListCreateInput(
                    quote_id=quote.id, payment_method=models.PaymentMethod.COD
                ),
                idempotency_key=str(uuid.uuid4()),
            )
            assert booked.status_code == 201, booked.content
            order = parsed(booked, models.OrderOutput)
            assert (
                order.status == models.OrderStatus.SEARCHING_RIDER
                and order.amount_paise == quote.total_paise
            )
            order_id = order.id

            # the customer watches the order on the tracking socket
            # (its first frame, the current status, before the rider can take the order)
            watching = asyncio.Event()
            tracking = asyncio.create_task(
                self.watch(
                    f"{self.ws_url}/ws/delivery/{order_id}/?token={customer.token}", watching
                )
            )
            first = asyncio.create_task(watching.wait())
            await asyncio.wait(
                {tracking, first}, timeout=FRAME_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            first.cancel()
            if tracking.done():
                tracking.result()  # raises what ended it
            assert watching.is_set(), "no first frame on the tracking socket"

            # the offer reaches the rider over the socket, and the rider takes it
            offer = await next_frame(rider_frames, "offer", order_id=str(order_id))
            accepted = parsed(
                await self.call("riders.riders_offers_accept")(
                    uuid.UUID(offer["offer_id"]), client=rider
                ),
                models.OfferOutput,
            )
            assert accepted.order_id == order_id and accepted.status == models.OfferStatus.ACCEPTED
            assert accepted.pay_paise == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE

            # the steps: at the pickup, picked up, a ride to the drop (a fix over the socket),
            # at the drop
            step = await self.step("delivery_arrived_pickup", order_id, rider)
            assert step.status == models.OrderStatus.AT_PICKUP
            step = await self.step("delivery_picked_up", order_id, rider)
            assert step.status == models.OrderStatus.PICKED_UP
            await asyncio.sleep(
                max(0.0, last_fix + ride_seconds(NEAR_PICKUP, NEAR_DROP) - time.monotonic())
            )
            await send_fix_socket(rider_socket, NEAR_DROP)
            await next_frame(rider_frames, "location_ack")
            step = await self.step("delivery_arrived_drop", order_id, rider)
            assert step.status == models.OrderStatus.AT_DROPOFF

            # the customer reads the delivery code from the order and tells it at the door
            seen = parsed(
                await self.call("orders.orders_get")(order_id, client=customer), models.OrderOutput
            )
            assert seen.status == models.OrderStatus.AT_DROPOFF and isinstance(
                seen.delivery_code, str
            )
            delivered = parsed(
                await self.call("delivery.delivery_deliver")(
                    order_id,
                    client=rider,
                    body=models.DeliverInput(delivery_code=seen.delivery_code),
                ),
                models.TrackingOutput,
            )
            assert delivered.status == models.OrderStatus.DELIVERED
            self.final_seq = delivered.seq

            # the rider's earnings show the fixed pay for it, and the cash collected
            earnings = parsed(
                await self.call("riders.riders_earnings")(client=rider), models.EarningsPage
            )
            assert [entry.order_id for entry in earnings.results] == [order_id]
            assert earnings.results[0].amount_paise == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE
            assert earnings.total_paise == settings.RIDER_FIXED_PAY_PER_ORDER_PAISE
            assert earnings.results[0].cash_collected_paise == order.amount_paise
            # as the apps are told it (ConfigOutput says: in paise)
            assert config.rider_fixed_pay_per_order == earnings.total_paise

            # the customer rates it, and the tracking snapshot agrees with the socket
            rating = await self.call("orders.orders_rate")(
                order_id, client=customer, body=models.OrderRatingInput(stars=5, comment="Quick")
            )
            assert rating.status_code == 201, rating.content
            assert parsed(rating, models.OrderRatingOutput).stars == 5
            snapshot = parsed(
                await self.call("delivery.delivery_get")(order_id, client=customer),
                models.TrackingOutput,
            )
            assert snapshot.status == models.OrderStatus.DELIVERED
            assert snapshot.seq == delivered.seq
            await asyncio.wait_for(tracking, FRAME_TIMEOUT)
        finally:
            if tracking is not None and not tracking.done():
                tracking.cancel()
            rider_reader.cancel()
            await rider_socket.close()
            with contextlib.suppress(asyncio.CancelledError):
                await rider_reader  # raises what a frame the document refuses raised
            for client in (customer, rider):
                await client.get_async_httpx_client().aclose()
            await anonymous.get_async_httpx_client().aclose()

    async def sign_in(self, anonymous, phone: str, role):
        """OTP sign-in through the API, the code read from the outbox; an authenticated client."""
        models = self.module("models")
        since = datetime.now(UTC)
        requested = parsed(
            await self.call("auth.auth_otp_request")(
                client=anonymous, body=models.OtpRequestInput(phone=phone)
            ),
            models.OtpRequestOutput,
        )
        assert requested.expires_in > 0
        code = await in_thread(login_code, phone, since)
        verified = parsed(
            await self.call("auth.auth_otp_verify")(
                client=anonymous, body=models.OtpVerifyInput(phone=phone, otp=code, role=role)
            ),
            models.OtpVerifyOutput,
        )
        assert verified.user.phone == phone and role in verified.user.roles
        return self.api.AuthenticatedClient(token=verified.access, **self.client_options())

    async def send_fix_http(self, rider, models, point: tuple[float, float]) -> float:
        answer = await self.call("riders.riders_location")(
            client=rider,
            body=models.RiderLocationInput(
                lat=point[0], lng=point[1], recorded_at=datetime.now(UTC), accuracy_m=5.0
            ),
        )
        assert answer.status_code == 202, answer.content
        assert parsed(answer, models.RiderLocationOutput).latest is True
        return time.monotonic()

    async def step(self, name: str, order_id: uuid.UUID, rider):
        return parsed(
            await self.call(f"delivery.{name}")(order_id, client=rider),
            self.module("models").TrackingOutput,
        )

    async def watch(self, url: str, first_frame: asyncio.Event) -> None:
        """Every frame of the customer's tracking socket until the server closes it."""
        async with websockets.asyncio.client.connect(url, open_timeout=20) as socket:
            async for raw in socket:
                frame = json.loads(raw)
                validate_frame("delivery", frame)
                self.tracking_frames.append(frame)
                first_frame.set()
            self.tracking_close_code = socket.close_code


async def read_frames(socket, channel: str, into: asyncio.Queue) -> None:
    """Puts each frame on `into`, or what checking it raised, so the waiting test sees it."""
    try:
        async for raw in socket:
            frame = json.loads(raw)
            validate_frame(channel, frame)
            await into.put(frame)
    except Exception as error:
        await into.put(error)
        raise


async def next_frame(frames: asyncio.Queue, kind: str, **match: str) -> dict:
    """The next frame of that type (and those values), skipping others."""
    async with asyncio.timeout(FRAME_TIMEOUT):
        while True:
            frame = await frames.get()
            if isinstance(frame, Exception):
                raise frame
            if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                return frame


async def send_fix_socket(socket, point: tuple[float, float]) -> None:
    frame = {
        "type": "location",
        "lat": point[0],
        "lng": point[1],
        "accuracy_m": 5.0,
        "recorded_at": datetime.now(UTC).isoformat(),
    }
    validate_frame("rider", frame, sent_by="client")
    await socket.send(json.dumps(frame))


def ride_seconds(start: tuple[float, float], end: tuple[float, float]) -> float:
    metres = math.dist(start, end) * METRES_PER_DEGREE_LAT  # north-south only here
    return metres / (RIDING_KMH / 3.6)


async def in_thread(function, *args):
    def run():
        try:
            return function(*args)
        finally:
            connection.close()

    return await asyncio.to_thread(run)


def login_code(phone: str, since: datetime) -> str:
    from simulator.database import login_code as outbox_code

    deadline = time.monotonic() + 10
    while (code := outbox_code(phone, since)) is None:
        assert time.monotonic() < deadline, f"no login code for {phone} in the SMS outbox"
        time.sleep(0.1)
    return code


def approve_rider(phone: str) -> None:
    from riders.services import rider_approve_by_phone

    _, changed = rider_approve_by_phone(phone=phone)
    assert changed
