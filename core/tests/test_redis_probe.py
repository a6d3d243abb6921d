"""Redis URLs are logged without their passwords, wherever the password sits in the URL."""

import pytest

from config.redis_probe import ping, redact
from devstack.ports import free_port


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("rediss://app:s3cret@cache:6380/1", "rediss://app:***@cache:6380/1"),
        ("redis://cache:6379/0?password=s3cret", "redis://cache:6379/0?password=***"),
        ("redis://cache:6379/0?db=2&password=s3cret", "redis://cache:6379/0?db=2&password=***"),
        ("redis://cache:6379/0", "redis://cache:6379/0"),
    ],
)
def test_redact_hides_the_password(url, shown):
    assert redact(url) == shown
    assert "s3cret" not in redact(url)


@pytest.mark.checklist("P11.16")
def test_ping_answers_for_a_live_redis_and_not_for_a_closed_port():
    assert ping("redis://127.0.0.1:6379/0") is True
    assert ping(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5) is False
