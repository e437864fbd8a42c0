"""`engagement report`: one self-contained HTML page from a replay document or an events file
(stream_app/html_report.py, cli.cmd_report); the browser renders it in
tests/integration/test_dashboard_browser.py."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.html_report import REPORT_CSP, render_report, report_data
from stream_app.panels import replay_overview
from stream_app.replay import replay_file, replay_lines
from stream_app.simulate import Simulator

ROOT = Path(__file__).parents[2]
ONLINE_RETAIL = ROOT / "data" / "online-retail-orders.jsonl.gz"


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return replay_lines(Simulator(customers=150, seed=11).lines(3000))


def embedded(page: str) -> dict[str, Any]:
    m = re.search(r'<script id="report-data" type="application/json">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    data: dict[str, Any] = json.loads(m.group(1))
    return data


def assert_self_contained(page: str) -> None:
    """Nothing the browser would fetch: no URL, no src/href but the inline icon, no @import."""
    without_svg_ns = page.replace("http://www.w3.org/2000/svg", "")
    assert not re.search(r"https?://", without_svg_ns)
    assert not re.search(r"\bsrc\s*=", page)
    assert re.findall(r'\bhref\s*=\s*"([^"]*)"', page) == ["data:,"]  # the empty favicon only
    assert "@import" not in page and "url(" not in page
    assert f'<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">' in page
    assert "default-src 'none'" in REPORT_CSP and "connect-src" not in REPORT_CSP  # so no fetch at all


def test_the_page_is_self_contained_and_carries_the_document(doc: dict[str, Any]) -> None:
    page = render_report(doc, source="events.jsonl", generated_at="2024-05-01T00:00:00Z")
    assert_self_contained(page)
    assert page.count("<script") == 2 and "<style>" in page
    data = embedded(page)
    assert data == orjson.loads(orjson.dumps(report_data(doc, "events.jsonl", "2024-05-01T00:00:00Z")))
    assert data["kpis"] == doc["kpis"] and data["counts"] == doc["counts"] and data["as_of"] == doc["as_of"]
    assert data["overview"] == orjson.loads(orjson.dumps(replay_overview(doc)))
    assert set(data["customers"]) == set(doc["customers"])
    some = next(iter(doc["customers"]))
    assert data["customers"][some]["score"] == doc["customers"][some]["score"]
    assert "messages_30d" not in data["customers"][some]  # what the page shows, not the whole record
    history = data["tier_history"]
    assert set(history) == set(doc["customers"])  # every customer has a first change
    for cid, changes in history.items():  # newest first, back to its first event
        assert [c["at"] for c in changes] == [c["at"] for c in doc["tier_changes"] if c["customer_id"] == cid][::-1]
        assert changes[-1]["from_tier"] is None and changes[0]["to_tier"] == doc["customers"][cid]["tier"]


def test_an_erased_customers_history_is_not_shown_under_its_new_record(doc: dict[str, Any]) -> None:
    """An id erased and seen again starts afresh (SPEC §9): its history starts at its new first event."""
    lines = [b'{"event_id":"e1","type":"page_view","occurred_at":"2024-01-01T00:00:00Z","customer_id":"c1","channel":"web"}',
             b'{"event_id":"e2","type":"order_placed","occurred_at":"2024-01-02T00:00:00Z","customer_id":"c1",'
             b'"order_id":"o1","amount":500,"currency":"GBP","channel":"web"}',
             b'{"event_id":"e3","type":"customer_erased","occurred_at":"2024-01-03T00:00:00Z","customer_id":"c1"}',
             b'{"event_id":"e4","type":"page_view","occurred_at":"2024-01-04T00:00:00Z","customer_id":"c1","channel":"web"}']
    d = replay_lines(lines)
    assert d["counts"]["erased"] == 1 and len(d["tier_changes"]) == 3, d["tier_changes"]
    history = report_data(d, "x")["tier_history"]["c1"]
    assert history == [{"at": "2024-01-04T00:00:00Z", "from_tier": None, "to_tier": "bronze", "reason": "event"}]


def test_markup_in_the_data_cannot_escape_its_script_element(doc: dict[str, Any]) -> None:
    evil = "</script><script>alert(1)</script><!--"
    d = json.loads(json.dumps(doc))
    record = next(iter(d["customers"].values()))
    d["customers"] = {evil: {**record, "customer_id": evil}}
    page = render_report(d, source="<b>x</b>.jsonl")
    assert evil not in page and "<b>x</b>" not in page
    assert page.count("</script>") == 2
    assert evil in embedded(page)["customers"]


def test_a_large_replay_keeps_the_highest_scores_searchable(doc: dict[str, Any]) -> None:
    data = report_data(doc, "x", max_customers=10)
    top = sorted(doc["customers"].values(), key=lambda r: -r["score"])[:10]
    assert set(data["customers"]) == {r["customer_id"] for r in top}
    assert "10 customers with the highest scores" in data["customers_note"]
    assert set(data["tier_history"]) <= set(data["customers"])
    assert data["overview"]["customers"] == len(doc["customers"])  # the panels still count everyone


def test_clv_reaches_the_report_when_the_records_carry_it(doc: dict[str, Any]) -> None:
    d = json.loads(json.dumps(doc))
    for r in d["customers"].values():
        r["clv"] = ({"p_alive": 0.8, "expected_orders": 2.0, "expected_order_value": 10.0, "predicted_clv": 20.0,
                     "horizon_days": 365, "model_version": "v1"} if r["orders_total"] else None)
    data = embedded(render_report(d, source="doc.json"))
    with_orders = sum(1 for r in d["customers"].values() if r["orders_total"])
    assert data["overview"]["clv"]["customers"] == with_orders
    assert data["overview"]["clv"]["total_predicted_clv"] == pytest.approx(20.0 * with_orders)
    assert all("clv" in r for r in data["customers"].values())
    assert embedded(render_report(doc, source="doc.json"))["overview"]["clv"] is None


# -- the command --------------------------------------------------------------------------------------


def test_report_from_a_document_and_from_its_events_agree(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(Simulator(customers=80, seed=5).lines(1500)) + b"\n")
    doc_path = tmp_path / "doc.json"
    assert main(["replay", str(events), "--out", str(doc_path)]) == 0
    assert main(["report", str(doc_path), "--out", str(tmp_path / "from-doc.html")]) == 0
    assert main(["report", str(events), "--out", str(tmp_path / "from-events.html")]) == 0
    gz = tmp_path / "doc.json.gz"
    gz.write_bytes(gzip.compress(doc_path.read_bytes()))
    assert main(["report", str(gz), "--out", str(tmp_path / "from-gz.html")]) == 0
    err = capsys.readouterr().err
    assert err.count("wrote ") == 3 and "self-contained" in err
    pages = [embedded((tmp_path / f"from-{k}.html").read_text()) for k in ("doc", "events", "gz")]
    for p in pages:
        del p["generated_at"], p["source"]
    assert pages[0] == pages[1] == pages[2]


def test_report_of_the_online_retail_replay(tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(ONLINE_RETAIL), "--out", str(out)]) == 0
    page = out.read_text()
    assert_self_contained(page)
    data = embedded(page)
    doc = replay_file(str(ONLINE_RETAIL))
    assert data["kpis"] == orjson.loads(orjson.dumps(doc["kpis"])) and data["as_of"] == "2011-12-09T12:50:00Z"
    assert data["overview"]["customers"] == len(doc["customers"]) == len(data["customers"])
    assert len(data["overview"]["trends"]["days"]) > 300  # a year of days
    assert len(page) < 8_000_000


@pytest.mark.parametrize("args, message", [
    (["missing.json"], "missing.json: No such file or directory"),
    (["{tmp}/list.json"], "a JSON list, not a replay document"),
    (["{tmp}/partial.json"], "not a replay document (engagement replay --out): no customers, tier_changes"),
    (["{tmp}/doc.json", "--as-of", "2024-01-01T00:00:00Z"], "--as-of applies to an events file"),
    (["{tmp}/junk.jsonl"], "no event applied, 2 line(s) rejected"),
    (["{tmp}/doc.json", "--out", "{tmp}/nowhere/r.html"], "does not exist"),
    (["{tmp}/doc.json", "--out", "{tmp}"], "is a directory"),
    (["{tmp}/events.jsonl", "--as-of", "yesterday"], "as-of"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str, doc: dict[str, Any]) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "partial.json").write_text('{"as_of": null, "kpis": {}, "counts": {}, "alerts": []}')
    (tmp_path / "doc.json").write_bytes(orjson.dumps(doc))
    (tmp_path / "junk.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    (tmp_path / "events.jsonl").write_bytes(b"\n".join(Simulator(customers=5).lines(20)))
    argv = ["report", *(a.replace("{tmp}", str(tmp_path)) for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "r.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("engagement report: error: ") and message in lines[0], err
    assert not (tmp_path / "r.html").exists()


def test_help_lists_the_options_with_their_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert "DOC.json|EVENTS.jsonl" in out and "(default: report.html)" in out and "(default: 50000)" in out
    assert "--as-of" in out and "ENGAGEMENT_HALF_LIFE_DAYS" in out
