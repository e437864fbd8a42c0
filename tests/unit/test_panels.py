"""What the dashboard and the report show (stream_app/panels.py): day counts, recent movements,
CLV histograms, merging the workers' overviews, and a replay's overview against its document."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from stream_app.panels import (
    CLV_EDGES,
    P_ALIVE_EDGES,
    LiveActivity,
    Trends,
    clv_summary,
    merge_overviews,
    movements,
    overview,
    replay_overview,
)
from stream_app.replay import replay_lines
from stream_app.simulate import Simulator


def tc(at: str, before: str | None, after: str, cid: str = "c1") -> dict[str, Any]:
    return {"customer_id": cid, "from_tier": before, "to_tier": after, "score": 1.0, "at": at, "reason": "event"}


def sc(at: str, segment: str, change: str, cid: str = "c1") -> dict[str, Any]:
    return {"customer_id": cid, "segment": segment, "change": change, "at": at, "reason": "event"}


def alert(at: str, kind: str = "churn_risk", cid: str = "c1") -> dict[str, Any]:
    return {"alert_id": f"{cid}-{at}-{kind}", "type": kind, "severity": "medium", "customer_id": cid, "at": at,
            "details": {}}


def test_day_counts_cover_every_day_from_the_first_to_the_last() -> None:
    t = Trends()
    t.add_tier_changes([tc("2024-01-01T10:00:00Z", None, "bronze"), tc("2024-01-03T00:00:00Z", "bronze", "silver"),
                        tc("2024-01-03T23:59:59Z", "gold", "silver")])
    t.add_alerts([alert("2024-01-02T00:00:00Z"), alert("2024-01-02T05:00:00Z", "abandoned_cart")])
    t.add_segment_changes([sc("2024-01-04T00:00:00Z", "loyal", "entered"), sc("2024-01-04T00:00:00Z", "mine", "left")])
    doc = t.to_json(["loyal", "at_risk"])
    assert doc["days"] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04"]
    assert doc["tier_changes"] == {"new": [1, 0, 0, 0], "promoted": [0, 0, 1, 0], "demoted": [0, 0, 1, 0]}
    assert doc["alerts"] == {"churn_risk": [0, 1, 0, 0], "abandoned_cart": [0, 1, 0, 0], "negative_feedback": [0] * 4}
    # the defined segments in definition order (zeros included), then any other seen
    assert list(doc["segments"]) == ["loyal", "at_risk", "mine"]
    assert doc["segments"]["loyal"] == {"entered": [0, 0, 0, 1], "left": [0] * 4}
    assert doc["segments"]["mine"] == {"entered": [0] * 4, "left": [0, 0, 0, 1]}


def test_nothing_yet_is_empty_series() -> None:
    doc = Trends().to_json(["loyal"])
    assert doc["days"] == [] and doc["segments"] == {"loyal": {"entered": [], "left": []}}
    assert movements(doc, None)["segments"] == {}


def test_a_bounded_trend_forgets_old_days() -> None:
    t = Trends(keep_days=3)
    t.add_alerts([alert(f"2024-01-0{d}T00:00:00Z") for d in range(1, 7)])
    assert t.to_json()["days"] == ["2024-01-04", "2024-01-05", "2024-01-06"]


def test_movements_are_the_last_seven_days_up_to_as_of() -> None:
    t = Trends()
    t.add_segment_changes([sc(f"2024-01-{d:02d}T12:00:00Z", "loyal", "entered") for d in range(1, 21)])
    t.add_segment_changes([sc("2024-01-20T12:00:00Z", "loyal", "left"), sc("2024-01-13T12:00:00Z", "loyal", "left")])
    t.add_tier_changes([tc("2024-01-14T00:00:00Z", "silver", "gold"), tc("2024-01-20T00:00:00Z", "gold", "bronze")])
    m = movements(t.to_json(), "2024-01-20T13:00:00Z")
    assert (m["from"], m["to"], m["days"]) == ("2024-01-14", "2024-01-20", 7)
    assert m["segments"] == {"loyal": {"entered": 7, "left": 1}}  # the 13th is out
    assert m["tier_changes"] == {"new": 0, "promoted": 1, "demoted": 1}


def test_clv_is_none_without_a_model() -> None:
    assert clv_summary([None, None]) is None
    assert clv_summary([]) is None


def test_clv_histograms_count_every_prediction_once() -> None:
    preds = [{"p_alive": p, "expected_orders": 1.0, "expected_order_value": 10.0, "predicted_clv": v,
              "horizon_days": 365, "model_version": "m1"}
             for p, v in [(0.0, 0.0), (0.05, 0.5), (0.1, 1.0), (0.95, 3.0), (1.0, 99_999.0), (0.5, 250_000.0)]]
    s = clv_summary([*preds, None])
    assert s is not None
    assert (s["customers"], s["model_version"], s["horizon_days"]) == (6, "m1", 365)
    assert s["p_alive"]["edges"] == list(P_ALIVE_EDGES)
    # [0, .1): 0 and 0.05; [.1, .2): 0.1; [.5, .6): 0.5; [.9, 1.0] closed: 0.95 and 1.0
    assert s["p_alive"]["counts"] == [2, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0]
    counts = dict(zip(s["predicted_clv"]["edges"], s["predicted_clv"]["counts"], strict=True))
    assert counts[0.0] == 2 and counts[1.0] == 1 and counts[2.0] == 1 and counts[50_000.0] == 1
    assert counts[CLV_EDGES[-1]] == 1  # past the last edge: the open-ended bin
    assert sum(s["predicted_clv"]["counts"]) == 6
    assert s["total_predicted_clv"] == pytest.approx(350_003.5)
    assert s["sum_p_alive"] == pytest.approx(2.6)


def test_live_activity_keeps_the_latest_alerts_newest_first() -> None:
    a = LiveActivity(latest=3)
    a.record([], [alert(f"2024-01-01T0{h}:00:00Z") for h in range(5)], [])
    assert [x["at"] for x in a.newest_alerts()] == ["2024-01-01T04:00:00Z", "2024-01-01T03:00:00Z",
                                                    "2024-01-01T02:00:00Z"]
    assert a.trends.to_json()["alerts"]["churn_risk"] == [5]


def _worker_overview(partitions: list[int], tiers: dict[str, int], alerts: list[dict[str, Any]],
                     clv: dict[str, Any] | None) -> dict[str, Any]:
    t = Trends()
    t.add_alerts(alerts)
    return overview(as_of="2024-01-05T00:00:00Z", tiers=tiers, latest_alerts=sorted(alerts, key=lambda a: a["at"])[::-1],
                    trends=t.to_json(), clv=clv, scope={"partitions": partitions, "partition_count": 4, "workers": 1})


def test_the_workers_overviews_add_up() -> None:
    pred = {"p_alive": 0.5, "expected_orders": 2.0, "expected_order_value": 5.0, "predicted_clv": 10.0,
            "horizon_days": 365, "model_version": "m"}
    a = _worker_overview([0, 1], {"bronze": 3, "silver": 1, "gold": 0, "platinum": 0},
                         [alert("2024-01-01T00:00:00Z"), alert("2024-01-05T00:00:00Z")], clv_summary([pred]))
    b = _worker_overview([2, 3], {"bronze": 1, "silver": 0, "gold": 2, "platinum": 1},
                         [alert("2024-01-03T00:00:00Z", "abandoned_cart")], clv_summary([pred, pred]))
    m = merge_overviews([a, b], "2024-01-05T00:00:00Z")
    assert m["tiers"] == {"bronze": 4, "silver": 1, "gold": 2, "platinum": 1} and m["customers"] == 8
    assert m["scope"] == {"partitions": [0, 1, 2, 3], "partition_count": 4, "workers": 2}
    assert [x["at"][:10] for x in m["latest_alerts"]] == ["2024-01-05", "2024-01-03", "2024-01-01"]
    assert m["trends"]["days"] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert m["trends"]["alerts"]["churn_risk"] == [1, 0, 0, 0, 1]
    assert m["trends"]["alerts"]["abandoned_cart"] == [0, 0, 1, 0, 0]
    assert m["movements"]["alerts"] == {"churn_risk": 2, "abandoned_cart": 1, "negative_feedback": 0}
    assert m["clv"]["customers"] == 3 and m["clv"]["total_predicted_clv"] == 30.0
    assert sum(m["clv"]["p_alive"]["counts"]) == 3
    # one worker without a model: the other's predictions stand
    assert merge_overviews([a, {**b, "clv": None}], None)["clv"]["customers"] == 1


def test_a_replays_overview_agrees_with_its_document() -> None:
    doc = replay_lines(Simulator(customers=200, seed=3).lines(4000))
    ov = replay_overview(doc)
    assert ov["as_of"] == doc["as_of"] and ov["scope"] == {"source": "replay"}
    tiers = Counter(r["tier"] for r in doc["customers"].values())
    assert ov["tiers"] == {t: tiers[t] for t in ("bronze", "silver", "gold", "platinum")}
    assert ov["customers"] == len(doc["customers"])
    tr = ov["trends"]
    assert sum(sum(s) for s in tr["tier_changes"].values()) == len(doc["tier_changes"])
    assert sum(sum(s) for s in tr["alerts"].values()) == len(doc["alerts"])
    for name in doc["kpis"]["segments"]:
        for change in ("entered", "left"):
            assert sum(tr["segments"][name][change]) == sum(
                1 for c in doc["segment_changes"] if c["segment"] == name and c["change"] == change)
    assert list(tr["segments"])[:len(doc["kpis"]["segments"])] == list(doc["kpis"]["segments"])
    assert ov["latest_alerts"] == sorted(doc["alerts"], key=lambda a: a["at"], reverse=True)[:20]
    assert ov["clv"] is None  # no model in a replay without one (SPEC §11)
