"""The rider's earnings through the API: whole days in the service's time zone (Asia/Kolkata),
totals over the whole range, pages of 50, and only ever the rider's own entries.

Earnings are created directly (Earning.save refuses updates, so each entry's day is set with a
queryset update afterwards).
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from rest_framework.test import APIClient

from accounts.tests.factories import UserFactory
from orders.models import OrderStatus
from orders.tests.factories import OrderFactory
from riders.models import Earning, Rider
from riders.tests.factories import RiderFactory
from riders.tests.support import as_user

pytestmark = pytest.mark.django_db

EARNINGS_URL = "/api/v1/riders/me/earnings/"
IST = ZoneInfo("Asia/Kolkata")
# 20:00 UTC on 10 May is 01:30 on 11 May in Kolkata: "today" is the 11th there, the 10th in UTC.
NOW = datetime(2024, 5, 10, 20, 0, tzinfo=UTC)
TODAY = "2024-05-11"


@pytest.fixture
def rider() -> Rider:
    return RiderFactory(status=Rider.Status.ONLINE)


@pytest.fixture
def at_now():
    with time_machine.travel(NOW):
        yield


def local(*args) -> datetime:
    """A wall-clock time in Kolkata."""
    return datetime(*args, tzinfo=IST)


def earning(rider: Rider, at: datetime, amount: int = 5000, cash: int = 0) -> Earning:
    """An Earning for a new delivered order of `rider`, dated `at`."""
    order = OrderFactory(status=OrderStatus.DELIVERED, rider=rider)
    entry = Earning.objects.create(
        rider=rider, order=order, amount_paise=amount, cash_collected_paise=cash
    )
    Earning.objects.filter(pk=entry.pk).update(created_at=at)
    entry.refresh_from_db()
    return entry


def get(user, query: str = ""):
    return as_user(APIClient(), user).get(EARNINGS_URL + (f"?{query}" if query else ""))


def order_ids(body) -> list[str]:
    return [entry["order_id"] for entry in body["results"]]


def test_without_dates_it_is_today_in_kolkata_not_in_utc(rider, at_now):
    # given entries either side of Kolkata's midnight (both on 10 May in UTC)
    late_yesterday = earning(rider, local(2024, 5, 10, 23, 50), amount=1000)
    just_after_midnight = earning(rider, local(2024, 5, 11, 0, 10), amount=2000)
    this_morning = earning(rider, local(2024, 5, 11, 1, 0), amount=4000)

    # when
    response = get(rider.user)

    # then today is the 11th, with today's two entries, newest first
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"], body["to"]) == (TODAY, TODAY)
    assert order_ids(body) == [str(this_morning.order_id), str(just_after_midnight.order_id)]
    assert str(late_yesterday.order_id) not in order_ids(body)
    assert (body["total_paise"], body["count"]) == (6000, 2)


def test_a_range_includes_both_whole_local_days_and_nothing_outside(rider):
    # given entries on and around 10-11 May, Kolkata time, each amount a different bit
    inside = [
        earning(rider, local(2024, 5, 10, 0, 0, 0), amount=1),
        earning(rider, local(2024, 5, 10, 2, 0), amount=2),  # 9 May in UTC
        earning(rider, local(2024, 5, 11, 12, 0), amount=4),
        earning(rider, local(2024, 5, 11, 23, 59, 59, 999_999), amount=8),
    ]
    outside = [
        earning(rider, local(2024, 5, 9, 23, 59, 59, 999_999), amount=16),
        earning(rider, local(2024, 5, 12, 0, 0, 0), amount=32),
        earning(rider, local(2024, 5, 12, 4, 0), amount=64),  # still 11 May in UTC
    ]

    response = get(rider.user, "from=2024-05-10&to=2024-05-11")

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["from"], body["to"]) == ("2024-05-10", "2024-05-11")
    assert set(order_ids(body)) == {str(e.order_id) for e in inside}
    assert not set(order_ids(body)) & {str(e.order_id) for e in outside}
    assert body["total_paise"] == 1 + 2 + 4 + 8
    assert body["count"] == 4


def test_entries_show_the_order_the_pay_the_cash_and_when_newest_first(rider):
    older = earning(rider, local(2024, 5, 10, 9, 0), amount=5000, cash=12_000)
    newer = earning(rider, local(2024, 5, 10, 18, 30), amount=5000, cash=0)

    body = get(rider.user, "from=2024-05-10&to=2024-05-10").json()

    assert [
        {**entry, "created_at": datetime.fromisoformat(entry["created_at"])}
        for entry in body["results"]
    ] == [
        {
            "order_id": str(newer.order_id),
            "amount_paise": 5000,
            "cash_collected_paise": 0,
            "created_at": newer.created_at,
        },
        {
            "order_id": str(older.order_id),
            "amount_paise": 5000,
            "cash_collected_paise": 12_000,
            "created_at": older.created_at,
        },
    ]
    assert (body["total_paise"], body["cash_collected_paise"]) == (10_000, 12_000)
    assert (body["next"], body["previous"]) == (None, None)


def test_fifty_one_entries_make_two_pages_with_the_totals_over_all_of_them(rider):
    # given 51 entries over one day, one of them with cash
    start = local(2024, 5, 10, 8, 0)
    entries = [earning(rider, start + timedelta(minutes=n)) for n in range(50)]
    entries.append(earning(rider, start + timedelta(minutes=50), amount=7000, cash=9000))

    # when
    first = get(rider.user, "from=2024-05-10&to=2024-05-10")

    # then the first page has 50 and links to the second; the totals count all 51
    assert first.status_code == 200, first.content
    page1 = first.json()
    assert len(page1["results"]) == 50
    assert page1["count"] == 51
    assert page1["total_paise"] == 50 * 5000 + 7000
    assert page1["cash_collected_paise"] == 9000
    assert page1["previous"] is None
    assert page1["next"] is not None
    assert "page=2" in page1["next"]
    assert "from=2024-05-10" in page1["next"] and "to=2024-05-10" in page1["next"]
    assert page1["results"][0]["order_id"] == str(entries[-1].order_id)  # newest first

    # and following `next` gives the last one, with the same totals
    page2 = as_user(APIClient(), rider.user).get(page1["next"]).json()
    assert order_ids(page2) == [str(entries[0].order_id)]
    assert (page2["count"], page2["total_paise"], page2["cash_collected_paise"]) == (
        51,
        257_000,
        9000,
    )
    assert page2["next"] is None
    assert page2["previous"] is not None
    assert set(order_ids(page1)) | set(order_ids(page2)) == {str(e.order_id) for e in entries}


def test_another_riders_earnings_are_never_shown_nor_counted(rider):
    mine = earning(rider, local(2024, 5, 10, 10, 0), amount=5000, cash=100)
    other = RiderFactory(status=Rider.Status.ONLINE)
    theirs = earning(other, local(2024, 5, 10, 11, 0), amount=3000, cash=200)

    body = get(rider.user, "from=2024-05-10&to=2024-05-10").json()
    their_body = get(other.user, "from=2024-05-10&to=2024-05-10").json()

    assert order_ids(body) == [str(mine.order_id)]
    assert (body["total_paise"], body["cash_collected_paise"], body["count"]) == (5000, 100, 1)
    assert order_ids(their_body) == [str(theirs.order_id)]
    assert (their_body["total_paise"], their_body["cash_collected_paise"]) == (3000, 200)


def test_a_day_without_earnings_is_zero_not_null(rider):
    earning(rider, local(2024, 5, 10, 10, 0))

    body = get(rider.user, "from=2024-05-11&to=2024-05-11").json()

    assert body["results"] == []
    assert (body["total_paise"], body["cash_collected_paise"], body["count"]) == (0, 0, 0)


def test_only_from_runs_to_today(rider, at_now):
    two_days_ago = earning(rider, local(2024, 5, 9, 12, 0), amount=1000)
    earning(rider, local(2024, 5, 8, 23, 0), amount=2000)

    body = get(rider.user, "from=2024-05-09").json()

    assert (body["from"], body["to"]) == ("2024-05-09", TODAY)
    assert order_ids(body) == [str(two_days_ago.order_id)]


def test_only_to_is_that_one_day(rider):
    that_day = earning(rider, local(2024, 5, 9, 12, 0), amount=1000)
    earning(rider, local(2024, 5, 8, 12, 0), amount=2000)

    body = get(rider.user, "to=2024-05-09").json()

    assert (body["from"], body["to"]) == ("2024-05-09", "2024-05-09")
    assert order_ids(body) == [str(that_day.order_id)]


def test_from_after_to_is_refused_on_from(rider):
    response = get(rider.user, "from=2024-05-12&to=2024-05-11")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"
    assert set(response.json()["error"]["fields"]) == {"from"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2024-05-01&to=2024-13-01", "to"),
        ("from=2024-05-01&to=2024-02-30", "to"),
        ("from=01-05-2024&to=2024-05-11", "from"),
        ("from=yesterday", "from"),
        ("to=", "to"),
        # the last day there is: the period would end the midnight after it
        ("from=9999-12-31&to=9999-12-31", "to"),
    ],
)
def test_a_date_that_is_not_yyyy_mm_dd_is_refused_on_its_field(rider, query, field):
    response = get(rider.user, query)

    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(error["fields"]) == {field}


def test_at_most_366_days_at_a_time(rider):
    # given entries on the first and last of 366 days
    first = earning(rider, local(2022, 1, 1, 9, 0), amount=1000)
    last = earning(rider, local(2023, 1, 1, 9, 0), amount=2000)

    # when asking for exactly 366 days, then 367
    ok = get(rider.user, "from=2022-01-01&to=2023-01-01")
    too_long = get(rider.user, "from=2022-01-01&to=2023-01-02")

    # then the first answers with both ends included and the second is refused on from
    assert ok.status_code == 200, ok.content
    assert set(order_ids(ok.json())) == {str(first.order_id), str(last.order_id)}
    assert ok.json()["total_paise"] == 3000
    assert too_long.status_code == 400
    assert set(too_long.json()["error"]["fields"]) == {"from"}


def test_a_customer_is_refused_and_an_anonymous_caller_must_sign_in():
    customer = UserFactory()

    response = get(customer)
    anonymous = APIClient().get(EARNINGS_URL)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "not_a_rider"
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "not_authenticated"
