"""The demo's live view: feedback and engagement KPI lines, and erased customers."""

from __future__ import annotations

from typing import Any

from stream_app.report import DemoState, render_compact, render_full


def _kpis(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "as_of": "2024-06-30T00:00:00Z", "window_days": 365, "orders": 3, "revenue": 30.0,
        "average_order_value": 10.0, "customers": 2, "repeat_purchase_rate": 0.5, "purchase_frequency": 1.5,
        "guest_checkout_rate": 0.0,
        # 8 responses: 4 promoters, 3 detractors -> 100 * (4 - 3) / 8 = 12.5; 4 of 5 reviews satisfied
        "survey_responses": 8, "promoters": 4, "passives": 1, "detractors": 3, "nps": 12.5,
        "reviews": 5, "satisfied_reviews": 4, "csat": 0.8, "average_rating": 3.8,
        "engagement_30d": {"window_days": 30, "email_sent": 200, "email_opened": 50, "email_open_rate": 0.25,
                           "active_customers": 60, "omnichannel_customers": 1234, "omnichannel_rate": 1234 / 60},
    }
    doc.update(over)
    return doc


def _engagement_line(st: DemoState) -> str:
    lines = [x for x in render_compact(st).splitlines() if x.startswith("  engagement: ")]
    assert len(lines) == 1, render_compact(st)
    return lines[0]


def test_compact_view_shows_nps_csat_open_rate_and_omnichannel() -> None:
    st = DemoState(kpis=_kpis())
    assert _engagement_line(st) == ("  engagement: NPS +12.5 | CSAT 80.0 % | email open rate (30 d) 25.0 % | "
                                    "omnichannel customers (30 d) 1,234")
    st.kpis = _kpis(nps=-40.0)
    assert "NPS -40.0 |" in _engagement_line(st)


def test_null_ratios_read_n_a_and_missing_fields_a_dash() -> None:
    st = DemoState(kpis=_kpis(nps=None, csat=None, engagement_30d={"window_days": 30, "email_open_rate": None}))
    assert _engagement_line(st) == ("  engagement: NPS n/a | CSAT n/a | email open rate (30 d) n/a | "
                                    "omnichannel customers (30 d) —")
    # a worker from before the feedback and messaging KPIs: the rest of the view still works
    old = {k: v for k, v in _kpis().items() if k not in ("nps", "csat", "engagement_30d")}
    st = DemoState(kpis=old)
    assert _engagement_line(st) == ("  engagement: NPS — | CSAT — | email open rate (30 d) — | "
                                    "omnichannel customers (30 d) —")
    assert "  kpis: orders 3 | revenue 30.00 |" in render_compact(st)


def test_full_view_lists_the_engagement_kpis() -> None:
    view = render_full(DemoState(kpis=_kpis()), "header").splitlines()
    assert any(line.split() == ["NPS", "+12.5"] for line in view), view
    assert any(line.split() == ["CSAT", "80.0", "%"] for line in view), view
    assert any(line.split() == ["email", "open", "rate", "(30", "d)", "25.0", "%"] for line in view), view
    assert any(line.split() == ["omnichannel", "customers", "(30", "d)", "1,234"] for line in view), view


def test_a_tombstone_removes_an_erased_customer_from_the_tiers() -> None:
    st = DemoState()
    st.on_score({"customer_id": "c1", "tier": "gold", "events_total": 7})
    st.on_score({"customer_id": "c2", "tier": "bronze", "events_total": 2})
    st.on_tombstone("c1")
    st.on_tombstone("never-seen")  # an erasure of an unknown customer changes nothing
    assert st.tier_counts()["gold"] == 0 and st.tier_counts()["bronze"] == 1
    assert (st.erased, st.scored) == (1, 9)
    assert "| erased 1" in render_compact(st).splitlines()[0]
    st.on_score({"customer_id": "c1", "tier": "bronze", "events_total": 1})  # starts afresh
    assert st.tier_counts()["bronze"] == 2 and st.scored == 10
