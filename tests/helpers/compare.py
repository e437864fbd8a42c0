"""Comparing engine output with the oracle's: exact structure, floats within 1e-9."""

from __future__ import annotations

import math
from typing import Any

from tests.oracle import format_instant

KPI_COUNTS = ("orders", "guest_orders", "identified_orders", "revenue", "customers", "repeat_customers",
              "survey_responses", "promoters", "passives", "detractors", "reviews", "satisfied_reviews")
ENGAGEMENT_COUNTS = ("email_sent", "email_opened", "email_clicked", "push_sent", "push_opened", "sms_sent",
                     "sms_clicked", "active_customers", "omnichannel_customers")


def assert_same(actual: Any, expected: Any, path: str = "$") -> None:
    """Exact structural equality, floats within rel 1e-9 / abs 1e-6, ints must stay ints."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert sorted(actual) == sorted(expected), (
            f"{path}: keys differ: extra {sorted(set(actual) - set(expected))}, "
            f"missing {sorted(set(expected) - set(actual))}"
        )
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), (
            f"{path}: {len(actual)} items, expected {len(expected)}\n"
            f"  actual:   {actual!r}\n  expected: {expected!r}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, float):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), (
            f"{path}: expected a number {expected!r}, got {actual!r}"
        )
        assert math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-6), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, int) and not isinstance(expected, bool):
        assert type(actual) is int and actual == expected, f"{path}: {actual!r} != {expected!r}"
    else:
        assert type(actual) is type(expected) and actual == expected, f"{path}: {actual!r} != {expected!r}"


def alerts_without_ids(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The oracle numbers its alerts; the engine hashes them. Everything else must agree."""
    return [{k: v for k, v in a.items() if k != "alert_id"} for a in alerts]


def without_alert_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """A replay document whose alerts are compared without their ids."""
    return {**doc, "alerts": alerts_without_ids(doc["alerts"])}


def merged_kpis(parts: list[dict[str, Any]], as_of: int | None) -> dict[str, Any]:
    """SPEC §7: per-partition counts add up (every customer lives in one partition)."""
    total = {k: sum(p[k] for p in parts) for k in KPI_COUNTS}
    total["revenue"] = math.fsum(p["revenue"] for p in parts)

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    rating_sum = math.fsum((p["average_rating"] or 0) * p["reviews"] for p in parts)
    eng = {k: sum(p["engagement_30d"][k] for p in parts) for k in ENGAGEMENT_COUNTS}
    by_channel: dict[str, int] = {}
    for p in parts:
        for ch, n in p["engagement_30d"]["customers_by_channel"].items():
            by_channel[ch] = by_channel.get(ch, 0) + n
    return {"as_of": format_instant(as_of), "window_days": 365, **total,
            "guest_checkout_rate": ratio(total["guest_orders"], total["orders"]),
            "average_order_value": ratio(total["revenue"], total["orders"]),
            "purchase_frequency": ratio(total["identified_orders"], total["customers"]),
            "repeat_purchase_rate": ratio(total["repeat_customers"], total["customers"]),
            "nps": ratio(100 * (total["promoters"] - total["detractors"]), total["survey_responses"]),
            "csat": ratio(total["satisfied_reviews"], total["reviews"]),
            "average_rating": ratio(rating_sum, total["reviews"]),
            "segments": {name: sum(p["segments"][name] for p in parts) for name in parts[0]["segments"]}
            if parts else {},
            "engagement_30d": {
                "window_days": 30, **eng,
                "email_open_rate": ratio(eng["email_opened"], eng["email_sent"]),
                "email_click_rate": ratio(eng["email_clicked"], eng["email_sent"]),
                "push_open_rate": ratio(eng["push_opened"], eng["push_sent"]),
                "sms_click_rate": ratio(eng["sms_clicked"], eng["sms_sent"]),
                "customers_by_channel": by_channel,
                "omnichannel_rate": ratio(eng["omnichannel_customers"], eng["active_customers"]),
            }}
