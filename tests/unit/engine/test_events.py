"""engine/events.py: SPEC §3 weights and loyalty points."""

from __future__ import annotations

import pytest

from stream_app.engine.events import FIXED_WEIGHTS, TOPIC_OF_TYPE, Event, points, weight


def ev(etype: str, amount: float = 0.0, **kw: object) -> Event:
    return Event("e", etype, TOPIC_OF_TYPE[etype], "c", 0, amount=amount, **kw)  # type: ignore[arg-type]


def test_order_weight_caps_the_amount_at_400() -> None:
    assert weight(ev("order_placed", 0.0)) == 10.0
    assert weight(ev("order_placed", 100.0)) == 20.0
    assert weight(ev("order_placed", 5000.0)) == 50.0
    assert weight(ev("order_refunded", 30.0)) == -3.0
    assert weight(ev("order_refunded", 900.0)) == -40.0


@pytest.mark.parametrize("etype", sorted(FIXED_WEIGHTS))
def test_other_types_have_their_table_weight(etype: str) -> None:
    assert weight(ev(etype)) == FIXED_WEIGHTS[etype]


def test_points_floor_order_amounts_and_follow_the_table() -> None:
    assert points(ev("order_placed", 99.99)) == 99
    assert points(ev("order_refunded", 10.5)) == -10
    assert [points(ev(t)) for t in ("review", "referral", "follow", "share", "survey_response")] == [
        50, 200, 20, 10, 10]
    assert points(ev("like")) == 0 and points(ev("page_view")) == 0
