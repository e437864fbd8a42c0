"""The demo's live view: feedback and engagement KPI lines, segment sizes, and erased customers."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from stream_app.engine.config import TIERS
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


#: the KPI document's `segments` (SPEC §10): the built-in segments, in definition order
SEGMENTS = {"new_customers": 12, "loyal": 40, "champions": 3, "at_risk": 7, "lapsed": 2, "window_shoppers": 55,
            "promoters": 1234, "detractors": 12, "omnichannel": 80, "vip_slipping": 1}
SEGMENT_ITEMS = [f"{name} {n:,}" for name, n in SEGMENTS.items()]


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


def test_compact_view_shows_segment_sizes() -> None:
    st = DemoState(kpis=_kpis(segments=SEGMENTS))
    lines = render_compact(st).splitlines()
    assert lines[-1] == "  segments: " + " | ".join(SEGMENT_ITEMS)
    st.kpis = _kpis(segments={})  # ENGAGEMENT_SEGMENTS_FILE with {"segments": []}
    assert render_compact(st).splitlines()[-1] == "  segments: off"
    st.kpis = _kpis()  # a worker from before segments: no line
    assert "segments" not in render_compact(st)


def _segment_lines(view: list[str]) -> list[str]:
    """The segment panel of a full view: beside the tier table, or its own section below."""
    start = next(i for i, line in enumerate(view) if "segments" in line)
    body = [line.split("%", 1)[-1].strip() if line.startswith(TIERS) else line.strip()
            for line in itertools.takewhile(str.strip, view[start + 1:])]
    return [line for line in body if line]


@pytest.mark.parametrize("width,height", [(80, 24), (160, 50)])
def test_full_view_shows_every_segment_beside_the_tiers(width: int, height: int) -> None:
    st = _busy_state()
    view = render_full(st, "header", width, height).splitlines()
    assert len(view) <= height and all(len(line) < width for line in view), view
    title = next(line for line in view if line.split()[:3] == ["tier", "customers", "share"])
    assert title.endswith("segments (customers holding each)"), view  # beside the tiers: no line of its own
    shown = "  ".join(_segment_lines(view))
    assert re.split(r"  (?=[a-z])", shown) == SEGMENT_ITEMS, view
    assert "latest alerts" in view


def test_full_view_counts_the_segments_that_do_not_fit() -> None:
    many = {f"segment_with_a_long_name_{i:02d}": i * 1000 for i in range(64)}
    st = _busy_state()
    st.kpis = _kpis(segments=many)
    view = render_full(st, "header", 80, 24).splitlines()
    assert len(view) <= 24 and all(len(line) < 80 for line in view), view
    panel = _segment_lines(view)
    assert len(panel) == 4 and panel[-1].endswith(" more"), view
    shown = [x for line in panel for x in re.split(r"  (?=[a-z+])", line)]
    assert shown[-1] == f"+{64 - len(shown) + 1} more"
    assert shown[:-1] == [f"{name} {n:,}" for name, n in list(many.items())[:len(shown) - 1]]


def test_full_view_says_when_segments_are_off_and_omits_them_for_an_older_worker() -> None:
    st = _busy_state()
    st.kpis = _kpis(segments={})
    assert render_full(st, "header", 80, 24).splitlines()[7].endswith("segments: off")
    st.kpis = _kpis()
    assert "segments" not in render_full(st, "header", 80, 24)


def test_narrow_view_puts_the_segments_last() -> None:
    st = _busy_state()
    view = render_full(st, "header", 50, 60).splitlines()
    assert all(len(line) < 50 for line in view) and "latest scores" in view, view
    assert view.index("segments (customers holding each)") > view.index("latest scores")
    assert re.split(r"  (?=[a-z])", "  ".join(_segment_lines(view))) == SEGMENT_ITEMS
    short = render_full(st, "header", 50, 40).splitlines()  # no room left: they go first
    assert "segments" not in "\n".join(short) and "latest alerts" in short


def _cells(view: list[str]) -> list[list[str]]:
    """The KPI cells of a full view, one or two to a line (name padded, value right-aligned)."""
    return [cell.split() for line in view for cell in re.split(r"(?<=\S)  +(?=[A-Za-z])", line.strip())]


@pytest.mark.parametrize("width,height", [(80, 24), (160, 50)])
def test_full_view_lists_the_engagement_kpis(width: int, height: int) -> None:
    view = render_full(DemoState(kpis=_kpis()), "header", width, height).splitlines()
    cells = _cells(view)
    assert ["NPS", "+12.5"] in cells, view
    assert ["CSAT", "80.0", "%"] in cells, view
    assert ["email", "open", "rate", "(30", "d)", "25.0", "%"] in cells, view
    assert ["omnichannel", "customers", "(30", "d)", "1,234"] in cells, view


def _busy_state() -> DemoState:
    st = DemoState(kpis=_kpis(segments=SEGMENTS), bad_rate=0.01, clock=(1_700_000_000.0, 3600.0))
    st.produced, st.tier_changes, st.alerts = 1_234_567, 45_678, 9_876
    for i in range(400):
        st.on_score({"customer_id": f"customer-{i:05d}", "tier": "gold", "score": 88.5, "events_total": 3000})
    for i in range(5):
        st.latest_alerts.append({"type": "abandoned_cart", "severity": "low", "customer_id": f"cust-{i}",
                                 "at": "2026-12-08T09:22:52.782905Z"})
    return st


@pytest.mark.parametrize("width,height", [(80, 24), (160, 50)])
def test_full_view_fits_the_terminal_and_keeps_every_counter(width: int, height: int) -> None:
    st = _busy_state()
    for _ in range(60_000):  # far above the 1 % bad-line rate: the reasons must show
        st.on_dead_letter({"reason": "invalid_field", "field": "occurred_at"})
    st.on_dead_letter({"reason": "invalid_json", "field": None})
    view = render_full(st, "broker kafka://127.0.0.1:40000 (pid 1)  worker http://127.0.0.1:40001 (pid 2)",
                       width, height).splitlines()
    assert len(view) <= height and all(len(line) < width for line in view), view
    text = "\n".join(view)
    for counter in ("produced 1,234,567", "scored 1,200,000", "tier changes 45,678", "alerts 9,876",
                    "rejected 60,001", "erased 0"):
        assert counter in text, (counter, view)
    assert any(line.startswith("event time runs 1 h/s, now 2023-11-14 ") for line in view), view
    assert any(line.startswith("unexpected dead letters: invalid_field occurred_at 60,000, invalid_json - 1") for line in view), view
    assert ["bronze", "0", "0.0", "%"] in [line.split()[:4] for line in view]  # segments may follow
    assert any(line.startswith("store KPIs (365-day window") for line in view), view
    assert ["revenue", "30.00", "NPS", "+12.5"] in [line.split() for line in view]
    assert "latest alerts" in view  # shortened to fit, not dropped, at 80 × 24
    if height >= 50:
        assert "latest scores" in view and len([x for x in view if "abandoned_cart" in x]) == 5


def test_small_terminal_drops_sections_not_counters() -> None:
    view = render_full(_busy_state(), "header", 60, 8).splitlines()
    assert len(view) <= 8 and all(len(line) < 60 for line in view), view
    assert "produced 1,234,567" in view[2] and "tier changes 45,678" in view[3], view
    assert not any("store KPIs" in line for line in view)


def test_dead_letter_reasons_only_above_the_bad_line_rate() -> None:
    st = DemoState(bad_rate=0.01)
    st.produced = 10_000
    for _ in range(100):  # 1 %: what the simulator spoils on purpose
        st.on_dead_letter({"reason": "invalid_json", "field": None})
    assert "rejections" not in render_compact(st) and "unexpected dead letters" not in render_full(st, "h")
    for _ in range(100):
        st.on_dead_letter({"reason": "invalid_field", "field": "occurred_at"})
    assert "  rejections: unexpected dead letters: invalid_json - 100, invalid_field occurred_at 100" \
        in render_compact(st)


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


@pytest.mark.parametrize("width", [100, 80, 50])
def test_the_dashboard_url_shows_beside_the_title_or_below_it(width: int) -> None:
    st = _busy_state()
    st.dashboard = "http://127.0.0.1:40001/"
    view = render_full(st, "header", width, 24).splitlines()
    assert all(len(line) < width for line in view), view
    if width >= 80:
        assert view[0].startswith("engagement demo") and view[0].endswith("dashboard http://127.0.0.1:40001/")
    else:
        assert view[1] == "dashboard http://127.0.0.1:40001/", view
    assert any("produced 1,234,567" in line for line in view[:5]), view
    assert "dashboard" not in render_full(_busy_state(), "header", width, 24)  # none: nothing shown


# -- lifetime value (SPEC §11) ---------------------------------------------------------------------

def _clv(p_alive: float, clv: float) -> dict[str, Any]:
    return {"p_alive": p_alive, "expected_orders": clv / 100, "expected_order_value": 100.0,
            "predicted_clv": clv, "horizon_days": 365, "model_version": "35b8bccfcf89"}


def _clv_state(st: DemoState) -> DemoState:
    st.clock = (1_700_000_000.0, 3600.0)
    st.produced, st.tier_changes, st.alerts = 123_456, 4_567, 890
    for i in range(400):  # 100 with no order (clv null), 300 across P(alive) and CLV
        clv = None if i < 100 else _clv((i % 10) / 10 + 0.05, float(i * 7))
        st.on_score({"customer_id": f"c{i}", "tier": "silver", "score": 30.0, "events_total": 10, "clv": clv})
    return st


def test_the_clv_summary_is_the_dashboards_over_the_latest_records() -> None:
    st = _clv_state(DemoState())
    summary = st.clv_summary()
    assert summary is not None and summary["customers"] == 300 and summary["model_version"] == "35b8bccfcf89"
    assert summary["p_alive"]["counts"][:10] == [30] * 10
    st.on_score({"customer_id": "c150", "tier": "silver", "events_total": 11, "clv": None})  # the latest counts
    st.on_tombstone("c151")
    assert st.clv_summary()["customers"] == 298  # type: ignore[index]
    assert DemoState().clv_summary() is None


@pytest.mark.parametrize("width,height", [(80, 24), (160, 50)])
def test_full_view_shows_the_clv_distributions_and_still_fits(width: int, height: int) -> None:
    st = _clv_state(DemoState(kpis=_kpis(segments=SEGMENTS), dashboard="http://127.0.0.1:40001/"))
    view = render_full(st, "broker kafka://127.0.0.1:40000 (pid 1)  worker http://127.0.0.1:40001 (pid 2)",
                       width, height).splitlines()
    assert len(view) <= height and all(len(line) < width for line in view), view
    text = "\n".join(view)
    for counter in ("produced 123,456", "scored 4,000", "tier changes 4,567", "alerts 890", "rejected 0",
                    "erased 0"):
        assert counter in text, (counter, view)
    assert any(line.startswith("lifetime value (model 35b8bccfcf89, 365 d): 300 customers") for line in view), view
    assert any("P(alive) 0 ██████████ 1 mean 0.50" in line for line in view), view  # 30 in each bin
    assert any("CLV 0 " in line and "100k+" in line for line in view), view
    assert any(line.startswith("store KPIs (365-day window") for line in view), view


def test_compact_view_shows_the_clv_line_and_none_without_a_model() -> None:
    st = _clv_state(DemoState(kpis=_kpis()))
    (line,) = [x for x in render_compact(st).splitlines() if x.startswith("  clv: ")]
    assert "300 customers" in line and "P(alive) 0 " in line and "CLV 0 " in line
    assert "clv" not in render_compact(DemoState(kpis=_kpis()))
    assert "lifetime value" not in render_full(DemoState(kpis=_kpis()), "header", 80, 24)


def test_the_demo_loads_the_shipped_model_unless_the_variable_names_another(tmp_path: Any) -> None:
    from pathlib import Path

    from stream_app.demo import SHIPPED_CLV_MODEL, demo_clv_model_file

    assert SHIPPED_CLV_MODEL.is_file()
    assert demo_clv_model_file({}) == str(SHIPPED_CLV_MODEL)
    assert demo_clv_model_file({"ENGAGEMENT_CLV_MODEL_FILE": ""}) == ""  # explicitly none
    other = tmp_path / "m.json"
    assert demo_clv_model_file({"ENGAGEMENT_CLV_MODEL_FILE": str(other)}) == str(Path(other).resolve())


def test_a_bad_model_file_stops_the_demo_before_it_starts(tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from stream_app.cli import main

    bad = tmp_path / "model.json"
    bad.write_text('{"model": "bgnbd-gamma-gamma"}')
    monkeypatch.setenv("ENGAGEMENT_CLV_MODEL_FILE", str(bad))
    assert main(["demo", "--duration", "1"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "ENGAGEMENT_CLV_MODEL_FILE" in captured.err and str(bad) in captured.err
