"""engine/customer.py: the customer's clock, reading a record, and the serialized state."""

from __future__ import annotations

import orjson
import pytest

from stream_app.engine import DEFAULT_CONFIG, AsOfBeforeClock, Customer, Unit
from stream_app.engine.clock import DAY, HOUR, format_instant, parse_rfc3339
from stream_app.engine.customer import CartTimer, TopOrderDays
from stream_app.engine.events import TOPIC_OF_TYPE, Event
from stream_app.engine.formats import CUSTOMER_INDEX, decode_customer, encode_customer

T0 = parse_rfc3339("2024-03-01T00:00:00Z")
assert T0 is not None


def ev(eid: str, etype: str, t: int, **kw: object) -> Event:
    if TOPIC_OF_TYPE[etype] == "orders":
        kw.setdefault("order_id", f"o-{eid}")
    return Event(eid, etype, TOPIC_OF_TYPE[etype], "alice", t, **kw)  # type: ignore[arg-type]


def alice(*events: Event) -> tuple[Unit, Customer]:
    u = Unit()
    for e in events:
        u.offer(e)
    return u, u.customers["alice"]


def test_clock_is_the_largest_occurred_at_applied() -> None:
    _, c = alice(ev("a", "like", T0 + HOUR), ev("b", "like", T0))   # the second is late
    assert c.clock == T0 + HOUR


def test_read_defaults_to_the_clock_and_snapshot_is_that_read() -> None:
    _, c = alice(ev("a", "order_placed", T0, amount=100.0), ev("b", "like", T0 + DAY))
    assert c.read(None, DEFAULT_CONFIG, []) == c.read(T0 + DAY, DEFAULT_CONFIG, []) == c.snapshot(DEFAULT_CONFIG, [])
    assert c.snapshot(DEFAULT_CONFIG, [])["as_of"] == format_instant(T0 + DAY)
    later = c.read(T0 + 31 * DAY, DEFAULT_CONFIG, [])
    assert later["score"] == pytest.approx(20 * 2 ** (-31 / 30) + 0.5 * 2 ** (-30 / 30))


def test_read_before_the_clock_is_refused() -> None:
    u, c = alice(ev("a", "like", T0 + DAY))
    with pytest.raises(AsOfBeforeClock, match="before the customer's clock") as info:
        c.read(T0 + DAY - 1, DEFAULT_CONFIG, [])
    assert isinstance(info.value, ValueError) and info.value.clock == T0 + DAY
    with pytest.raises(AsOfBeforeClock):
        u.record("alice", T0)          # the unit's reading uses the same rule
    assert u.record("alice") == c.snapshot(DEFAULT_CONFIG, u.segment_set.held(c.segments))
    assert u.record("nobody") is None


def test_cart_and_top_order_days_are_named_and_state_keeps_its_format() -> None:
    _, c = alice(ev("o1", "order_placed", T0, amount=5.0), ev("o2", "order_placed", T0 + 2 * DAY, amount=5.0),
                 ev("co", "checkout_started", T0 + 3 * DAY, cart_id="k"))
    assert c.top_order_days == TopOrderDays(latest=T0 // DAY + 2, second=T0 // DAY)
    assert c.cart == CartTimer(deadline=T0 + 3 * DAY + HOUR, checkout_event_id="co", cart_id="k",
                               checkout_at=T0 + 3 * DAY)
    raw = encode_customer(c)
    state = orjson.loads(raw)
    # plain lists in the state, as before the tuples had names (committed changelogs stay readable)
    assert state[CUSTOMER_INDEX["top_order_days"]] == [T0 // DAY + 2, T0 // DAY]
    assert state[CUSTOMER_INDEX["cart"]] == [T0 + 3 * DAY + HOUR, "co", "k", T0 + 3 * DAY]
    back = decode_customer(raw)
    assert type(back.cart) is CartTimer and type(back.top_order_days) is TopOrderDays
    assert encode_customer(back) == raw
    assert back.snapshot(DEFAULT_CONFIG, []) == c.snapshot(DEFAULT_CONFIG, []) and back.segments == c.segments
