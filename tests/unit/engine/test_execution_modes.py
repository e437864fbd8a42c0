"""The oracle's properties in every way the engine runs (bytewax-style execution modes).

The same random streams (tests/strategies.py) go through:
- the replay (one unit, the whole file);
- a `PartitionProcessor` fed in batches cut where hypothesis chooses;
- a crash: batches applied and their state records kept, one more batch whose outputs were
  published but whose state was lost, then a processor restored from the kept state records and
  the whole partition delivered again (offsets at or below the state's are skipped);
- a split into N units (as the re-keyed topic splits customers) with the KPI partials merged.

Every mode must give the oracle's customers, tier changes, alerts, counts and store KPIs.
"""

from __future__ import annotations

import zlib
from itertools import pairwise
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_app.audit import unique
from stream_app.engine import DEFAULT_CONFIG, KpiPartial, Unit
from stream_app.engine.clock import format_instant
from stream_app.engine.events import TOPIC_OF_TYPE, Event
from stream_app.engine.formats import encode_rekeyed
from stream_app.engine.segments import segment_set
from stream_app.stream.processor import PartitionProcessor
from stream_app.validation import validate_bytes
from tests.helpers.compare import alerts_without_ids, assert_same, merged_kpis
from tests.oracle import oracle_document, oracle_unit
from tests.strategies import event_streams

MODES = settings(max_examples=60, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def messages(events: list[dict[str, Any]]) -> list[tuple[int, bytes]]:
    """The re-keyed partition as ingest writes it (validated events), at offsets 0, 1, ..."""
    out = []
    for i, ev in enumerate(events):
        valid = validate_bytes(orjson.dumps(ev), TOPIC_OF_TYPE[ev["type"]])
        assert isinstance(valid, Event), valid
        out.append((i, encode_rekeyed(valid)))
    return out


def cuts(draw: st.DrawFn, n: int) -> list[int]:
    """Batch boundaries in [0, n]."""
    inner = draw(st.lists(st.integers(0, n), max_size=6))
    return sorted({0, n, *inner})


def batches(msgs: list[tuple[int, bytes]], bounds: list[int]) -> list[list[tuple[int, bytes | None]]]:
    return [list(msgs[a:b]) for a, b in pairwise(bounds)]


def document(unit: Unit, tier_changes: list[dict[str, Any]], alerts: list[dict[str, Any]],
             segment_changes: list[dict[str, Any]]) -> dict[str, Any]:
    """The parts of the §8 document a processing unit produces, at its final watermark."""
    wm = unit.watermark
    return {
        "segment_changes": segment_changes,
        "as_of": format_instant(wm) if wm is not None else None,
        "customers": {cid: unit.record(cid, wm) for cid in sorted(unit.customers)},
        "tier_changes": tier_changes,
        "alerts": alerts_without_ids(alerts),
        "counts": {"applied": unit.applied, "duplicates": unit.duplicates},
        "kpis": unit.kpis.document(wm),
    }


def expected(events: list[dict[str, Any]]) -> dict[str, Any]:
    doc = oracle_document(events)
    return {"segment_changes": doc["segment_changes"],
            "as_of": doc["as_of"], "customers": doc["customers"], "tier_changes": doc["tier_changes"],
            "alerts": alerts_without_ids(doc["alerts"]),
            "counts": {k: doc["counts"][k] for k in ("applied", "duplicates")}, "kpis": doc["kpis"]}


@MODES
@given(st.data())
def test_processor_in_batches_cut_anywhere_matches_oracle(data: st.DataObject) -> None:
    events = data.draw(event_streams())
    msgs = messages(events)
    proc = PartitionProcessor(0, Unit(DEFAULT_CONFIG))
    tcs: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    scs: list[dict[str, Any]] = []
    for batch in batches(msgs, cuts(data.draw, len(msgs))):
        out = proc.process(batch)
        tcs += out.tier_changes
        alerts += out.alerts
        scs += out.segment_changes
    assert proc.offset == len(msgs) - 1
    assert_same(document(proc.unit, tcs, alerts, scs), expected(events))


@MODES
@given(st.data())
def test_crash_then_restore_from_state_records_and_redelivery_matches_oracle(data: st.DataObject) -> None:
    events = data.draw(event_streams())
    msgs = messages(events)
    parts = batches(msgs, cuts(data.draw, len(msgs)))
    crash_at = data.draw(st.integers(0, len(parts)))
    proc = PartitionProcessor(0, Unit(DEFAULT_CONFIG))
    committed: dict[bytes, bytes] = {}
    tcs: list[dict[str, Any]] = []
    alerts: list[dict[str, Any]] = []
    scs: list[dict[str, Any]] = []
    for i, batch in enumerate(parts[:crash_at + 1]):
        out = proc.process(batch)
        tcs += out.tier_changes       # outputs are published first ...
        alerts += out.alerts
        scs += out.segment_changes
        if i == crash_at:
            break                     # ... and the crash takes this batch's state
        for key, value in out.state:
            if value is None:
                committed.pop(key, None)
            else:
                committed[key] = value
    restored = PartitionProcessor.restore(0, dict(committed), DEFAULT_CONFIG)
    # the whole partition again: what the state already holds is skipped by offset
    for batch in batches(msgs, cuts(data.draw, len(msgs))):
        out = restored.process(batch)
        tcs += out.tier_changes
        alerts += out.alerts
        scs += out.segment_changes
    # at-least-once: a re-published record and a second identical one (an id applied again after
    # it was forgotten, SPEC §2) look the same, so both sides are compared without exact repeats
    want = expected(events)
    want["tier_changes"], want["alerts"] = unique(want["tier_changes"]), unique(want["alerts"])
    want["segment_changes"] = unique(want["segment_changes"])
    assert_same(document(restored.unit, unique(tcs), unique(alerts), unique(scs)), want)


@MODES
@given(st.data())
def test_split_into_units_with_merged_kpis_matches_per_unit_oracles(data: st.DataObject) -> None:
    events = data.draw(event_streams())
    n = data.draw(st.integers(2, 4))
    split: dict[int, list[dict[str, Any]]] = {p: [] for p in range(n)}
    for ev in events:  # every customer (guest orders: order) lives in exactly one unit
        key = ev.get("customer_id") or ev["order_id"]
        split[zlib.crc32(key.encode()) % n].append(ev)
    merged = KpiPartial(DEFAULT_CONFIG.order_window_days, segment_names=segment_set(DEFAULT_CONFIG).names)
    marks = []
    oracle_units = []
    for p, evs in split.items():
        proc = PartitionProcessor(p, Unit(DEFAULT_CONFIG))
        tcs: list[dict[str, Any]] = []
        alerts: list[dict[str, Any]] = []
        scs: list[dict[str, Any]] = []
        for batch in batches(messages(evs), cuts(data.draw, len(evs))):
            out = proc.process(batch)
            tcs += out.tier_changes
            alerts += out.alerts
            scs += out.segment_changes
        got, want = document(proc.unit, tcs, alerts, scs), expected(evs)
        assert_same({k: v for k, v in got.items() if k != "kpis"}, {k: v for k, v in want.items() if k != "kpis"})
        merged.merge(proc.unit.kpis)
        if proc.unit.watermark is not None:
            marks.append(proc.unit.watermark)
        oracle_units.append(oracle_unit(evs))
    # the store's KPIs: every unit's partial read at the largest watermark, added up (SPEC §7)
    as_of = max(marks) if marks else None
    assert_same(merged.document(as_of), merged_kpis([u.kpis(as_of) for u in oracle_units], as_of))
