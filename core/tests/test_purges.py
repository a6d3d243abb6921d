"""The hourly clean-up runs every app's registered purge (core.purges), past one that fails."""

import logging

from core import purges


def test_every_registered_purge_runs_and_one_that_fails_does_not_stop_the_others(
    monkeypatch, caplog
):
    # given the apps' purges registered at start-up
    assert {"OTP challenges", "rider location points"} <= set(purges._purges)
    # and, in their place, a failing purge registered before a working one
    monkeypatch.setattr(purges, "_purges", {})

    def broken() -> int:
        raise RuntimeError("disk full")

    purges.register("broken rows", broken)
    purges.register("old rows", lambda: 3)

    # when they run
    with caplog.at_level(logging.ERROR, logger="core.purges"):
        deleted = purges.run_all()

    # then the working ones report, the broken one is logged
    assert deleted == {"old rows": 3}
    assert "purge of broken rows failed" in caplog.text
