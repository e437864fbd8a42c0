"""Engine behaviour at the SPEC's edges, with expectations computed by hand from the SPEC."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from stream_app.engine import DEFAULT_CONFIG, DUPLICATE, EngineConfig, Unit
from stream_app.engine.clock import DAY, HOUR, MINUTE, format_instant, parse_rfc3339
from stream_app.engine.events import TOPIC_OF_TYPE, Event
from stream_app.engine.formats import decode_customer, decode_ids, decode_unit, encode_customer, encode_ids, encode_unit

T0 = parse_rfc3339("2024-03-01T00:00:00Z")
assert T0 is not None
_seq = iter(range(1, 10**9))


def ev(etype: str, t: int, cid: str | None = "alice", **kw: Any) -> Event:
    eid = kw.pop("event_id", f"e{next(_seq)}")
    if TOPIC_OF_TYPE[etype] == "orders":
        kw.setdefault("order_id", f"o-{eid}")
    return Event(eid, etype, TOPIC_OF_TYPE[etype], cid, t, **kw)


def run(*events: Event, as_of: int | None = None) -> Unit:
    u = Unit()
    for e in events:
        u.offer(e)
    if as_of is not None:
        u.advance(as_of)
    return u


def alerts(u: Unit, kind: str) -> list[dict[str, Any]]:
    return [a for a in u.alerts if a["type"] == kind]


def test_score_halves_every_thirty_days_and_is_order_independent() -> None:
    a = ev("order_placed", T0, amount=100.0)          # w = 10 + 100/10 = 20
    b = ev("like", T0 + 30 * DAY)                       # w = 0.5
    u1, u2 = run(a, b), run(b, a)
    for u in (u1, u2):
        rec = u.record("alice", T0 + 60 * DAY)
        assert rec is not None
        assert rec["score"] == pytest.approx(20 / 4 + 0.5 / 2, rel=1e-12)


def test_points_floor_amounts_and_refunds_subtract() -> None:
    u = run(ev("order_placed", T0, amount=99.99), ev("order_refunded", T0 + 1, amount=10.5),
            ev("review", T0 + 2, rating=5), ev("referral", T0 + 3), ev("follow", T0 + 4),
            ev("share", T0 + 5), ev("survey_response", T0 + 6, nps=9), ev("like", T0 + 7))
    assert u.customers["alice"].points == 99 - 10 + 50 + 200 + 20 + 10 + 10


def test_refund_counts_on_its_own_day() -> None:
    order = ev("order_placed", T0, amount=100.0)
    refund = ev("order_refunded", T0 + 400 * DAY, amount=100.0)
    rec = run(order, refund).record("alice")
    assert rec is not None
    assert (rec["orders_365d"], rec["revenue_365d"], rec["aov_365d"]) == (0, -100.0, None)
    assert (rec["orders_total"], rec["revenue_total"]) == (1, 0.0)
    rec2 = run(order, ev("order_refunded", T0 + 10 * DAY, amount=40.0)).record("alice")
    assert rec2 is not None and rec2["revenue_365d"] == 60.0 and rec2["aov_365d"] == 60.0


def test_first_event_gives_a_tier_from_null_even_bronze() -> None:
    u = run(ev("page_view", T0))
    assert u.tier_changes == [{"customer_id": "alice", "from_tier": None, "to_tier": "bronze",
                               "score": 0.1, "at": format_instant(T0), "reason": "event"}]


def test_promotion_skips_tiers_and_happens_at_the_customer_clock() -> None:
    u = run(ev("page_view", T0 + HOUR), ev("order_placed", T0, amount=2000.0),  # late: w = 50
            ev("referral", T0 + 2), ev("review", T0 + 3, rating=4))              # +8 +4 = 62.1
    last = u.tier_changes[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"]) == ("silver", "gold", "event")
    assert last["at"] == format_instant(T0 + HOUR)  # evaluated at c, not at the late event's time


def test_no_promotion_below_the_next_bound() -> None:
    u = run(ev("order_placed", T0, amount=99.0))   # 19.9: bronze stays
    assert [c["to_tier"] for c in u.tier_changes] == ["bronze"]


def test_demotion_waits_for_eighty_percent_of_the_bound() -> None:
    # 10 + 400/10 = 50, twice = 100 (gold). Gold demotes below 48: 100·2^(−d/30) < 48 ⇔ d > 31.77.
    u = run(ev("order_placed", T0, amount=500.0), ev("order_placed", T0, amount=500.0))
    u.advance(T0 + 31 * DAY + HOUR)
    assert [c["to_tier"] for c in u.tier_changes] == ["silver", "gold"]
    u.advance(T0 + 32 * DAY + HOUR)
    last = u.tier_changes[-1]
    assert (last["from_tier"], last["to_tier"], last["reason"]) == ("gold", "silver", "sweep")
    assert last["at"] == format_instant(T0 + 32 * DAY)
    assert last["score"] == pytest.approx(100 * 2 ** (-32 / 30))
    assert u.customers["alice"].tier_since == T0 + 32 * DAY


def test_demotion_after_a_refund_event() -> None:
    u = run(ev("order_placed", T0, amount=500.0), ev("order_placed", T0, amount=500.0),
            ev("order_refunded", T0 + 1, amount=300.0))   # 100 − 30 = 70: still gold (≥ 48)
    assert u.customers["alice"].tier == 2
    u.offer(ev("order_refunded", T0 + 2, amount=250.0))   # 70 − 25 = 45 < 48 → silver
    assert u.tier_changes[-1]["to_tier"] == "silver"


def test_negative_feedback_cooldown_boundary() -> None:
    u = run(ev("review", T0, rating=1),
            ev("review", T0 + 24 * HOUR - 1, rating=2),       # within 24 h: suppressed
            ev("survey_response", T0 + 24 * HOUR, nps=6),     # exactly 24 h after the last raised
            ev("review", T0 + 30 * HOUR, rating=3))            # not negative
    raised = alerts(u, "negative_feedback")
    assert [a["at"] for a in raised] == [format_instant(T0), format_instant(T0 + 24 * HOUR)]
    assert raised[1]["details"]["nps"] == 6 and raised[0]["severity"] == "medium"


def test_negative_feedback_is_high_for_gold_after_the_event() -> None:
    u = run(ev("order_placed", T0, amount=500.0), ev("order_placed", T0, amount=500.0),
            ev("review", T0 + 1, rating=1))
    assert alerts(u, "negative_feedback")[0]["severity"] == "high"


def test_abandoned_cart_fires_at_deadline_when_watermark_passes() -> None:
    co = ev("checkout_started", T0, cart_id="k1")
    u = run(co, ev("page_view", T0 + 60 * MINUTE, cid="bob"))
    assert alerts(u, "abandoned_cart") == []          # deadline == watermark: not yet
    u.offer(ev("page_view", T0 + 60 * MINUTE + 1, cid="bob"))
    (a,) = alerts(u, "abandoned_cart")
    assert a["at"] == format_instant(T0 + 60 * MINUTE) and a["severity"] == "low"
    assert a["details"] == {"checkout_event_id": co.event_id, "cart_id": "k1",
                            "checkout_at": format_instant(T0)}


def test_order_exactly_at_the_deadline_cancels_the_timer() -> None:
    u = run(ev("checkout_started", T0), ev("order_placed", T0 + 60 * MINUTE, amount=5.0),
            as_of=T0 + DAY)
    assert alerts(u, "abandoned_cart") == []
    u2 = run(ev("checkout_started", T0), ev("order_placed", T0 + 60 * MINUTE + 1, amount=5.0))
    assert len(alerts(u2, "abandoned_cart")) == 1     # fired before that order was applied


def test_cart_replaced_by_a_later_checkout() -> None:
    first, second = ev("checkout_started", T0, cart_id="a"), ev("checkout_started", T0 + 10 * MINUTE, cart_id="b")
    u = run(first, second, as_of=T0 + DAY)
    (a,) = alerts(u, "abandoned_cart")
    assert a["details"]["checkout_event_id"] == second.event_id
    assert a["at"] == format_instant(T0 + 70 * MINUTE)


def test_older_checkout_does_nothing_and_late_order_cancels() -> None:
    u = run(ev("checkout_started", T0 + 10 * MINUTE), ev("checkout_started", T0),
            ev("order_placed", T0 + 30 * MINUTE, amount=1.0), as_of=T0 + DAY)
    assert alerts(u, "abandoned_cart") == []
    # an order applied before a late checkout, inside its hour: no timer at all
    u2 = run(ev("order_placed", T0 + 30 * MINUTE, amount=1.0), ev("checkout_started", T0), as_of=T0 + DAY)
    assert alerts(u2, "abandoned_cart") == [] and u2.timers == []


def test_timers_at_the_same_instant_fire_in_customer_id_order() -> None:
    t = T0 + 5 * HOUR
    u = run(ev("checkout_started", t, cid="bob"), ev("checkout_started", t, cid="amy"),
            as_of=t + 60 * MINUTE + 1)
    assert [(a["customer_id"], a["at"]) for a in u.alerts] == [
        ("amy", format_instant(t + 60 * MINUTE)), ("bob", format_instant(t + 60 * MINUTE))]


def test_timer_and_churn_at_the_same_midnight_timer_first() -> None:
    mid = T0 + 31 * DAY
    u = run(ev("order_placed", T0 + 1 * DAY, cid="zed", amount=2000.0),   # silver; churn due at T0+31d
            ev("checkout_started", mid - 60 * MINUTE, cid="amy"), as_of=mid + 1)
    assert [(a["type"], a["at"]) for a in u.alerts] == [
        ("abandoned_cart", format_instant(mid)), ("churn_risk", format_instant(mid))]
    churn = u.alerts[1]
    assert churn["details"] == {"last_activity_at": format_instant(T0 + DAY), "days_inactive": 30,
                                "tier": "silver"}


def test_churn_once_per_spell_and_rearmed_by_activity() -> None:
    u = run(ev("order_placed", T0, amount=2000.0), as_of=T0 + 90 * DAY)  # 50 → silver
    assert [a["at"] for a in alerts(u, "churn_risk")] == [format_instant(T0 + 30 * DAY)]
    u.offer(ev("page_view", T0 + 91 * DAY))
    u.advance(T0 + 200 * DAY)
    churn = alerts(u, "churn_risk")
    # the customer was demoted meanwhile (50·2^(−d/30) < 16 at d ≈ 49.3): bronze gets no churn alert
    assert len(churn) == 1
    assert [c["to_tier"] for c in u.tier_changes] == ["silver", "bronze"]


def test_churn_rearmed_for_a_customer_who_stays_silver() -> None:
    big = [ev("order_placed", T0 + i, amount=5000.0) for i in range(5)]   # 250: platinum
    u = run(*big, as_of=T0 + 31 * DAY)   # clock T0 + 4 µs: the first midnight 30 days on is day 31
    (first,) = alerts(u, "churn_risk")
    assert first["severity"] == "high" and first["details"]["tier"] == "platinum"
    u.offer(ev("page_view", T0 + 32 * DAY))
    u.advance(T0 + 63 * DAY)
    churn = alerts(u, "churn_risk")
    # re-armed by the page view at day 32; meanwhile the day-32 sweep demoted 250·2^(−32/30) ≈ 119
    # below 0.8 × 150, to gold, so the second alert names gold
    assert [a["at"] for a in churn] == [format_instant(T0 + 31 * DAY), format_instant(T0 + 62 * DAY)]
    assert churn[1]["details"]["tier"] == "gold" and churn[1]["details"]["days_inactive"] == 30


def test_duplicates_within_the_horizon_and_reapplied_after() -> None:
    a = ev("page_view", T0, event_id="dup")
    u = run(a)
    assert u.offer(ev("page_view", T0 + 7 * DAY - 1, cid="bob")) == "applied"
    assert u.offer(a) == DUPLICATE
    u.offer(ev("page_view", T0 + 7 * DAY, cid="bob"))   # watermark exactly 7 days past: forgotten
    assert u.offer(a) == "applied"
    assert (u.applied, u.duplicates) == (4, 1)
    assert u.customers["alice"].events_total == 2


def test_duplicates_do_not_move_the_watermark() -> None:
    a = ev("page_view", T0, event_id="x")
    u = run(a, ev("page_view", T0 + HOUR))
    u.offer(ev("page_view", T0 + 2 * HOUR, event_id="x"))
    assert u.watermark == T0 + HOUR


def test_guest_orders_with_and_without_customer_id() -> None:
    u = run(ev("order_placed", T0, amount=10.0, guest=True),
            ev("order_placed", T0 + 1, cid=None, amount=30.0, guest=True),
            ev("order_refunded", T0 + 2, cid=None, amount=5.0, guest=True))
    rec = u.record("alice")
    assert rec is not None and (rec["orders_365d"], rec["guest_orders_365d"]) == (1, 1)
    k = u.kpis.document(u.watermark)
    assert (k["orders"], k["guest_orders"], k["identified_orders"], k["customers"]) == (2, 2, 1, 1)
    assert k["revenue"] == 35.0 and k["guest_checkout_rate"] == 1.0 and k["purchase_frequency"] == 1.0
    assert list(u.customers) == ["alice"]


def test_repeat_customers_follow_the_second_latest_order() -> None:
    u = run(ev("order_placed", T0, amount=1.0), ev("order_placed", T0 + 100 * DAY, amount=1.0),
            ev("order_placed", T0 + 1, cid="bob", amount=1.0))
    k = u.kpis.document(T0 + 364 * DAY)
    assert (k["customers"], k["repeat_customers"]) == (2, 1)
    k = u.kpis.document(T0 + 365 * DAY)    # alice's first order and bob's only order left the window
    assert (k["customers"], k["repeat_customers"], k["orders"]) == (1, 0, 1)


def test_windows_for_clicks_and_social() -> None:
    u = run(ev("page_view", T0), ev("like", T0 + DAY), ev("search", T0 + 29 * DAY))
    rec = u.record("alice", T0 + 29 * DAY)
    assert rec is not None and (rec["clicks_30d"], rec["social_30d"]) == (2, 1)
    rec = u.record("alice", T0 + 30 * DAY)
    assert rec is not None and (rec["clicks_30d"], rec["social_30d"]) == (1, 1)


def _persisted_round_trip(u: Unit) -> Unit:
    core = decode_unit(encode_unit(u.core(), -1, 0)).core
    customers = [decode_customer(encode_customer(c)) for c in u.customers.values()]
    seen = decode_ids(encode_ids(list(u.seen.items())))
    return Unit.from_parts(core, customers, seen, u.config)


def test_state_round_trips_and_processing_continues_identically() -> None:
    from stream_app.simulate import Simulator
    from stream_app.validation import validate_bytes

    events = [validate_bytes(line) for line in Simulator(customers=40, seed=3, days=120).lines(3000)]
    whole = Unit()
    for e in events:
        whole.offer(e)  # type: ignore[arg-type]
    half = Unit()
    for e in events[:1500]:
        half.offer(e)  # type: ignore[arg-type]
    head = (list(half.tier_changes), list(half.alerts))
    resumed = _persisted_round_trip(half)
    for e in events[1500:]:
        resumed.offer(e)  # type: ignore[arg-type]
    assert head[0] + resumed.tier_changes == whole.tier_changes
    assert head[1] + resumed.alerts == whole.alerts
    for cid in whole.customers:
        assert resumed.record(cid) == whole.record(cid)
    assert resumed.kpis.document(whole.watermark) == whole.kpis.document(whole.watermark)
    assert (resumed.applied, resumed.duplicates) == (whole.applied, whole.duplicates)


# -- every configurable number reaches the engine (defaults: the tests above) ------------------


def run_with(config: EngineConfig, *events: Event, as_of: int | None = None) -> Unit:
    u = Unit(config)
    for e in events:
        u.offer(e)
    if as_of is not None:
        u.advance(as_of)
    return u


def test_configured_half_life() -> None:
    u = run_with(replace(DEFAULT_CONFIG, half_life=10 * DAY), ev("order_placed", T0, amount=100.0))
    assert u.record("alice", T0 + 10 * DAY)["score"] == pytest.approx(10.0)  # type: ignore[index]


def test_configured_tier_bounds() -> None:
    cfg = replace(DEFAULT_CONFIG, tier_bounds=(0.0, 5.0, 10.0, 15.0))
    u = run_with(cfg, ev("order_placed", T0, amount=20.0))   # w = 12: bronze by default
    assert u.tier_changes[-1]["to_tier"] == "gold"


def test_configured_demotion_factor() -> None:
    # 20 = silver exactly; a day later S ≈ 19.5: below the bound, above 0.8 × it
    events = (ev("order_placed", T0, amount=100.0), ev("page_view", T0 + 2 * DAY, cid="bob"))
    assert [c["to_tier"] for c in run(*events).tier_changes if c["customer_id"] == "alice"] == ["silver"]
    u = run_with(replace(DEFAULT_CONFIG, demotion_factor=1.0), *events)
    last = [c for c in u.tier_changes if c["customer_id"] == "alice"][-1]
    assert (last["to_tier"], last["at"]) == ("bronze", format_instant(T0 + DAY))


def test_configured_order_window() -> None:
    cfg = replace(DEFAULT_CONFIG, order_window_days=10)
    u = run_with(cfg, ev("order_placed", T0, amount=100.0))
    assert u.record("alice", T0 + 9 * DAY)["orders_365d"] == 1  # type: ignore[index]
    assert u.record("alice", T0 + 10 * DAY)["orders_365d"] == 0  # type: ignore[index]
    assert u.kpis.document(T0 + 10 * DAY)["orders"] == 0
    assert u.kpis.document(T0 + 10 * DAY)["window_days"] == 10


def test_configured_activity_window() -> None:
    u = run_with(replace(DEFAULT_CONFIG, activity_window_days=7), ev("page_view", T0), ev("like", T0))
    assert (u.record("alice", T0 + 6 * DAY) or {})["clicks_30d"] == 1
    rec = u.record("alice", T0 + 7 * DAY) or {}
    assert (rec["clicks_30d"], rec["social_30d"]) == (0, 0)


def test_configured_cart_timeout_fires_earlier() -> None:
    events = (ev("checkout_started", T0), ev("page_view", T0 + 11 * MINUTE, cid="bob"))
    assert alerts(run(*events), "abandoned_cart") == []
    (a,) = alerts(run_with(replace(DEFAULT_CONFIG, cart_timeout=10 * MINUTE), *events), "abandoned_cart")
    assert a["at"] == format_instant(T0 + 10 * MINUTE)


def test_configured_churn_inactivity() -> None:
    order = ev("order_placed", T0, amount=2000.0)   # 50: silver
    assert alerts(run(order, as_of=T0 + 6 * DAY), "churn_risk") == []
    u = run_with(replace(DEFAULT_CONFIG, churn_after=5 * DAY), order, as_of=T0 + 6 * DAY)
    (a,) = alerts(u, "churn_risk")
    assert a["at"] == format_instant(T0 + 5 * DAY) and a["details"]["days_inactive"] == 5


def test_configured_feedback_cooldown() -> None:
    events = (ev("review", T0, rating=1), ev("review", T0 + 2 * HOUR, rating=1))
    assert len(alerts(run(*events), "negative_feedback")) == 1
    u = run_with(replace(DEFAULT_CONFIG, feedback_cooldown=HOUR), *events)
    assert len(alerts(u, "negative_feedback")) == 2


def test_configured_dedupe_horizon() -> None:
    a = ev("page_view", T0, event_id="again")
    later = ev("page_view", T0 + DAY, cid="bob")
    assert run(a, later).offer(a) == DUPLICATE
    u = run_with(replace(DEFAULT_CONFIG, dedupe_horizon=DAY), a, later)
    assert u.offer(a) == "applied"


def test_configured_currency_reaches_validation() -> None:
    from stream_app.replay import replay_lines

    line = orjson.dumps({"event_id": "1", "type": "order_placed", "customer_id": "alice",
                         "occurred_at": "2024-03-01T00:00:00Z", "order_id": "o", "amount": 5,
                         "currency": "EUR"})
    assert replay_lines([line])["counts"]["rejected"] == 1
    doc = replay_lines([line], config=replace(DEFAULT_CONFIG, currency="EUR"))
    assert doc["counts"] == {"applied": 1, "duplicates": 0, "rejected": 0, "erased": 0}
