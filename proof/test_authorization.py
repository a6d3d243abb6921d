"""The authorization matrix, against the real running stack.

Every (route, method) of config.urls, except the admin (listed below with the reason), is a row
of `table()`: for each actor, the status code (and error code) the service must answer. A route
or method added to the URL conf without a row fails test_the_table_covers_every_route_and_method
(and a new WebSocket route fails test_the_socket_routes_are_the_known_ones).

The actors, around one order of customer A:
    anonymous       no Authorization header
    customer_a      the order's customer
    customer_b      another customer
    rider           the order's rider (assigned to it, or holding its offer)
    other_rider     a rider with nothing to do with the order
    dispatcher      staff in the dispatcher group (sees every order, cancels any order)
    finance         staff in the finance group (sees every order, may not cancel)
    staff_no_group  is_staff without any group: no more rights than anyone else

Each cell gets a fresh order (and a fresh rider for it), so a request that changes state never
spoils the next cell. Besides the status, every cell checks that
  - nobody but A sees A's phone number, and nobody but the rider sees the rider's phone;
  - nobody but A ever sees the delivery code (not the rider, not staff);
  - actors with no business with the order (anonymous, B, the other rider, staff without a
    group) never see the order's or the offer's id, except in an error about the URL they sent;
  - a refused request (4xx) changed nothing: order, offer, rider, rating, payments, quote.
The WebSocket routes get the same treatment by close code. Further tests: OPTIONS is no side
door, a bad, expired or deactivated user's token is a 401 (never anonymous-but-ok) while public
pages ignore it, a user's token does not stand in for the webhook signature, and nobody can
grant themselves staff, approval or an unsuspended status.
"""

import contextlib
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import websockets.sync.client
from django.contrib.gis.geos import Point
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import RefreshToken
from websockets.exceptions import ConnectionClosed, InvalidStatus

from accounts.tests.factories import OtpChallengeFactory, UserFactory, phone_number
from config.routing import websocket_urlpatterns
from delivery.models import Offer
from orders.models import Order, OrderStatus, PaymentMethod, PaymentStatus, Rating
from orders.tests.factories import QuoteFactory
from payments.models import Payment
from payments.tests.fake_razorpay import checkout_signature, webhook_body, webhook_signature
from proof.conftest import (
    WEB_APP_ORIGINS,
    Person,
    assert_on_test_database,
    customer,
    order_for,
    rider,
    staff,
)
from riders.models import Rider
from riders.tests.factories import located

pytestmark = pytest.mark.slow

ACTORS = (
    "anonymous",
    "customer_a",
    "customer_b",
    "rider",
    "other_rider",
    "dispatcher",
    "finance",
    "staff_no_group",
)
# No business with the order at all: they must never learn its id.
STRANGERS = {"anonymous", "customer_b", "other_rider", "staff_no_group"}

# What the URL walk leaves out, and why.
OUT_OF_SCOPE_PREFIXES = {
    "admin/": "Django admin: a staff browser session with CSRF, redirecting everyone else to "
    "its login page; accounts/tests/test_url_permissions.py covers its anonymous refusal and "
    "the admin tests its permissions. Static files are served by WhiteNoise middleware and "
    "have no URL pattern.",
}
OUT_OF_SCOPE_METHODS = {
    "OPTIONS": "DRF metadata; test_options_is_no_side_door checks anonymous is refused.",
    "HEAD": "Django answers HEAD with the GET handler.",
}
# Function views do not say which methods they take; their rows name them.
FUNCTION_VIEW_METHODS = {"metrics": {"GET"}}

# Far from MG Road (where the other proof tests put riders): more than DISPATCH_MAX_RADIUS_M,
# so no one else's rider is offered these orders and no rider here is offered theirs.
PICKUP = (13.08, 77.68)  # lat, lng: inside the Central Bengaluru test area
DROP = (13.05, 77.65)
FAR_AWAY = (28.6139, 77.2090)  # New Delhi: where the other rider pings from


def point(place: tuple[float, float]) -> Point:
    return Point(place[1], place[0], srid=4326)


# --- The world of one cell -----------------------------------------------------------------------


@dataclass
class World:
    shared: dict[str, Person]
    rider: Person
    order: Order
    code: str
    offer: Offer | None = None
    quote: object | None = None
    extra: dict = field(default_factory=dict)

    def person(self, actor: str) -> Person | None:
        if actor == "anonymous":
            return None
        return self.rider if actor == "rider" else self.shared[actor]

    @property
    def a(self) -> Person:
        return self.shared["customer_a"]


def _new_order(world_shared, status, *, carrier=None, **fields) -> tuple[Order, str]:
    code = f"{secrets.randbelow(9000) + 1000}"
    order = order_for(
        world_shared["customer_a"],
        status,
        carrier,
        delivery_code=code,
        quote__pickup_location=point(PICKUP),
        quote__drop_location=point(DROP),
        **fields,
    )
    return order, code


def offered(shared) -> World:
    """A searching order of A's; the rider (online, at the pickup) holds its pending offer."""
    person = rider(Rider.Status.ONLINE)
    located(person.rider, lat=PICKUP[0], lng=PICKUP[1])
    order, code = _new_order(shared, OrderStatus.SEARCHING_RIDER)
    offer = Offer.objects.create(
        order=order,
        rider=person.rider,
        round_number=1,
        distance_m=10,
        pay_paise=5000,
        expires_at=timezone.now() + timedelta(seconds=60),
    )
    return World(shared, person, order, code, offer=offer)


def carrying(status: str, at: tuple[float, float] | None = PICKUP) -> Callable[[dict], World]:
    """An order of A's in a carrying `status`, assigned to the rider, who is at `at`."""

    def build(shared) -> World:
        person = rider(Rider.Status.ON_DELIVERY)
        if at is not None:
            located(person.rider, lat=at[0], lng=at[1])
        order, code = _new_order(shared, status, carrier=person)
        return World(shared, person, order, code)

    return build


def delivered(shared) -> World:
    person = rider(Rider.Status.ONLINE)
    order, code = _new_order(shared, OrderStatus.DELIVERED, carrier=person)
    return World(shared, person, order, code)


def quoted(shared) -> World:
    """The offered world, plus a fresh unbooked quote of A's."""
    world = offered(shared)
    world.quote = QuoteFactory(
        customer=world.a.user, pickup_location=point(PICKUP), drop_location=point(DROP)
    )
    return world


def razorpay_pending(shared) -> World:
    person = rider(Rider.Status.ONLINE)
    order, code = _new_order(
        shared,
        OrderStatus.PAYMENT_PENDING,
        payment_method=PaymentMethod.RAZORPAY,
        payment_status=PaymentStatus.PENDING,
    )
    return World(shared, person, order, code)


def razorpay_paid_at_checkout(stack) -> Callable[[dict], World]:
    """A razorpay order whose checkout captured a payment: what verify/ is called with."""

    def build(shared) -> World:
        world = razorpay_pending(shared)
        razorpay_order_id = f"order_proof{uuid.uuid4().hex[:12]}"
        stack.razorpay.orders[razorpay_order_id] = {
            "id": razorpay_order_id,
            "entity": "order",
            "amount": world.order.amount_paise,
            "currency": world.order.currency,
            "receipt": str(world.order.pk),
            "notes": {},
            "status": "created",
        }
        Payment.objects.create(
            order=world.order,
            razorpay_order_id=razorpay_order_id,
            amount_paise=world.order.amount_paise,
            currency=world.order.currency,
        )
        payment = stack.razorpay.capture(razorpay_order_id)
        world.extra["checkout"] = {
            "razorpay_order_id": razorpay_order_id,
            "razorpay_payment_id": payment["id"],
            "razorpay_signature": checkout_signature(razorpay_order_id, payment["id"]),
        }
        return world

    return build


def state(world: World) -> dict:
    """What a refused request must leave as it was."""
    order = Order.objects.get(pk=world.order.pk)
    rider_row = Rider.objects.select_related("user").get(pk=world.rider.rider.pk)
    return {
        "order": (
            order.status,
            order.rider_id,
            order.payment_status,
            order.delivery_code_attempts,
            order.notes,
        ),
        "offer": Offer.objects.get(pk=world.offer.pk).status if world.offer else None,
        "rider": (rider_row.status, rider_row.vehicle_number, rider_row.user.name),
        "rated": Rating.objects.filter(order=order).exists(),
        "payments": sorted(
            Payment.objects.filter(order=order).values_list("razorpay_order_id", "status")
        ),
        "quote_booked": (
            Order.objects.filter(quote=world.quote).exists() if world.quote is not None else None
        ),
    }


# --- Request bodies ------------------------------------------------------------------------------


def fresh_phone() -> str:
    return phone_number(70_000_000 + secrets.randbelow(9_999_999))


def otp_request_body(world, actor):
    return {"json": {"phone": fresh_phone()}}


def otp_verify_body(world, actor):
    challenge = OtpChallengeFactory(phone=fresh_phone(), code="123456")
    return {"json": {"phone": challenge.phone, "otp": "123456", "role": "customer"}}


def own_refresh_body(world, actor):
    person = world.person(actor)
    user = person.user if person else UserFactory()
    return {"json": {"refresh": str(RefreshToken.for_user(user))}}


def a_refresh_body(world, actor):
    token = RefreshToken.for_user(world.a.user)
    world.extra["a_refresh_jti"] = token["jti"]
    return {"json": {"refresh": str(token)}}


def place_body(place):
    return {"lat": place[0], "lng": place[1], "address": "Proof street"}


def quote_body(world, actor):
    return {
        "json": {
            "pickup": place_body(PICKUP),
            "drop": place_body(DROP),
            "package": {"description": "Documents", "weight_grams": 500},
        }
    }


def book_a_quote(world, actor):
    return {"json": {"quote_id": str(world.quote.pk), "payment_method": "cod"}}


def rider_profile_put(world, actor):
    person = world.person(actor)
    profile = person.rider if person and person.rider else None
    return {
        "json": {
            "name": "Proof Rider",
            "vehicle_type": profile.vehicle_type if profile else "motorcycle",
            "vehicle_number": profile.vehicle_number if profile else "KA01AB0001",
        }
    }


def location_body(world, actor):
    where = FAR_AWAY if actor == "other_rider" else PICKUP
    fix = {"lat": where[0], "lng": where[1], "recorded_at": timezone.now().isoformat()}
    return {"json": fix}


def webhook(world, actor):
    body = webhook_body(
        "payment.authorized",
        payment={"id": f"pay_proof{uuid.uuid4().hex[:10]}", "order_id": "order_none"},
    )
    return {
        "content": body,
        "headers": {
            "Content-Type": "application/json",
            "X-Razorpay-Signature": webhook_signature(body),
            "X-Razorpay-Event-Id": f"evt_proof{uuid.uuid4().hex}",
        },
    }


def static(payload: dict) -> Callable:
    return lambda world, actor: {"json": payload}


# --- Extra checks on some cells ------------------------------------------------------------------


def body_of(response) -> dict | list | None:
    with contextlib.suppress(ValueError):
        return response.json()
    return None


def me_is_the_caller(world, actor, response) -> list[str]:
    person = world.person(actor)
    if response.status_code == 200 and body_of(response)["phone"] != person.user.phone:
        return ["me/ answered with someone else's profile"]
    return []


def detail_shows_code_to_a_only(world, actor, response) -> list[str]:
    if response.status_code != 200:
        return []
    body = body_of(response)
    problems = []
    if body["id"] != str(world.order.pk):
        problems.append(f"answered order {body['id']}, not {world.order.pk}")
    expected_code = world.code if actor == "customer_a" else None
    if body.get("delivery_code") != expected_code:
        problems.append(f"delivery_code {body.get('delivery_code')!r}, expected {expected_code!r}")
    return problems


def list_scoped_to_the_caller(world, actor, response) -> list[str]:
    if response.status_code != 200:
        return []
    results = body_of(response)["results"]
    mine = [entry for entry in results if entry["id"] == str(world.order.pk)]
    should_see = actor in {"customer_a", "dispatcher", "finance"}
    if should_see and not mine:
        return ["the order is missing from the list of someone who may see it"]
    if not should_see and mine:
        return ["the order is in the list of someone who may not see it"]
    if actor == "customer_a" and mine[0]["delivery_code"] != world.code:
        return ["A's list does not show A the delivery code"]
    if actor in {"rider", "other_rider", "staff_no_group"} and results:
        return [f"a non-customer sees {len(results)} orders"]
    if actor == "customer_a" and any(
        not Order.objects.filter(pk=entry["id"], customer=world.a.user).exists()
        for entry in results
    ):
        return ["A's list shows another customer's order"]
    return []


def booked_for_a(world, actor, response) -> list[str]:
    if response.status_code == 201:
        order = Order.objects.get(pk=body_of(response)["id"])
        if order.customer_id != world.a.user.pk or order.quote_id != world.quote.pk:
            return ["the booking is not A's order of A's quote"]
    return []


def cancelled(world, actor, response) -> list[str]:
    if response.status_code == 200:
        if Order.objects.get(pk=world.order.pk).status != OrderStatus.CANCELLED:
            return ["200 but the order is not cancelled"]
        if body_of(response).get("delivery_code") not in (None, world.code):
            return ["cancel answered a wrong delivery_code"]
    return []


def a_still_signed_in(world, actor, response) -> list[str]:
    blacklisted = BlacklistedToken.objects.filter(token__jti=world.extra["a_refresh_jti"]).exists()
    if actor == "customer_a" and response.status_code == 204 and not blacklisted:
        return ["A's logout left the refresh token working"]
    if actor != "customer_a" and blacklisted:
        return ["someone else logged A out"]
    return []


def offers_are_the_callers(world, actor, response) -> list[str]:
    if response.status_code != 200:
        return []
    ids = {offer["id"] for offer in body_of(response)}
    if actor == "rider" and str(world.offer.pk) not in ids:
        return ["the rider's live offer is missing from me/offers/"]
    if actor != "rider" and str(world.offer.pk) in ids:
        return ["another rider sees this rider's offer"]
    return []


def answered_the_order(world, actor, response) -> list[str]:
    if response.status_code == 200 and body_of(response)["order_id"] != str(world.order.pk):
        return ["answered for another order"]
    return []


def verified_paid(world, actor, response) -> list[str]:
    if response.status_code == 200:
        order = Order.objects.get(pk=world.order.pk)
        if order.payment_status != PaymentStatus.PAID:
            return [f"verify answered 200 but the order is {order.payment_status}"]
    return []


# --- The table -----------------------------------------------------------------------------------

Expect = int | tuple[int, str]
DEFAULT_ERROR_CODES = {401: "not_authenticated", 404: "not_found"}


def cells(default: Expect, **by_actor: Expect) -> dict[str, Expect]:
    unknown = set(by_actor) - set(ACTORS)
    assert not unknown, f"unknown actors {unknown}"
    return {actor: by_actor.get(actor, default) for actor in ACTORS}


NOT_A_RIDER = (403, "not_a_rider")
NOT_CUSTOMER = (403, "not_customer")


def everyone(status: int) -> dict[str, Expect]:
    return cells(status)


def signed_in(status: int) -> dict[str, Expect]:
    return cells(status, anonymous=401)


def riders_self(status: int) -> dict[str, Expect]:
    """A rider acting on themselves: any rider may; customers and staff are not riders."""
    return cells(NOT_A_RIDER, anonymous=401, rider=status, other_rider=status)


def the_riders(status: int) -> dict[str, Expect]:
    """Only the rider the offer or order belongs to; another rider finds nothing there."""
    return cells(NOT_A_RIDER, anonymous=401, rider=status, other_rider=404)


def a_and_ops(status: int) -> dict[str, Expect]:
    """A's order: A, and staff with orders.view_order; everyone else finds nothing there."""
    return cells(404, anonymous=401, customer_a=status, dispatcher=status, finance=status)


def a_only(status: int) -> dict[str, Expect]:
    return cells(404, anonymous=401, customer_a=status)


@dataclass(frozen=True)
class Row:
    route: str
    method: str
    expect: dict[str, Expect]
    setup: Callable[[dict], World] = offered
    body: Callable | None = None
    check: Callable | None = None

    @property
    def id(self) -> str:
        return f"{self.method} /{self.route}"


ORDER = "api/v1/orders/<uuid:order_id>/"
DELIVERY = "api/v1/delivery/<uuid:order_id>/"
OFFER = "api/v1/riders/offers/<uuid:offer_id>/"


def table(stack) -> list[Row]:
    return [
        # Public.
        Row("health/", "GET", everyone(200)),
        Row("api/config/", "GET", everyone(200)),
        Row("api/schema/", "GET", everyone(200)),
        Row("api/docs/", "GET", everyone(200)),
        Row("api/schema/sockets/", "GET", everyone(200)),
        Row("api/docs/sockets/", "GET", everyone(200)),
        Row("metrics", "GET", everyone(200)),
        Row("api/v1/auth/otp/request/", "POST", everyone(202), body=otp_request_body),
        Row("api/v1/auth/otp/verify/", "POST", everyone(200), body=otp_verify_body),
        # The refresh token in the body is the credential (each actor sends their own).
        Row("api/v1/auth/token/refresh/", "POST", everyone(200), body=own_refresh_body),
        # Everyone tries to log A out with A's refresh token.
        Row(
            "api/v1/auth/logout/",
            "POST",
            cells((400, "token_not_valid"), anonymous=401, customer_a=204),
            body=a_refresh_body,
            check=a_still_signed_in,
        ),
        Row("api/v1/auth/me/", "GET", signed_in(200), check=me_is_the_caller),
        Row(
            "api/v1/auth/me/",
            "PATCH",
            signed_in(200),
            body=static({"name": "Proof Person"}),
            check=me_is_the_caller,
        ),
        # Orders.
        Row("api/v1/orders/", "GET", signed_in(200), check=list_scoped_to_the_caller),
        # Everyone tries to book A's quote.
        Row(
            "api/v1/orders/",
            "POST",
            cells(NOT_CUSTOMER, anonymous=401, customer_a=201, customer_b=(400, "invalid")),
            setup=quoted,
            body=book_a_quote,
            check=booked_for_a,
        ),
        Row(
            "api/v1/orders/quote/",
            "POST",
            cells(NOT_CUSTOMER, anonymous=401, customer_a=201, customer_b=201),
            body=quote_body,
        ),
        Row(ORDER, "GET", a_and_ops(200), check=detail_shows_code_to_a_only),
        Row(
            ORDER + "cancel/",
            "POST",
            cells(
                404,
                anonymous=401,
                customer_a=200,
                dispatcher=200,
                finance=(403, "permission_denied"),
            ),
            setup=carrying(OrderStatus.RIDER_ASSIGNED),
            body=static({"reason": "proof"}),
            check=cancelled,
        ),
        Row(
            ORDER + "rating/",
            "POST",
            a_only(201),
            setup=delivered,
            body=static({"stars": 5, "comment": "proof"}),
        ),
        # Payments: A's order, whoever asks.
        Row(
            "api/v1/payments/razorpay/order/",
            "POST",
            a_only(200),
            setup=razorpay_pending,
            body=lambda world, actor: {"json": {"order_id": str(world.order.pk)}},
        ),
        Row(
            "api/v1/payments/razorpay/verify/",
            "POST",
            a_only(200),
            setup=razorpay_paid_at_checkout(stack),
            body=lambda world, actor: {"json": world.extra["checkout"]},
            check=verified_paid,
        ),
        # Authenticated by its signature, whoever sends it.
        Row("api/v1/payments/razorpay/webhook/", "POST", everyone(200), body=webhook),
        # Riders.
        Row("api/v1/riders/me/", "GET", riders_self(200)),
        Row("api/v1/riders/me/", "PUT", riders_self(200), body=rider_profile_put),
        Row(
            "api/v1/riders/me/",
            "PATCH",
            riders_self(200),
            body=static({"name": "Proof Rider"}),
        ),
        Row("api/v1/riders/me/online/", "POST", riders_self(200)),
        Row("api/v1/riders/me/offline/", "POST", riders_self(200)),
        Row("api/v1/riders/me/location/", "POST", riders_self(202), body=location_body),
        Row("api/v1/riders/me/offers/", "GET", riders_self(200), check=offers_are_the_callers),
        Row("api/v1/riders/me/earnings/", "GET", riders_self(200)),
        Row(OFFER + "accept/", "POST", the_riders(200), check=answered_the_order),
        Row(OFFER + "decline/", "POST", the_riders(200), check=answered_the_order),
        # Delivery.
        Row(
            DELIVERY,
            "GET",
            # finance sees every order but not where riders are: no live tracking
            cells(404, anonymous=401, customer_a=200, rider=200, dispatcher=200),
            setup=carrying(OrderStatus.RIDER_ASSIGNED),
            check=answered_the_order,
        ),
        Row(
            DELIVERY + "arrived-pickup/",
            "POST",
            the_riders(200),
            setup=carrying(OrderStatus.RIDER_ASSIGNED, at=PICKUP),
            check=answered_the_order,
        ),
        Row(
            DELIVERY + "picked-up/",
            "POST",
            the_riders(200),
            setup=carrying(OrderStatus.AT_PICKUP, at=PICKUP),
            check=answered_the_order,
        ),
        Row(
            DELIVERY + "arrived-drop/",
            "POST",
            the_riders(200),
            setup=carrying(OrderStatus.PICKED_UP, at=DROP),
            check=answered_the_order,
        ),
        # Everyone, the customer included, sends the right code.
        Row(
            DELIVERY + "deliver/",
            "POST",
            the_riders(200),
            setup=carrying(OrderStatus.AT_DROPOFF, at=DROP),
            body=lambda world, actor: {"json": {"delivery_code": world.code}},
            check=answered_the_order,
        ),
        Row(
            DELIVERY + "fail/",
            "POST",
            the_riders(200),
            setup=carrying(OrderStatus.PICKED_UP, at=DROP),
            body=static({"reason": "customer not reachable"}),
            check=answered_the_order,
        ),
        # Ops: the live readiness report (readiness/), for staff with its permission
        # (superusers, or a group given core.view_readiness_report; no ops group has it): it
        # runs a dozen checks for up to 30 s.
        Row(
            "api/v1/ops/readiness/",
            "GET",
            cells(
                (403, "not_staff"),
                anonymous=401,
                dispatcher=(403, "permission_denied"),
                finance=(403, "permission_denied"),
                staff_no_group=(403, "permission_denied"),
            ),
        ),
        # The ops console (ops/): a staff browser page and its JSON, signed in with the admin's
        # session cookie only. A bearer token, anyone's, is no key to it: the page sends
        # everyone to the admin's sign-in, the JSON answers 401. Who may use it once signed in
        # (dispatcher and support; assigning: dispatcher) is ops/tests/test_console_api.py's.
        Row("ops/", "GET", everyone(302)),
        Row("ops/api/snapshot/", "GET", everyone(401)),
        Row("ops/api/orders/<uuid:order_id>/", "GET", everyone(401)),
        Row(
            "ops/api/orders/<uuid:order_id>/assign/",
            "POST",
            everyone(401),
            body=lambda world, actor: {"json": {"rider_id": str(world.rider.rider.pk)}},
        ),
        Row(
            "ops/api/orders/<uuid:order_id>/unassign/",
            "POST",
            everyone(401),
            setup=carrying(OrderStatus.RIDER_ASSIGNED),
        ),
    ]


def table_keys() -> list[str]:
    """The rows' ids without a stack (the table's shape does not depend on it)."""
    return [row.id for row in table(stack=None)]


# --- What every cell checks ----------------------------------------------------------------------


def phone_forms(phone: str) -> list[str]:
    """+919812345678 as it might appear: E.164, without +, the ten national digits."""
    return [phone, phone.removeprefix("+"), phone[-10:]]


def _walk(value):
    yield value
    if isinstance(value, dict):
        for key, item in value.items():
            yield key, item
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


def leaks(world: World, actor: str, response: httpx.Response, url: str) -> list[str]:
    text = response.text
    problems = []
    if actor != "customer_a":
        for form in phone_forms(world.a.user.phone):
            if form in text:
                problems.append(f"A's phone ({form}) in the body")
    if actor != "rider":
        for form in phone_forms(world.rider.user.phone):
            if form in text:
                problems.append(f"the rider's phone ({form}) in the body")
    if actor in STRANGERS:
        secret_ids = [world.order.pk] + ([world.offer.pk] if world.offer else [])
        for secret_id in secret_ids:
            echoed = str(secret_id) in url and response.status_code >= 400
            if str(secret_id) in text and not echoed:
                problems.append(f"id {secret_id} in the body")
    if actor != "customer_a" and shows_delivery_code(body_of(response), world.code):
        problems.append("the delivery code in the body")
    return problems


def shows_delivery_code(body, code: str) -> bool:
    """A non-null delivery_code anywhere in a JSON body, or the code as any string value."""
    for item in _walk(body):
        if isinstance(item, tuple) and item[0] == "delivery_code" and item[1] is not None:
            return True
        if item == code:
            return True
    return False


def expected_of(row: Row, actor: str) -> tuple[int, str | None]:
    expected = row.expect[actor]
    if isinstance(expected, tuple):
        return expected
    return expected, DEFAULT_ERROR_CODES.get(expected)


def run_cell(http: httpx.Client, row: Row, actor: str, shared: dict) -> list[str]:
    world = row.setup(shared)
    try:
        person = world.person(actor)
        path = "/" + row.route.replace("<uuid:order_id>", str(world.order.pk))
        if world.offer is not None:
            path = path.replace("<uuid:offer_id>", str(world.offer.pk))
        assert "<" not in path, f"{path}: the cell's world lacks an object for the URL"
        kwargs = row.body(world, actor) if row.body else {}
        headers = {**(person.headers if person else {}), **kwargs.pop("headers", {})}
        before = state(world)
        response = http.request(row.method, path, headers=headers, **kwargs)

        status, code = expected_of(row, actor)
        problems = []
        if response.status_code != status:
            problems.append(f"status {response.status_code}, expected {status}")
        elif code is not None:
            body = body_of(response)
            got = body.get("error", {}).get("code") if isinstance(body, dict) else None
            if got != code:
                problems.append(f"error code {got!r}, expected {code!r}")
        problems += leaks(world, actor, response, path)
        if response.status_code >= 400 and state(world) != before:
            problems.append(f"refused, yet changed {_diff(before, state(world))}")
        if row.check is not None:
            problems += row.check(world, actor, response)
        if problems:
            return [f"{actor}: {p} -- {response.text[:300]}" for p in problems]
        return []
    finally:
        # A spare online rider at the pickup would be offered later cells' orders.
        Rider.objects.filter(pk=world.rider.rider.pk, status=Rider.Status.ONLINE).update(
            status=Rider.Status.OFFLINE
        )


def _diff(before: dict, after: dict) -> dict:
    return {key: (before[key], after[key]) for key in before if before[key] != after[key]}


# --- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def shared(stack, db_access) -> dict[str, Person]:
    """Everyone but the order's rider (made per cell); the tables are emptied after each test."""
    assert_on_test_database(stack)
    return {
        "customer_a": customer(),
        "customer_b": customer(),
        "other_rider": rider(Rider.Status.ONLINE),
        "dispatcher": staff("dispatcher"),
        "finance": staff("finance"),
        "staff_no_group": staff(),
    }


@pytest.fixture(scope="module")
def http(stack):
    with stack.client() as client:
        yield client


@pytest.fixture(scope="module")
def rows(stack) -> dict[str, Row]:
    return {row.id: row for row in table(stack)}


# --- Coverage of the URL conf --------------------------------------------------------------------


def _walk_urls(patterns, prefix=""):
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            if route in OUT_OF_SCOPE_PREFIXES:
                continue
            yield from _walk_urls(entry.url_patterns, route)
        else:
            assert isinstance(entry, URLPattern)
            yield route, entry.callback


def routed_pairs() -> set[str]:
    """Every "METHOD /route" the URL conf serves, outside the declared out-of-scope parts."""
    pairs = set()
    for route, callback in _walk_urls(get_resolver().url_patterns):
        view_class = getattr(callback, "view_class", None)
        if view_class is None:
            assert route in FUNCTION_VIEW_METHODS, (
                f"/{route} is a function view: name its methods in FUNCTION_VIEW_METHODS "
                "and give each a row in the table"
            )
            methods = FUNCTION_VIEW_METHODS[route]
        else:
            methods = {
                name.upper()
                for name in view_class.http_method_names
                if hasattr(view_class, name) and name.upper() not in OUT_OF_SCOPE_METHODS
            }
        pairs |= {f"{method} /{route}" for method in methods}
    return pairs


@pytest.mark.checklist("P9.8", configured=True)
def test_the_table_covers_every_route_and_method():
    keys = table_keys()
    assert len(keys) == len(set(keys)), "a (route, method) has two rows"
    routed = routed_pairs()
    assert {"GET /api/v1/orders/", "POST /api/v1/riders/me/location/", "GET /metrics"} <= routed
    missing = sorted(routed - set(keys))
    stale = sorted(set(keys) - routed)
    assert not missing, "routes with no row in the authorization table:\n" + "\n".join(missing)
    assert not stale, "rows for routes that do not exist:\n" + "\n".join(stale)
    for row in table(stack=None):
        assert set(row.expect) == set(ACTORS), f"{row.id} does not name every actor"
    # The out-of-scope prefixes must still be routed, or their exemption is stale.
    top = {str(entry.pattern) for entry in get_resolver().url_patterns}
    assert set(OUT_OF_SCOPE_PREFIXES) <= top


def test_the_socket_routes_are_the_known_ones():
    routes = {str(entry.pattern) for entry in websocket_urlpatterns}
    assert routes == {"ws/rider/", "ws/delivery/<uuid:order_id>/", "ws/ops/", ""}, (
        "a new WebSocket route needs its rows in test_delivery_socket / test_rider_socket / "
        "test_ops_socket"
    )


# --- The HTTP matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize("row_id", table_keys())
@pytest.mark.checklist("P9.8", "P10.11", "P10.12")
def test_authorization_matrix(row_id, rows, http, shared, stack, db_access):
    row = rows[row_id]
    errors_before = len(stack.server_errors())
    problems = []
    for actor in ACTORS:
        problems += run_cell(http, row, actor, shared)
    new_errors = stack.server_errors()[errors_before:]
    assert not new_errors, f"server errors logged: {new_errors}"
    assert not problems, f"{row.id}:\n" + "\n".join(problems)


def test_options_is_no_side_door(rows, http, db_access):
    """OPTIONS runs DRF's permission checks too: anonymous learns nothing of private routes."""
    public = {
        row.route
        for row in rows.values()
        if row.expect["anonymous"] != 401 and row.method in {"GET", "POST"}
    }
    private = sorted({row.route for row in rows.values()} - public)
    fake = str(uuid.uuid4())
    open_doors = []
    for route in private:
        path = "/" + route.replace("<uuid:order_id>", fake).replace("<uuid:offer_id>", fake)
        response = http.options(path)
        if response.status_code not in {401, 405}:
            open_doors.append(f"OPTIONS {path} -> {response.status_code}")
    assert private and not open_doors, "\n".join(open_doors)


def failing_tokens(shared) -> dict[str, str]:
    """Tokens that must not sign anyone in: malformed, expired, and a deactivated user's."""
    expired = RefreshToken.for_user(shared["customer_a"].user).access_token
    expired.set_exp(lifetime=-timedelta(minutes=1))
    inactive = customer()
    inactive.user.is_active = False
    inactive.user.save(update_fields=["is_active"])
    return {"garbage": "not-a-jwt", "expired": str(expired), "inactive_user": inactive.token}


def test_a_bad_or_stale_token_is_refused_not_downgraded(rows, http, shared, db_access):
    """A token that fails is 401 on every private route, never treated as anonymous-but-ok."""
    tokens = failing_tokens(shared)
    fake = str(uuid.uuid4())
    wrong = []
    for row in rows.values():
        if row.expect["anonymous"] != 401:
            continue
        path = "/" + row.route.replace("<uuid:order_id>", fake).replace("<uuid:offer_id>", fake)
        # A valid ping, so that the location route answers about the token, not the body.
        fix = {"lat": PICKUP[0], "lng": PICKUP[1], "recorded_at": timezone.now().isoformat()}
        body = {"json": fix} if row.route.endswith("me/location/") else {}
        for name, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}"}
            response = http.request(row.method, path, headers=headers, **body)
            if response.status_code != 401:
                wrong.append(f"{name}: {row.id} -> {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_public_pages_ignore_a_stale_token(rows, http, shared, db_access):
    """An app whose token ran out still reads the public pages: they look at no credential."""
    tokens = failing_tokens(shared)
    public_reads = [
        row for row in rows.values() if row.method == "GET" and row.expect["anonymous"] == 200
    ]
    assert {row.route for row in public_reads} >= {"health/", "api/schema/", "api/docs/"}
    wrong = []
    for row in public_reads:
        for name, token in tokens.items():
            response = http.get("/" + row.route, headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 200:
                wrong.append(f"{name}: {row.id} -> {response.status_code}")
    assert not wrong, "\n".join(wrong)


def test_no_one_grants_themselves_more_rights(http, shared, db_access):
    """Roles, staff status, approval and rider status are not the caller's to set."""
    a = shared["customer_a"]
    wrong = []

    response = http.patch(
        "/api/v1/auth/me/",
        json={"name": "Escalator", "is_staff": True, "roles": ["customer", "staff"]},
        headers=a.headers,
    )
    a.user.refresh_from_db()
    if response.status_code != 400 or a.user.is_staff:
        wrong.append(f"auth/me/ with is_staff: {response.status_code}, is_staff={a.user.is_staff}")

    challenge = OtpChallengeFactory(phone=a.user.phone, code="123456")
    response = http.post(
        "/api/v1/auth/otp/verify/",
        json={"phone": challenge.phone, "otp": "123456", "role": "staff"},
    )
    a.user.refresh_from_db()
    if response.status_code != 403 or a.user.is_staff or "access" in response.text:
        wrong.append(f"a customer signing in as staff: {response.status_code} {response.text}")

    pending = rider(Rider.Status.OFFLINE)
    Rider.objects.filter(pk=pending.rider.pk).update(approved=False)
    response = http.patch(
        "/api/v1/riders/me/",
        json={"approved": True, "status": "online"},
        headers=pending.headers,
    )
    profile = Rider.objects.get(pk=pending.rider.pk)
    if response.status_code != 400 or profile.approved or profile.status != Rider.Status.OFFLINE:
        wrong.append(f"riders/me/ with approved: {response.status_code}, {profile.approved}")

    response = http.post("/api/v1/riders/me/online/", headers=pending.headers)
    code = (body_of(response) or {}).get("error", {}).get("code")
    if (response.status_code, code) != (403, "rider_not_approved"):
        wrong.append(f"an unapproved rider going online: {response.status_code} {code}")

    suspended = rider(Rider.Status.SUSPENDED)
    response = http.post("/api/v1/riders/me/online/", headers=suspended.headers)
    code = (body_of(response) or {}).get("error", {}).get("code")
    if (response.status_code, code) != (403, "rider_suspended"):
        wrong.append(f"a suspended rider going online: {response.status_code} {code}")
    if Rider.objects.get(pk=suspended.rider.pk).status != Rider.Status.SUSPENDED:
        wrong.append("a suspended rider lifted their own suspension")
    assert not wrong, "\n".join(wrong)


def test_a_signed_in_user_cannot_stand_in_for_the_webhook_signature(http, shared):
    body = webhook_body("payment.authorized", payment={"id": "pay_x", "order_id": "order_x"})
    for person in (None, shared["customer_a"], shared["dispatcher"]):
        response = http.post(
            "/api/v1/payments/razorpay/webhook/",
            content=body,
            headers={
                **(person.headers if person else {}),
                "Content-Type": "application/json",
                "X-Razorpay-Signature": "0" * 64,
                "X-Razorpay-Event-Id": f"evt_{uuid.uuid4().hex}",
            },
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "signature_invalid"


# --- WebSockets ----------------------------------------------------------------------------------


SAME_HOST = object()


def socket_outcome(
    stack, path: str, token: str | None, *, say: str | None = None, origin=SAME_HOST
):
    """("frame", first JSON frame) or ("closed", close code) or ("refused", HTTP status).
    The handshake's Origin is the stack's own unless given (None: no Origin, a native app)."""
    origin = stack.origin if origin is SAME_HOST else origin
    try:
        with websockets.sync.client.connect(
            stack.ws_url(path, token), origin=origin, open_timeout=10
        ) as socket:
            try:
                if say is not None:
                    socket.send(say)
                return "frame", json.loads(socket.recv(timeout=10))
            except ConnectionClosed as closed:
                return "closed", closed.rcvd.code if closed.rcvd else None
    except InvalidStatus as refused:
        return "refused", refused.response.status_code


@pytest.mark.checklist("P3.17")
def test_the_sockets_admit_the_origins_the_api_admits(stack, shared, db_access):
    """The handshake's Origin rule is the HTTP API's CORS rule (CORS_ALLOWED_ORIGINS, exact
    scheme, host and port), plus the service's own hosts and native apps (no Origin)."""
    world = carrying(OrderStatus.RIDER_ASSIGNED)(shared)
    paths = ["/ws/rider/", f"/ws/delivery/{world.order.pk}/", "/ws/ops/"]
    admitted = [*WEB_APP_ORIGINS, stack.origin, None]
    refused = [
        "https://evil.test",
        "http://app.example.com",  # an allowed host, the wrong scheme
        "https://app.example.com:8443",  # an allowed host, the wrong port
        "https://shop.example.com",  # listed with :8443
        "null",  # a sandboxed page or a file:// one
    ]
    wrong = []
    for path in paths:
        for origin in admitted:  # past the origin check, the token check: none given
            outcome = socket_outcome(stack, path, None, origin=origin)
            if outcome != ("closed", 4401):
                wrong.append(f"{path} from {origin}: {outcome}, expected the token's 4401")
        for origin in refused:
            outcome = socket_outcome(stack, path, None, origin=origin)
            if outcome != ("refused", 403):
                wrong.append(f"{path} from {origin}: {outcome}, expected refused (403)")
    # and a browser page on the web app's origin follows its customer's order live
    kind, frame = socket_outcome(
        stack, paths[1], world.person("customer_a").token, origin=WEB_APP_ORIGINS[0]
    )
    if (kind, frame.get("type") if kind == "frame" else frame) != ("frame", "status"):
        wrong.append(f"the customer's page on {WEB_APP_ORIGINS[0]}: {kind} {frame}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.checklist("P9.10", "P9.12")
def test_delivery_socket(stack, shared, db_access):
    world = carrying(OrderStatus.RIDER_ASSIGNED)(shared)
    path = f"/ws/delivery/{world.order.pk}/"
    people = {actor: world.person(actor) for actor in ACTORS}
    tokens = {actor: person.token if person else None for actor, person in people.items()}
    expected = {
        "anonymous": ("closed", 4401),
        "customer_b": ("closed", 4403),
        "other_rider": ("closed", 4403),
        "staff_no_group": ("closed", 4403),
        "finance": ("closed", 4403),  # sees orders, not riders: no live tracking
    }
    wrong = []
    for actor in ACTORS:
        kind, value = socket_outcome(stack, path, tokens[actor])
        if actor in expected:
            if (kind, value) != expected[actor]:
                wrong.append(f"{actor}: {kind} {value}, expected {expected[actor]}")
            continue
        if (
            kind != "frame"
            or value.get("type") != "status"
            or value.get("status") != (OrderStatus.RIDER_ASSIGNED)
        ):
            wrong.append(f"{actor}: {kind} {value}, expected the status frame")
            continue
        if actor != "customer_a" and shows_delivery_code(value, world.code):
            wrong.append(f"{actor}: the delivery code in the status frame")
        if any(form in json.dumps(value) for form in phone_forms(world.a.user.phone)):
            wrong.append(f"{actor}: A's phone in the status frame")
    for name, token in {**failing_tokens(shared), "empty": ""}.items():
        outcome = socket_outcome(stack, path, token)
        if outcome != ("closed", 4401):
            wrong.append(f"{name} token: {outcome}, expected 4401")
    # A's token on an order that does not exist looks like someone else's order.
    outcome = socket_outcome(stack, f"/ws/delivery/{uuid.uuid4()}/", tokens["customer_a"])
    if outcome != ("closed", 4403):
        wrong.append(f"A on an unknown order: {outcome}, expected 4403")
    assert not wrong, "\n".join(wrong)


def test_rider_socket(stack, shared, db_access):
    world = offered(shared)
    hello = json.dumps({"type": "hello"})
    expected = {
        "anonymous": ("closed", 4401),
        "customer_a": ("closed", 4403),
        "customer_b": ("closed", 4403),
        "dispatcher": ("closed", 4403),
        "finance": ("closed", 4403),
        "staff_no_group": ("closed", 4403),
    }
    wrong = []
    for actor in ACTORS:
        person = world.person(actor)
        outcome = socket_outcome(stack, "/ws/rider/", person.token if person else None, say=hello)
        if actor in expected:
            if outcome != expected[actor]:
                wrong.append(f"{actor}: {outcome}, expected {expected[actor]}")
        elif outcome[0] != "frame" or outcome[1].get("code") != "unknown_type":
            wrong.append(f"{actor}: {outcome}, expected an open socket answering the frame")
    for name, token in {**failing_tokens(shared), "empty": ""}.items():
        outcome = socket_outcome(stack, "/ws/rider/", token, say=hello)
        if outcome != ("closed", 4401):
            wrong.append(f"{name} token: {outcome}, expected 4401")
    Rider.objects.filter(pk=world.rider.rider.pk).update(status=Rider.Status.OFFLINE)
    assert not wrong, "\n".join(wrong)


def test_ops_socket(stack, shared, db_access):
    """The ops console's feed: staff who see every order and rider (the dispatcher here; the
    console page uses the admin session, a token works as well); everyone else 4403."""
    world = offered(shared)
    expected = {actor: ("closed", 4403) for actor in ACTORS}
    expected["anonymous"] = ("closed", 4401)
    expected["dispatcher"] = ("frame", {"type": "ready"})
    wrong = []
    for actor in ACTORS:
        person = world.person(actor)
        outcome = socket_outcome(stack, "/ws/ops/", person.token if person else None)
        if outcome != expected[actor]:
            wrong.append(f"{actor}: {outcome}, expected {expected[actor]}")
    for name, token in {**failing_tokens(shared), "empty": ""}.items():
        outcome = socket_outcome(stack, "/ws/ops/", token)
        if outcome != ("closed", 4401):
            wrong.append(f"{name} token: {outcome}, expected 4401")
    Rider.objects.filter(pk=world.rider.rider.pk).update(status=Rider.Status.OFFLINE)
    assert not wrong, "\n".join(wrong)
