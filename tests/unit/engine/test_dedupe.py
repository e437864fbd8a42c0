"""engine/dedupe.py: ids remembered until the watermark is the horizon past their application."""

from __future__ import annotations

from stream_app.engine.clock import DAY
from stream_app.engine.dedupe import RecentIds


def test_forget_drops_ids_whose_horizon_is_reached_and_says_when_next() -> None:
    r = RecentIds(7 * DAY)
    r.remember("a", 0)
    r.remember("b", 2 * DAY)
    assert "a" in r and len(r) == 2
    assert r.forget(7 * DAY - 1) == 7 * DAY            # nothing yet; "a" expires at 7 days
    assert r.forget(7 * DAY) == 9 * DAY                 # exactly the horizon: forgotten
    assert "a" not in r and "b" in r
    assert r.forget(20 * DAY) == 27 * DAY and len(r) == 0


def test_log_reports_remembered_and_forgotten_ids() -> None:
    r = RecentIds(DAY)
    r.remember("before", 0)
    assert r.take_log() == []  # not logging yet
    r.start_log()
    r.remember("a", 0)
    r.forget(DAY)
    assert r.take_log() == [("a", 0), ("before", None), ("a", None)]
    assert r.take_log() == []


def test_restore_orders_by_watermark_and_leaves_out_expired_ids() -> None:
    r = RecentIds.restore(DAY, [("late", 5 * DAY), ("old", 0), ("mid", 4 * DAY + 1)], 5 * DAY)
    assert list(r.ids) == ["mid", "late"]
    assert r.next_expiry(5 * DAY) == 5 * DAY + 1
    assert RecentIds(DAY).next_expiry(3) == 3 + DAY
