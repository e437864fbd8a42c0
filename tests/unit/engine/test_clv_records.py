"""SPEC §11 in the engine: every record's clv against the oracle's brute-force summary and
45-digit evaluation, under late and out-of-order orders, refunds, same-day orders and erasure,
and across a restart from persisted state."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings

from stream_app.engine import DEFAULT_CONFIG, Unit
from stream_app.engine.clv import ClvModel
from stream_app.engine.formats import decode_customer, decode_unit, encode_customer, encode_unit
from stream_app.replay import replay_lines
from stream_app.validation import validate_bytes
from tests.helpers.compare import assert_same, without_alert_ids
from tests.oracle import oracle_document
from tests.strategies import streams_with_as_of

MODEL = ClvModel("test-1", "2024-01-01T00:00:00Z", 0.8265, 68.905, 0.0034374, 6.7452, 2.1034, 3.4512, 485.89)
CONFIG = dataclasses.replace(DEFAULT_CONFIG, clv_model=MODEL, clv_horizon_days=180)


def replay(events: list[dict[str, Any]], as_of: str | None) -> dict[str, Any]:
    return replay_lines([orjson.dumps(ev) for ev in events], as_of=as_of, config=CONFIG)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(streams_with_as_of())
def test_records_carry_the_oracles_clv(stream: Any) -> None:
    events, as_of = stream
    want = oracle_document(events, as_of, clv_model=MODEL, horizon_days=180)
    assert_same(without_alert_ids(replay(events, as_of)), without_alert_ids(want))


def test_without_a_model_clv_is_null_and_with_one_only_buyers_have_it() -> None:
    base = 1_704_067_200_000  # ms
    events = [
        {"event_id": "a", "type": "page_view", "customer_id": "c1", "occurred_at": base},
        {"event_id": "b", "type": "order_placed", "customer_id": "c2", "occurred_at": base + 1,
         "order_id": "o1", "amount": 20.0},
        {"event_id": "c", "type": "order_placed", "customer_id": "c2", "occurred_at": base + 5 * 86_400_000,
         "order_id": "o2", "amount": 30.0},
        {"event_id": "d", "type": "order_placed", "customer_id": "c2", "occurred_at": base + 2 * 86_400_000 + 7,
         "order_id": "o3", "amount": 5.0},  # late, out of order
        {"event_id": "e", "type": "order_placed", "customer_id": "c2", "occurred_at": base + 2 * 86_400_000 + 9,
         "order_id": "o4", "amount": 1.5},  # same day as the late one
        {"event_id": "f", "type": "order_refunded", "customer_id": "c2", "occurred_at": base + 6 * 86_400_000,
         "order_id": "o2", "amount": 30.0},  # not a purchase
    ]
    plain = replay_lines([orjson.dumps(ev) for ev in events])
    assert all(r["clv"] is None for r in plain["customers"].values())
    doc = replay(events, None)
    assert doc["customers"]["c1"]["clv"] is None
    clv = doc["customers"]["c2"]["clv"]
    assert clv["model_version"] == "test-1" and clv["horizon_days"] == 180
    assert_same(doc, oracle_document(events, None, clv_model=MODEL, horizon_days=180))


def test_the_order_days_survive_a_restart_from_state() -> None:
    base = 1_704_067_200_000
    lines = [orjson.dumps({"event_id": f"e{i}", "type": "order_placed", "customer_id": "c",
                           "occurred_at": base + (i * 7 % 5) * 86_400_000 + i, "order_id": f"o{i}",
                           "amount": 10.0 + i}) for i in range(8)]
    events = [validate_bytes(x) for x in lines]
    whole = Unit(CONFIG)
    half = Unit(CONFIG)
    for ev in events[:4]:
        whole.offer(ev)  # type: ignore[arg-type]
        half.offer(ev)  # type: ignore[arg-type]
    back = decode_customer(encode_customer(half.customers["c"]))
    restored = Unit.from_parts(decode_unit(encode_unit(half.core(), 0, 0)).core, [back], [], CONFIG)
    for ev in events[4:]:
        whole.offer(ev)  # type: ignore[arg-type]
        restored.offer(ev)  # type: ignore[arg-type]
    assert restored.customers["c"].order_day_values == whole.customers["c"].order_day_values
    assert restored.record("c") == whole.record("c")
    assert restored.record("c")["clv"] is not None  # type: ignore[index]
