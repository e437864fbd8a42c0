"""engine/formats.py: every state and wire record leads with its format number, its layout comes
from its field tuple, it round-trips, and the records written before the numbers (format 0) still
decode to the same state."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_app.engine import DEFAULT_CONFIG, Customer, KpiPartial, Unit
from stream_app.engine.clock import DAY, HOUR, format_instant
from stream_app.engine.customer import CartTimer
from stream_app.engine.events import Event
from stream_app.engine.formats import (
    CUSTOMER_FIELDS,
    CUSTOMER_FORMAT,
    CUSTOMER_INDEX,
    DERIVED_FIELDS,
    IDS_FORMAT,
    KPI_FIELDS,
    KPI_FORMAT,
    KPI_INDEX,
    KPI_MESSAGE_FORMAT,
    REKEYED_FORMAT,
    REKEYED_INDEX,
    UNIT_FIELDS,
    UNIT_FORMAT,
    UNIT_INDEX,
    UnknownFormat,
    decode_customer,
    decode_ids,
    decode_kpi_message,
    decode_legacy_id,
    decode_rekeyed,
    decode_unit,
    encode_customer,
    encode_ids,
    encode_kpi_message,
    encode_rekeyed,
    encode_unit,
    kpi_from_state,
    kpi_state,
    wrap_event,
)
from stream_app.simulate import Simulator
from stream_app.validation import Rejection, validate_bytes

T0 = 1_704_067_200_000_000  # 2024-01-01


def busy_unit() -> Unit:
    """A unit whose customers use every field: orders, carts, messages, NPS, channels."""
    u = Unit()
    for line in Simulator(customers=40, seed=7, days=40).lines(4000):
        ev = validate_bytes(line)
        if type(ev) is not Rejection:
            u.offer(ev)
    c = "x"
    for e in (Event("x1", "order_placed", "orders", c, T0, "web", 1, "o1", 5.0),
              Event("x2", "checkout_started", "orders", c, T0 + DAY, "web", 1, cart_id="k"),
              Event("x3", "email_sent", "clicks", c, T0 + DAY + 1, "email"),
              Event("x4", "survey_response", "social", c, T0 + DAY + 2, nps=3)):
        u.offer(e)
    return u


def customer_values(c: Customer) -> dict[str, Any]:
    """Each field as JSON holds it."""
    return {name: orjson.loads(orjson.dumps(
        list(v) if name in ("top_order_days", "cart") and v is not None
        else v.tolist() if name == "order_instants" else v)) for name in CUSTOMER_FIELDS
        for v in [getattr(c, name)]}


# -- the layouts ---------------------------------------------------------------------------------
def test_every_record_leads_with_its_format_number_and_the_index_constants_follow_the_field_tuples() -> None:
    u = busy_unit()
    c = u.customers["x"]
    rec = orjson.loads(encode_customer(c))
    assert rec[0] == CUSTOMER_FORMAT and len(rec) == len(CUSTOMER_FIELDS) + 1
    # each field sits at its named index (the record is written as a literal: this ties it to the tuple)
    for name, value in customer_values(c).items():
        assert rec[CUSTOMER_INDEX[name]] == value, name
    assert rec[CUSTOMER_INDEX["cart"]] == list(c.cart or ()) and c.cart is not None
    assert rec[CUSTOMER_INDEX["last_nps"]] == 3
    unit = orjson.loads(encode_unit(u.core(), 41, 7))
    assert unit[0] == UNIT_FORMAT and len(unit) == len(UNIT_FIELDS) + 1
    assert (unit[UNIT_INDEX["offset"]], unit[UNIT_INDEX["id_seq"]], unit[UNIT_INDEX["applied"]]) == (41, 7, u.applied)
    kpis = unit[UNIT_INDEX["kpis"]]
    assert kpis[0] == KPI_FORMAT and len(kpis) == len(KPI_FIELDS) + 1
    assert kpis[KPI_INDEX["window_days"]] == 365 and kpis[KPI_INDEX["channels"]] == list(u.kpis.channels)
    assert orjson.loads(encode_ids([("a", 1), ("b", 2)])) == [IDS_FORMAT, ["a", 1], ["b", 2]]
    assert orjson.loads(encode_kpi_message(3, 9, u.kpis))[:3] == [KPI_MESSAGE_FORMAT, 3, 9]
    ev = Event("e1", "page_view", "clicks", "c1", T0)
    arr = orjson.loads(encode_rekeyed(ev))
    assert arr[0] == REKEYED_FORMAT and all(arr[REKEYED_INDEX[f]] == getattr(ev, f) for f in Event._fields)


def test_the_customer_fields_are_the_customers_slots() -> None:
    slots = getattr(Customer, "__slots__", None)
    if slots is not None:  # a compiled class may not expose them; the interpreted run checks it
        assert tuple(slots) == CUSTOMER_FIELDS + DERIVED_FIELDS
    c = Customer("c", 0)
    assert all(hasattr(c, name) for name in CUSTOMER_FIELDS)


# -- round trips ---------------------------------------------------------------------------------
def test_customers_round_trip_byte_for_byte() -> None:
    u = busy_unit()
    for c in u.customers.values():
        raw = encode_customer(c)
        back = decode_customer(raw)
        assert encode_customer(back) == raw
        assert back.snapshot(DEFAULT_CONFIG, []) == c.snapshot(DEFAULT_CONFIG, [])
        assert back.segments == c.segments
        assert type(back.cart) in (CartTimer, type(None))
    assert any(c.segments for c in u.customers.values())  # the workload holds segments


def test_the_unit_record_and_the_kpi_message_round_trip() -> None:
    u = busy_unit()
    raw = encode_unit(u.core(), 99, 4)
    back = decode_unit(raw)
    assert (back.offset, back.id_seq) == (99, 4)
    assert encode_unit(back.core, 99, 4) == raw
    assert back.core.kpis.document(u.watermark) == u.kpis.document(u.watermark)
    msg = decode_kpi_message(encode_kpi_message(2, u.watermark, u.kpis))
    assert (msg.partition, msg.watermark) == (2, u.watermark)
    assert kpi_state(msg.kpis) == kpi_state(u.kpis)
    assert decode_ids(encode_ids([("a", 1), ("b", 2)])) == [("a", 1), ("b", 2)]


# -- format 0: what committed changelogs and topics may still hold --------------------------------
def v1_customer(c: Customer) -> list[Any]:
    """Format 1: the number 1 and the 25 fields before `segments`."""
    rec: list[Any] = orjson.loads(encode_customer(c))
    return [1, *rec[1:CUSTOMER_INDEX["segments"]]]


def v0_customer(c: Customer) -> list[Any]:
    """The 25-slot list `Customer.to_state` wrote before the format number."""
    return v1_customer(c)[1:]


def without_segments(c: Customer) -> Customer:
    """What formats 0 and 1 restore: no segments held, no order days kept."""
    back = decode_customer(encode_customer(c))
    back.segments = 0
    back.order_day_values = None
    return back


def test_format_2_customer_states_decode_without_order_days() -> None:
    c = busy_unit().customers["x"]
    assert c.order_day_values  # and format 2 kept none
    v2 = orjson.loads(encode_customer(c))[:-1]
    v2[0] = 2
    back = decode_customer(orjson.dumps(v2))
    assert back.order_day_values is None and back.segments == c.segments
    back.order_day_values = c.order_day_values
    assert encode_customer(back) == encode_customer(c)


def test_format_0_customer_states_decode_25_and_20_slots() -> None:
    u = busy_unit()
    c = u.customers["x"]
    old = v0_customer(c)
    assert len(old) == 25 and type(old[0]) is str
    assert c.segments  # and format 0 holds none
    assert encode_customer(decode_customer(orjson.dumps(old))) == encode_customer(without_segments(c))
    # 20 slots: written before SPEC §1 had non-activity types (every applied event was activity)
    short = decode_customer(orjson.dumps(old[:20]))
    assert short.last_activity == c.t_ref and short.channel_days == [] and short.message_buckets is None
    assert (short.last_nps, short.last_nps_at) == (None, None)
    assert short.s_ref == c.s_ref and short.cart == c.cart and short.order_buckets == c.order_buckets


def v0_kpis(k: KpiPartial) -> dict[str, Any]:
    """The object `KpiPartial.to_state` wrote before the format number (no segments)."""
    s = kpi_state(k)
    return {name: v for name, v in zip(KPI_FIELDS, s[1:], strict=True) if name != "segments"}


def no_segment_counts(k: KpiPartial) -> list[Any]:
    """The KPI state with the segment counts an older format did not have."""
    s = kpi_state(k)
    s[KPI_INDEX["segments"]] = {}
    return s


def test_format_1_records_decode_without_segments_or_a_last_sweep() -> None:
    u = busy_unit()
    c = u.customers["x"]
    back = decode_customer(orjson.dumps(v1_customer(c)))
    assert back.segments == 0 and encode_customer(back) == encode_customer(without_segments(c))
    core = u.core()
    assert core.last_sweep is not None and core.segment_names and any(core.kpis.segments.values())
    v1_kpis = no_segment_counts(core.kpis)[:-1]
    v1_kpis[0] = 1
    v1_unit = [1, core.watermark, v1_kpis, core.applied, core.duplicates, core.erasures, 12, 3]
    b = decode_unit(orjson.dumps(v1_unit))
    assert (b.offset, b.id_seq, b.core.last_sweep, b.core.segment_names, b.core.segment_digest) == (12, 3, None, (), "")
    assert kpi_state(b.core.kpis) == no_segment_counts(core.kpis)
    # restored under the built-in definitions, a format-1 unit's customers are evaluated at its
    # watermark before any input (reason "definitions"), as after any change of definitions
    restored = Unit.from_parts(b.core, [back], [], DEFAULT_CONFIG)
    changes = restored.drain().segment_changes
    assert changes and {(sc["reason"], sc["at"]) for sc in changes} == {("definitions", format_instant(core.watermark))}
    assert restored.kpis.segments == {name: sum(1 for sc in changes if sc["segment"] == name)
                                      for name in u.segment_set.names}


def test_format_0_unit_records_and_kpi_partials_decode_with_their_later_fields_defaulted() -> None:
    u = busy_unit()
    core = u.core()
    old = {"watermark": core.watermark, "kpis": v0_kpis(core.kpis), "applied": core.applied,
           "duplicates": core.duplicates, "erasures": core.erasures, "offset": 12, "id_seq": 3}
    back = decode_unit(orjson.dumps(old))
    assert (back.core.last_sweep, back.core.segment_names) == (None, ())
    assert encode_unit(back.core, back.offset, back.id_seq) == encode_unit(
        core._replace(kpis=kpi_from_state(no_segment_counts(core.kpis)), last_sweep=None, first_sweep=None, segment_names=(), segment_digest=""), 12, 3)
    # the oldest: no erasures, no id_seq, a KPI partial without the activity parts
    oldest_kpis = {k: v for k, v in v0_kpis(core.kpis).items()
                   if k in ("window_days", "floor_day", "buckets", "latest", "second")}
    oldest = {"watermark": core.watermark, "kpis": oldest_kpis, "applied": 5, "duplicates": 1, "offset": 12}
    b = decode_unit(orjson.dumps(oldest))
    assert (b.core.erasures, b.id_seq, b.offset, b.core.applied) == (0, 0, 12, 5)
    k = b.core.kpis
    assert (k.activity_days, k.channels, k.floor_day_activity) == (30, KpiPartial().channels, -(10**9))
    assert k.buckets == core.kpis.buckets and k.messages == {} and k.by_channel == {} and k.omni == {}
    # the partial message between workers, as an object
    msg = decode_kpi_message(orjson.dumps({"partition": 1, "watermark": 5, "kpis": v0_kpis(core.kpis)}))
    assert (msg.partition, msg.watermark) == (1, 5) and kpi_state(msg.kpis) == no_segment_counts(core.kpis)
    assert kpi_state(kpi_from_state(v0_kpis(core.kpis))) == no_segment_counts(core.kpis)


def test_format_0_id_records_decode() -> None:
    assert decode_ids(orjson.dumps([["a", 1], ["b", 2]])) == [("a", 1), ("b", 2)]  # `<p>|E|n`, no number
    assert decode_legacy_id(orjson.dumps(T0)) == T0                                # `<p>|e|<id>`


def test_format_0_rekeyed_messages_are_left_to_validation() -> None:
    raw = b'{"event_id":"e1","type":"page_view","customer_id":"c1","occurred_at":"2024-01-01T00:00:00Z"}'
    assert decode_rekeyed(wrap_event("clicks", raw)) is None  # validation.decode_rekeyed validates it
    assert decode_rekeyed(b"[1,") is None and decode_rekeyed(b"[2]") is None


# -- numbers this version does not know ------------------------------------------------------------
@pytest.mark.parametrize("decode, raw", [
    (decode_customer, b'[3, "c"]'),
    (decode_customer, b'[1, "c"]'),
    (decode_unit, b"[3, null]"),
    (decode_ids, b'[2, ["a", 1]]'),
    (decode_ids, b"[]"),
    (decode_kpi_message, b"[9]"),
    (decode_legacy_id, b'"x"'),
])
def test_an_unknown_format_is_refused_not_guessed(decode: Any, raw: bytes) -> None:
    with pytest.raises(UnknownFormat):
        decode(raw)


def test_a_unit_restored_from_records_carries_on_identically() -> None:
    u = busy_unit()
    rec = decode_unit(encode_unit(u.core(), -1, 0))
    back = Unit.from_parts(rec.core, [decode_customer(encode_customer(c)) for c in u.customers.values()],
                           decode_ids(encode_ids(list(u.seen.items()))), u.config)
    late = Event("late", "order_placed", "orders", "x", T0 + 2 * DAY + HOUR, "web", 1, "o9", 7.0)
    assert back.offer(late) == u.offer(late)
    assert back.record("x") == u.record("x")
    assert back.kpis.document(back.watermark) == u.kpis.document(u.watermark)
