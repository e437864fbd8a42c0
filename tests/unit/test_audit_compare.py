"""`engagement audit`'s comparison (stream_app/audit.py `compare`), without a broker."""

from __future__ import annotations

from typing import Any

import pytest

from stream_app.audit import compare, expected_outputs

PROMOTE = {"customer_id": "c", "from_tier": "bronze", "to_tier": "silver", "score": 21.0,
           "at": "2024-05-01T00:00:00Z", "reason": "event"}
DEMOTE = {**PROMOTE, "from_tier": "silver", "to_tier": "bronze", "score": 1.0, "at": "2024-09-01T00:00:00Z",
          "reason": "sweep"}
RECORD = {"customer_id": "c", "score": 1.0}


def want(tier_changes: list[dict[str, Any]], erased: set[str] | None = None) -> dict[str, Any]:
    return {"records": {"c": RECORD}, "tier_changes": {"c": tier_changes}, "alerts": {}, "segment_changes": {},
            "erased": erased or set(), "kpis": {"orders": 1}}


def test_an_event_reapplied_after_its_id_was_forgotten_repeats_a_tier_change_on_both_sides() -> None:
    # the replay of the re-keyed topic applies a re-sent event again (SPEC §2) and repeats an
    # identical promotion; the stream published it (at least) once: not a difference
    expected = want([PROMOTE, DEMOTE, PROMOTE])
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE, DEMOTE]}, {}, {}, [{"orders": 1}]) == []
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE, DEMOTE, PROMOTE, DEMOTE]}, {}, {}, [{"orders": 1}]) == []


def test_missing_or_different_publications_are_differences() -> None:
    expected = want([PROMOTE, DEMOTE])
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE]}, {}, {}, [{"orders": 1}])
    assert compare(expected, {"c": {**RECORD, "score": 2.0}}, {"c": [PROMOTE, DEMOTE]}, {}, {}, [{"orders": 1}])
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE, DEMOTE]}, {}, {}, [{"orders": 2}])


def test_an_erased_customer_needs_a_tombstone() -> None:
    expected = {**want([]), "records": {}, "tier_changes": {}, "erased": {"gone"}}
    assert compare(expected, {"gone": None}, {}, {}, {}, [{"orders": 1}]) == []
    assert compare(expected, {}, {}, {}, {}, [{"orders": 1}]) == [
        "score record 'gone': erased in the replay, but no tombstone was published"]


ENTER = {"customer_id": "c", "segment": "loyal", "change": "entered", "at": "2024-05-01T00:00:00Z", "reason": "event"}
LEAVE = {**ENTER, "change": "left", "at": "2025-05-01T00:00:00Z", "reason": "sweep"}


def test_segment_changes_are_compared_per_customer_with_repeats_allowed() -> None:
    expected = {**want([]), "segment_changes": {"c": [ENTER, LEAVE]}}
    kpis = [{"orders": 1}]
    assert compare(expected, {"c": RECORD}, {}, {}, {"c": [ENTER, ENTER, LEAVE]}, kpis) == []  # at-least-once
    assert compare(expected, {"c": RECORD}, {}, {}, {"c": [ENTER]}, kpis) == [
        f"segment changes of 'c': expected {[ENTER, LEAVE]}, published {[ENTER]}"]
    assert compare(expected, {"c": RECORD}, {}, {}, {"c": [LEAVE, ENTER]}, kpis)  # out of order
    assert compare(expected, {"c": RECORD}, {}, {}, {"c": [ENTER, {**LEAVE, "reason": "event"}]}, kpis)
    assert compare(expected, {"c": RECORD}, {}, {}, {"c": [ENTER, LEAVE], "d": [{**ENTER, "customer_id": "d"}]},
                   kpis)  # published for a customer the replay never put in a segment


def test_expected_outputs_hold_each_partitions_segment_changes_per_customer() -> None:
    from types import SimpleNamespace

    from stream_app.config import Settings
    from stream_app.engine import Unit
    from stream_app.stream.processor import PartitionProcessor
    from tests.unit.stream.test_processor import messages

    settings = Settings()
    msgs = messages(600)
    want_outputs = expected_outputs(settings, {0: [SimpleNamespace(value=v) for _, v in msgs]})
    out = PartitionProcessor(0, Unit(settings.engine_config())).process(msgs)
    assert out.segment_changes
    by_customer: dict[str, list[Any]] = {}
    for sc in out.segment_changes:
        by_customer.setdefault(sc["customer_id"], []).append(sc)
    assert want_outputs["segment_changes"] == by_customer
    assert want_outputs["kpis"]["segments"] and all(n >= 0 for n in want_outputs["kpis"]["segments"].values())


def test_a_definitions_change_is_reported_as_such_not_as_a_mismatch(capsys: pytest.CaptureFixture[str]) -> None:
    expected = {**want([]), "segment_changes": {"c": [ENTER, LEAVE]}}
    redefined = {**ENTER, "change": "left", "at": "2024-06-01T00:00:00Z", "reason": "definitions"}
    kpis = [{"orders": 1}]
    # the stream's changes were made under the old definitions, then re-evaluated at a restart
    assert compare(expected, {"c": RECORD}, {}, {}, {"c": [ENTER, redefined]}, kpis) == []
    assert "segment definitions changed at a restart (1 segment change(s)" in capsys.readouterr().err
    # held segments are still compared
    assert compare(expected, {"c": {**RECORD, "segments": ["other"]}}, {}, {}, {"c": [redefined]}, kpis)
