"""Segments in the engine (SPEC §10) and the last-sweep rule of §5, against the brute-force oracle.

Random definitions (every field, op and kind of value) over random streams must give the oracle's
whole replay document: membership at each evaluation, the changes and their order, the records'
`segments`, the KPI counts, erasure. The scenarios pin down what the random streams rarely reach:
a late event after a sweep, date-relative segments entered at the exact midnight, the sweep index
(no scan of customers nothing can change for), segments off, and a restart under new definitions.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.engine import DEFAULT_CONFIG, EngineConfig, Unit
from stream_app.engine.clock import DAY, HOUR, parse_rfc3339
from stream_app.engine.events import DEFAULT_CHANNELS, Event
from stream_app.engine.formats import decode_customer, decode_unit, encode_customer, encode_unit
from stream_app.replay import replay_lines
from stream_app.validation import validate_bytes
from tests.helpers.compare import assert_same, without_alert_ids
from tests.oracle import oracle_document
from tests.strategies import streams_with_as_of

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z

NUMERIC = {
    "score": (0, 200), "points": (0, 2000), "orders_365d": (0, 6), "guest_orders_365d": (0, 3),
    "revenue_365d": (-100, 2000), "aov_365d": (0, 500), "orders_total": (0, 6), "revenue_total": (-100, 2000),
    "clicks_30d": (0, 15), "social_30d": (0, 10), "events_total": (0, 40), "last_nps": (0, 10),
    "channel_count_30d": (0, 4), "days_since_last_order": (0, 120), "days_since_last_activity": (0, 120),
}
NULLABLE = ("aov_365d", "last_nps", "days_since_last_order", "days_since_last_activity")
TIERS = ["bronze", "silver", "gold", "platinum"]


@st.composite
def predicates(draw: st.DrawFn) -> list[Any]:
    kind = draw(st.sampled_from(["numeric", "numeric", "numeric", "null", "tier", "channel"]))
    if kind == "numeric":
        field = draw(st.sampled_from(sorted(NUMERIC)))
        lo, hi = NUMERIC[field]
        value: Any = draw(st.one_of(st.integers(lo, hi), st.floats(lo, hi).map(lambda x: round(x, 2))))
        return [field, draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="])), value]
    if kind == "null":
        return [draw(st.sampled_from(NULLABLE)), draw(st.sampled_from(["is_null", "not_null"])), None]
    if kind == "tier":
        op = draw(st.sampled_from(["==", "!=", "in", "not_in"]))
        if op in ("==", "!="):
            return ["tier", op, draw(st.sampled_from(TIERS))]
        return ["tier", op, draw(st.lists(st.sampled_from(TIERS), min_size=1, max_size=3, unique=True))]
    channel = draw(st.sampled_from([*DEFAULT_CHANNELS, "other"]))
    return ["channels_30d", draw(st.sampled_from(["contains", "not_contains"])), channel]


@st.composite
def definitions(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 4))
    return [{"name": f"s{i}", "when": draw(st.lists(predicates(), min_size=1, max_size=3))} for i in range(n)]


def replay(events: list[dict[str, Any]], as_of: str | None, defs: list[dict[str, Any]] | None) -> dict[str, Any]:
    config = DEFAULT_CONFIG if defs is None else EngineConfig(segments=json.dumps({"segments": defs}))
    return replay_lines([orjson.dumps(ev) for ev in events], as_of=as_of, config=config)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams_with_as_of(), definitions())
def test_random_definitions_match_the_oracle(stream: Any, defs: list[dict[str, Any]]) -> None:
    events, as_of = stream
    want = oracle_document(events, as_of, segments=defs)
    got = replay(events, as_of, defs)
    assert_same(without_alert_ids(got), without_alert_ids(want))


# -- scenarios -------------------------------------------------------------------------------------
def ev(event_id: str, kind: str, customer: str, at: int, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "customer_id": customer, "occurred_at": at // 1000, **fields}


def order(event_id: str, customer: str, at: int, amount: float = 50.0) -> dict[str, Any]:
    return ev(event_id, "order_placed", customer, at, order_id=f"o-{event_id}", amount=amount)


def check(events: list[dict[str, Any]], as_of: str | None = None,
          defs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    want = oracle_document(events, as_of, segments=defs)
    got = replay(events, as_of, defs)
    assert_same(without_alert_ids(got), without_alert_ids(want))
    return got


def test_a_late_event_is_evaluated_at_the_last_sweep_not_before_it() -> None:
    # ann is platinum by Jan 2; a sweep on Jan 20 demotes her; a late event dated Jan 5 arriving
    # after that must not promote her "on Jan 5" (a change dated before the published demotion)
    events = [order(f"o{i}", "ann", T0 + i * HOUR, 400.0) for i in range(4)]
    events.append(ev("b1", "page_view", "bob", T0 + 40 * DAY, channel="web"))  # sweeps up to Feb 10
    events.append(ev("late", "like", "ann", T0 + 5 * DAY))
    doc = check(events)
    ann = [tc for tc in doc["tier_changes"] if tc["customer_id"] == "ann"]
    ats = [tc["at"] for tc in ann]
    assert ats == sorted(ats)  # never dated before one already published
    assert all(tc["at"] != "2024-01-05T00:00:00Z" for tc in ann)


def test_date_relative_segments_change_at_the_exact_midnight() -> None:
    events = [order("o1", "ann", T0 + 10 * HOUR), order("o2", "ann", T0 + DAY + 10 * HOUR),
              ev("late-clock", "page_view", "bob", T0 + 400 * DAY, channel="web")]
    doc = check(events)
    ann = [(c["segment"], c["change"], c["at"], c["reason"]) for c in doc["segment_changes"]
           if c["customer_id"] == "ann"]
    # new_customers on the first order, left on the second; at_risk at day(last order) + 90 ...
    assert ("new_customers", "entered", "2024-01-01T10:00:00Z", "event") in ann
    assert ("at_risk", "entered", "2024-04-01T00:00:00Z", "sweep") in ann  # Jan 2 + 90 days
    assert ("lapsed", "entered", "2025-01-01T00:00:00Z", "sweep") in ann    # Jan 2 + 365 days
    assert ("at_risk", "left", "2025-01-01T00:00:00Z", "sweep") in ann


def test_the_sweep_index_holds_only_customers_something_can_change_for() -> None:
    defs = [{"name": "generous", "when": [["points", ">=", 10]]}]
    u = Unit(EngineConfig(segments=json.dumps({"segments": defs})))
    for i in range(50):
        u.offer(Event(f"e{i}", "like", "social", f"c{i}", T0 + i * HOUR))
    assert u.due == {}  # bronze, and nothing time-dependent: no sweep needs to look at them
    defs = [{"name": "warm", "when": [["score", ">=", 1]]}]
    u = Unit(EngineConfig(segments=json.dumps({"segments": defs})))
    for i in range(50):
        u.offer(Event(f"e{i}", "like", "social", f"c{i}", T0 + i * HOUR))
    assert u.due == {}  # a score of 0.5 only decays: it never reaches 1 without an event
    u.offer(Event("o", "order_placed", "orders", "c0", T0 + 60 * HOUR, order_id="o", amount=5.0))
    assert [ids for ids in u.due.values()] == [["c0"]]  # only the customer whose score will fall below 1
    assert [(c["customer_id"], c["change"]) for c in u.drain().segment_changes] == [("c0", "entered")]
    u.advance(next(iter(u.due)) * DAY + 3 * DAY)
    (left,) = u.drain().segment_changes
    at = parse_rfc3339(left["at"])
    assert at is not None and left["change"] == "left" and left["reason"] == "sweep"
    c0 = u.customers["c0"]  # left at the first midnight where S < 1
    assert c0.score_at(at, DEFAULT_CONFIG.half_life) < 1 <= c0.score_at(at - DAY, DEFAULT_CONFIG.half_life)


def test_erasure_leaves_every_segment_at_the_watermark_in_definition_order() -> None:
    events = [ev("s", "survey_response", "ann", T0, nps=10, channel="email"),
              ev("v", "page_view", "ann", T0 + HOUR, channel="web"),
              ev("x", "page_view", "bob", T0 + 3 * HOUR, channel="web"),
              ev("gone", "customer_erased", "ann", T0 + 2 * HOUR)]
    doc = check(events)
    left = [c for c in doc["segment_changes"] if c["reason"] == "erasure"]
    assert [(c["segment"], c["change"], c["at"]) for c in left] == [
        ("promoters", "left", "2024-01-01T03:00:00Z"), ("omnichannel", "left", "2024-01-01T03:00:00Z")]
    assert doc["kpis"]["segments"]["promoters"] == 0 and "ann" not in doc["customers"]


def test_segments_off() -> None:
    events = [order("o1", "ann", T0), ev("s", "survey_response", "ann", T0 + HOUR, nps=10)]
    doc = check(events, defs=[])
    assert doc["segment_changes"] == [] and doc["kpis"]["segments"] == {}
    assert doc["customers"]["ann"]["segments"] == []


def test_a_restart_under_new_definitions_re_evaluates_every_customer_at_the_watermark() -> None:
    old = [{"name": "a", "when": [["points", ">=", 1]]}, {"name": "b", "when": [["orders_total", ">=", 1]]}]
    new = [{"name": "b", "when": [["orders_total", ">=", 1]]}, {"name": "c", "when": [["points", ">=", 1]]}]
    u = Unit(EngineConfig(segments=json.dumps({"segments": old})))
    u.offer(Event("o", "order_placed", "orders", "ann", T0, order_id="o", amount=5.0))
    assert u.record("ann")["segments"] == ["a", "b"]  # type: ignore[index]
    core = decode_unit(encode_unit(u.core(), 0, 0)).core
    customers = [decode_customer(encode_customer(c)) for c in u.customers.values()]
    back = Unit.from_parts(core, customers, [], EngineConfig(segments=json.dumps({"segments": new})))
    # before any input: "a" is gone (its members leave it), "c" is new (entered where it holds)
    assert [(c["segment"], c["change"], c["reason"], c["at"]) for c in back.drain().segment_changes] == [
        ("a", "left", "definitions", "2024-01-01T00:00:00Z"), ("c", "entered", "definitions", "2024-01-01T00:00:00Z")]
    assert back.record("ann")["segments"] == ["b", "c"]  # type: ignore[index]
    assert back.kpis.segments == {"b": 1, "c": 1}
    back.offer(Event("l", "like", "social", "ann", T0 + HOUR))
    assert back.drain().segment_changes == []
    # same definitions again: nothing to re-evaluate
    core = decode_unit(encode_unit(back.core(), 0, 0)).core
    again = Unit.from_parts(core, [decode_customer(encode_customer(c)) for c in back.customers.values()], [],
                            EngineConfig(segments=json.dumps({"segments": new})))
    assert again.drain().segment_changes == []
    # a changed predicate under the same name is a change of definitions too
    changed = [{"name": "b", "when": [["orders_total", ">=", 2]]}, new[1]]
    third = Unit.from_parts(core, [decode_customer(encode_customer(c)) for c in back.customers.values()], [],
                            EngineConfig(segments=json.dumps({"segments": changed})))
    assert [(c["segment"], c["change"]) for c in third.drain().segment_changes] == [("b", "left")]


def test_a_null_field_fails_every_comparison_and_only_is_null_tests_it() -> None:
    defs = [{"name": "no_nps", "when": [["last_nps", "is_null", None]]},
            {"name": "nps_not_5", "when": [["last_nps", "!=", 5]]},
            {"name": "aov_not_0", "when": [["aov_365d", "!=", 0]]},
            {"name": "has_aov", "when": [["aov_365d", "not_null", None]]}]
    doc = check([ev("v", "page_view", "ann", T0, channel="web")], defs=defs)
    assert doc["customers"]["ann"]["segments"] == ["no_nps"]  # `!=` on null is false too
    doc = check([ev("v", "page_view", "ann", T0, channel="web"),
                 ev("s", "survey_response", "ann", T0 + HOUR, nps=7), order("o", "ann", T0 + 2 * HOUR)], defs=defs)
    assert doc["customers"]["ann"]["segments"] == ["aov_not_0", "has_aov", "nps_not_5"]


def test_sums_are_compared_after_rounding_to_9_places() -> None:
    defs = [{"name": "exact", "when": [["revenue_total", "==", 0.3]]}]
    events = [order("a", "ann", T0, 0.1), order("b", "ann", T0 + HOUR, 0.2)]
    assert 0.1 + 0.2 != 0.3
    doc = check(events, defs=defs)
    assert doc["customers"]["ann"]["segments"] == ["exact"]


def test_a_first_event_enters_every_segment_it_satisfies_at_once() -> None:
    doc = check([ev("s", "survey_response", "ann", T0, nps=10, channel="email")])
    firsts = [(c["segment"], c["reason"], c["at"]) for c in doc["segment_changes"]]
    assert firsts == [("promoters", "event", "2024-01-01T00:00:00Z")]
    defs = [{"name": "a", "when": [["events_total", ">=", 1]]}, {"name": "b", "when": [["points", ">", 0]]},
            {"name": "c", "when": [["tier", "==", "bronze"]]}, {"name": "d", "when": [["tier", "==", "gold"]]}]
    doc = check([ev("s", "survey_response", "ann", T0, nps=10)], defs=defs)
    assert [c["segment"] for c in doc["segment_changes"]] == ["a", "b", "c"]  # definition order


def test_what_the_next_evaluation_may_skip_is_recorded_and_defaults_to_everything() -> None:
    # a buyer is quiet in window_shoppers (orders_total == 0 is false: no click can change it);
    # a member of new_customers is live (time alone moves days_since_last_order)
    u = Unit()
    u.offer(validate_bytes(orjson.dumps(order("o1", "buyer", T0 + HOUR))))  # type: ignore[arg-type]
    c = u.customers["buyer"]
    names = u.segment_set.names
    bit = {name: 1 << i for i, name in enumerate(names)}
    assert c.segments & bit["new_customers"] and c.segments_live & bit["new_customers"]
    assert c.segments_quiet & bit["window_shoppers"] and not c.segments_live & bit["window_shoppers"]
    assert not c.segments_quiet & bit["omnichannel"]  # held false by a field clicks do change
    assert c.segments_tier_held == bit["vip_slipping"]  # bronze: only a tier change can matter
    # restored from state, a customer skips nothing until it is evaluated again
    back = decode_customer(encode_customer(c))
    assert (back.segments_live, back.segments_quiet, back.segments_tier_held, back.segments_wait,
            back.segments_due) == (-1, 0, 0, 0, 0)


def test_a_count_short_of_its_threshold_skips_the_events_that_cannot_reach_it() -> None:
    # window_shoppers needs clicks_30d >= 10: after 3 clicks, the next 6 events cannot make it
    # true (one click each at most), so they skip it; the 10th click still enters at its instant
    u = Unit()
    bit = 1 << u.segment_set.names.index("window_shoppers")
    clicks = [ev(f"c{i}", "page_view", "ann", T0 + i * HOUR, channel="web") for i in range(10)]
    for e in clicks[:3]:
        u.offer(validate_bytes(orjson.dumps(e)))  # type: ignore[arg-type]
    c = u.customers["ann"]
    assert c.segments_wait & bit and c.segments_wait_n == 7
    for e in clicks[3:9]:  # the countdown runs out at the 10th event, which can reach 10 clicks
        u.offer(validate_bytes(orjson.dumps(e)))  # type: ignore[arg-type]
    assert c.segments_wait & bit and c.segments_wait_n == 1 and not c.segments & bit
    check(clicks)
    doc = check(clicks + [ev("o", "order_placed", "ann", T0 + 11 * HOUR, order_id="o1", amount=5.0)])
    assert [(c["segment"], c["change"], c["at"]) for c in doc["segment_changes"] if c["segment"] == "window_shoppers"] == [
        ("window_shoppers", "entered", "2024-01-01T09:00:00Z"), ("window_shoppers", "left", "2024-01-01T11:00:00Z")]


def test_a_sweep_visit_for_the_tier_evaluates_no_segment_that_is_not_due() -> None:
    # ann is platinum: sweeps visit her for her demotions; her segment's change is 60 days away
    # (segments_due), so those visits leave it alone, and the result is still the oracle's
    defs = [{"name": "quiet_buyer", "when": [["days_since_last_order", ">=", 60]]}]
    events = [order(f"o{i}", "ann", T0 + i * HOUR, 400.0) for i in range(4)]
    u = Unit(EngineConfig(segments=json.dumps({"segments": defs})))
    for e in events:
        u.offer(validate_bytes(orjson.dumps(e)))  # type: ignore[arg-type]
    c = u.customers["ann"]
    assert c.segments_due == T0 // DAY + 60
    assert c.due_day < c.segments_due  # indexed earlier, for the demotion
    doc = check(events + [ev("b", "page_view", "bob", T0 + 70 * DAY, channel="web")], defs=defs)
    assert len({tc["at"] for tc in doc["tier_changes"] if tc["customer_id"] == "ann"}) >= 2  # demoted by sweeps
    assert [(c["change"], c["at"], c["reason"]) for c in doc["segment_changes"]] == [
        ("entered", "2024-03-01T00:00:00Z", "sweep")]
