"""engine/records.py: the output TypedDicts have exactly the keys of the JSON Schemas (the contract),
the engine's records exactly the TypedDicts' keys, and `Unit.drain` hands over everything."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.engine import Unit
from stream_app.engine.clock import DAY, HOUR, parse_rfc3339
from stream_app.engine.events import TOPIC_OF_TYPE, Event
from stream_app.engine.records import (
    Alert,
    CustomerRecord,
    EmailCounts,
    Engagement30d,
    KpiDocument,
    Messages30d,
    Outputs,
    PushCounts,
    SegmentChange,
    SmsCounts,
    TierChange,
)
from tests.helpers.schemas import SCHEMA_DOCS

T0 = parse_rfc3339("2024-03-01T10:00:00Z")
assert T0 is not None


def _object(name: str, *path: str) -> dict[str, Any]:
    """The object schema at `path` below schema `name` (local `#/$defs/...` refs followed)."""
    doc = SCHEMA_DOCS[name]
    node = doc
    for key in path:
        node = node["properties"][key]
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            node = doc["$defs"][ref.removeprefix("#/$defs/")]
    return node


CASES = [
    (TierChange, "tier_change", ()),
    (Alert, "alert", ()),
    (CustomerRecord, "customer_record", ()),
    (Messages30d, "customer_record", ("messages_30d",)),
    (EmailCounts, "customer_record", ("messages_30d", "email")),
    (PushCounts, "customer_record", ("messages_30d", "push")),
    (SmsCounts, "customer_record", ("messages_30d", "sms")),
    (KpiDocument, "kpis", ()),
    (SegmentChange, "segment_change", ()),
    (Engagement30d, "kpis", ("engagement_30d",)),
]


@pytest.mark.parametrize(("typed", "schema", "path"), CASES, ids=[c[0].__name__ for c in CASES])
def test_typed_dict_keys_are_the_schema_properties(typed: Any, schema: str, path: tuple[str, ...]) -> None:
    node = _object(schema, *path)
    assert node.get("additionalProperties") is False
    assert list(typed.__annotations__) == list(node["properties"])  # the same keys, in the same order
    assert typed.__required_keys__ == frozenset(node.get("required", ()))
    assert typed.__optional_keys__ == frozenset(node["properties"]) - frozenset(node.get("required", ()))


def _ev(eid: str, etype: str, cid: str | None, t: int, **kw: Any) -> Event:
    return Event(eid, etype, TOPIC_OF_TYPE[etype], cid, t, **kw)


def _busy_unit(log_ids: bool) -> Unit:
    u = Unit()
    if log_ids:
        u.log_ids()
    for i in range(12):  # silver, then gold: tier changes; a checkout left open: a timer
        u.offer(_ev(f"o{i}", "order_placed", "ann", T0 + i * HOUR, order_id=f"o{i}", amount=200.0))
    u.offer(_ev("c", "checkout_started", "ann", T0 + 12 * HOUR, cart_id="k"))
    u.offer(_ev("r", "review", "ann", T0 + 13 * HOUR, rating=1))
    u.offer(_ev("v", "page_view", "bob", T0 + 14 * HOUR, channel="web"))
    u.offer(_ev("s", "survey_response", "bob", T0 + 14 * HOUR, nps=10))  # a promoter, until erased
    u.offer(_ev("x", "customer_erased", "bob", T0 + 15 * HOUR))
    u.advance(T0 + 40 * DAY)  # the cart timer fires, sweeps demote, churn alerts, ids are forgotten
    return u


def test_the_engine_records_have_the_typed_keys() -> None:
    u = _busy_unit(False)
    out = u.drain()
    assert out.tier_changes and all(list(tc) == list(TierChange.__annotations__) for tc in out.tier_changes)
    assert {a["type"] for a in out.alerts} == {"negative_feedback", "abandoned_cart", "churn_risk"}
    assert all(list(a) == list(Alert.__annotations__) for a in out.alerts)
    assert out.segment_changes
    assert all(list(sc) == list(SegmentChange.__annotations__) for sc in out.segment_changes)
    record = u.record("ann")
    assert record is not None and list(record) == list(CustomerRecord.__annotations__)
    assert list(record["messages_30d"]) == list(Messages30d.__annotations__)
    doc = u.kpis.document(u.watermark)
    assert list(doc) == list(KpiDocument.__annotations__)
    assert list(doc["engagement_30d"]) == list(Engagement30d.__annotations__)


@pytest.mark.parametrize("log_ids", [False, True])
def test_drain_hands_over_everything_and_leaves_nothing(log_ids: bool) -> None:
    u = _busy_unit(log_ids)
    out = u.drain()
    assert isinstance(out, Outputs)
    assert out.tier_changes and out.alerts and out.changed == {"ann"}
    assert (out.erased, out.erased_tiers) == (["bob"], [0])
    if log_ids:
        applied = [eid for eid, at in out.id_log if at is not None]
        assert len(applied) == u.applied and {eid for eid, at in out.id_log if at is None} == set(applied)
    else:
        assert out.id_log == []
    assert out.segment_changes and {sc["reason"] for sc in out.segment_changes} == {"event", "sweep", "erasure"}
    assert u.drain() == Outputs([], [], set(), [], [], [], [])
    assert (u.tier_changes, u.alerts, u.changed, u.erased, u.erased_tiers) == ([], [], set(), [], [])
