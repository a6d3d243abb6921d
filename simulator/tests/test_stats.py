"""What a run reports: the error rate, percentiles per kind of call and delay, socket peaks."""

from simulator.stats import Stats


def test_the_error_rate_counts_5xx_and_unanswered_calls_but_not_4xx():
    # given 16 calls: 12 answered 2xx, 2 refused with 4xx, one 500 and one without an answer
    stats = Stats()
    for _ in range(12):
        stats.call("quote", 0.05, 201)
    stats.call("step deliver", 0.1, 409, "delivery_code_invalid")
    stats.call("quote", 0.1, 400, "validation_error")
    stats.call("order create", 0.3, 500)
    stats.call("order create", 20.0, 0)

    # then two of them failed, and every non-2xx is an error by kind
    assert stats.calls == 16
    assert stats.failed_calls == 2
    assert stats.error_rate == 2 / 16
    assert stats.server_errors == 1
    assert stats.errors["step deliver: HTTP 409 delivery_code_invalid"] == 1
    assert stats.errors["order create: no answer"] == 1


def test_the_latency_table_gives_p50_p95_and_p99_per_kind():
    stats = Stats()
    for milliseconds in range(1, 101):
        stats.call("location (HTTP)", milliseconds / 1000, 202)

    header, row = stats.latency_table()

    assert header.split()[:5] == ["call", "count", "p50", "ms", "p95"]
    assert "p99 ms" in header
    assert row.split() == ["location", "(HTTP)", "100", "50", "95", "99", "202:", "100"]


def test_delays_are_reported_apart_from_calls():
    stats = Stats()
    assert stats.delay_table() == []
    for seconds in (0.2, 0.4, 3.0):
        stats.delay("fix -> tracking socket", seconds)

    assert stats.calls == 0
    assert stats.delay_table()[1].split() == [
        "fix", "->", "tracking", "socket", "3", "400", "3000", "3000"
    ]  # fmt: skip


def test_the_socket_peak_is_the_most_open_at_once():
    stats = Stats()
    with stats.socket_held("tracking"), stats.socket_held("tracking"), stats.socket_held("rider"):
        pass
    with stats.socket_held("tracking"):
        pass

    assert stats.sockets_peak == {"tracking": 2, "rider": 1}
    assert stats.sockets_open == {"tracking": 0, "rider": 0}
