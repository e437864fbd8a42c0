"""`engagement audit`'s comparison (stream_app/audit.py `compare`), without a broker."""

from __future__ import annotations

from typing import Any

from stream_app.audit import compare

PROMOTE = {"customer_id": "c", "from_tier": "bronze", "to_tier": "silver", "score": 21.0,
           "at": "2024-05-01T00:00:00Z", "reason": "event"}
DEMOTE = {**PROMOTE, "from_tier": "silver", "to_tier": "bronze", "score": 1.0, "at": "2024-09-01T00:00:00Z",
          "reason": "sweep"}
RECORD = {"customer_id": "c", "score": 1.0}


def want(tier_changes: list[dict[str, Any]], erased: set[str] | None = None) -> dict[str, Any]:
    return {"records": {"c": RECORD}, "tier_changes": {"c": tier_changes}, "alerts": {},
            "erased": erased or set(), "kpis": {"orders": 1}}


def test_an_event_reapplied_after_its_id_was_forgotten_repeats_a_tier_change_on_both_sides() -> None:
    # the replay of the re-keyed topic applies a re-sent event again (SPEC §2) and repeats an
    # identical promotion; the stream published it (at least) once: not a difference
    expected = want([PROMOTE, DEMOTE, PROMOTE])
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE, DEMOTE]}, {}, [{"orders": 1}]) == []
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE, DEMOTE, PROMOTE, DEMOTE]}, {}, [{"orders": 1}]) == []


def test_missing_or_different_publications_are_differences() -> None:
    expected = want([PROMOTE, DEMOTE])
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE]}, {}, [{"orders": 1}])
    assert compare(expected, {"c": {**RECORD, "score": 2.0}}, {"c": [PROMOTE, DEMOTE]}, {}, [{"orders": 1}])
    assert compare(expected, {"c": RECORD}, {"c": [PROMOTE, DEMOTE]}, {}, [{"orders": 2}])


def test_an_erased_customer_needs_a_tombstone() -> None:
    expected = {**want([]), "records": {}, "tier_changes": {}, "erased": {"gone"}}
    assert compare(expected, {"gone": None}, {}, {}, [{"orders": 1}]) == []
    assert compare(expected, {}, {}, {}, [{"orders": 1}]) == [
        "score record 'gone': erased in the replay, but no tombstone was published"]
