"""The dashboard and the report in a real browser: headless Chromium (tests/helpers/browser.py,
driven over the DevTools protocol) loads the page of a worker fed by the simulator, and a report of
the Online Retail replay, reads the numbers from the DOM and compares them with the API's (the
replay document's for the report); no console error; a wrong token gets the token prompt, not
data. Screenshots go to artifacts/screenshots/ (README: Dashboard).

Chromium that cannot start fails these tests (it never skips them): `.ci/run` installs it.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.cli import main
from stream_app.produce import produce_lines
from stream_app.replay import replay_file
from stream_app.simulate import Simulator
from tests.helpers.browser import Chromium
from tests.helpers.stream import WorkerProcess, isolated_settings

TOKEN = "dash-t0ken-0123456789abcdef"
ROOT = Path(__file__).parents[2]
ONLINE_RETAIL = ROOT / "data" / "online-retail-orders.jsonl.gz"
#: what each KPI card shows: (field, format) as dashboard.js writes them
KPIS_365 = {"orders": "count", "revenue": "money", "average_order_value": "money", "customers": "count",
            "repeat_purchase_rate": "pct", "purchase_frequency": "ratio", "guest_checkout_rate": "pct",
            "nps": "signed", "csat": "pct", "average_rating": "ratio"}
KPIS_30 = {"active_customers": "count", "omnichannel_customers": "count", "omnichannel_rate": "pct",
           "email_open_rate": "pct", "email_click_rate": "pct", "push_open_rate": "pct", "sms_click_rate": "pct"}
#: what the browser may log on the token tests: the API's 401s (the page then asks for the token)
UNAUTHORIZED = re.compile(r"^log \(network\): Failed to load resource: the server responded with a status of 401")


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    browser = Chromium().start()  # raises (fails the tests) when it cannot start
    try:
        yield browser
    finally:
        browser.close()


def api(url: str, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    request = urllib.request.Request(url + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"null")


@pytest.fixture(scope="module")
def fed_worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A worker with an API token, fed 4,000 simulator lines (a year of 300 shoppers, 1 % bad
    lines), then left alone until its KPI document stops changing: the page and the API then
    show the same figures."""
    tmp = tmp_path_factory.mktemp("dashboard")
    settings = isolated_settings(broker, tmp, api_token=TOKEN)
    worker = WorkerProcess(settings, tmp)
    try:
        worker.wait_ready()
        lines = Simulator(customers=300, seed=21, bad_rate=0.01).lines(4000)
        asyncio.run(produce_lines(settings, lines, event_timestamps=True))
        last, same, deadline = None, 0, time.monotonic() + 60
        while same < 3:
            assert time.monotonic() < deadline, f"the KPI document never settled:\n{worker.tail()}"
            time.sleep(0.7)
            status, doc = api(worker.url, "/kpis")
            _, ov = api(worker.url, "/overview")
            seen = (doc, ov["tiers"]) if status == 200 else None
            same = same + 1 if seen is not None and seen == last and doc["orders"] > 0 else 0
            last = seen
        yield worker
    finally:
        worker.stop()


# -- reading the page -------------------------------------------------------------------------------

def assert_number(text: str, kind: str, value: Any, what: str) -> None:
    """`text` is `value` as dashboard.js formats it (to the last digit shown: JavaScript's toFixed
    and Python's rounding break a tie differently)."""
    if value is None:
        assert text == "n/a", (what, text)
        return
    digits = {"count": 0, "money": 2, "ratio": 2, "pct": 1, "signed": 1}[kind]
    parsed = float(text.replace(",", "").replace("%", "").replace("+", "").strip())
    expected = value * 100 if kind == "pct" else value
    assert abs(parsed - expected) <= 0.5 * 10 ** -digits + 1e-9, (what, text, value)
    if kind in ("count", "money"):
        assert "," in text or abs(expected) < 1000, (what, text)  # thousands separators
    if kind == "pct":
        assert text.endswith(" %"), (what, text)


CARDS_JS = """Array.from(document.querySelectorAll('#kpis-365 .kpi, #kpis-30 .kpi')).map(k => {
  const v = k.querySelector('.kpi-value'); return [k.dataset.window, k.dataset.kpi, v.dataset.value, v.textContent]; })"""
ROWS_JS = """Array.from(document.querySelectorAll('%s')).map(r => [r.dataset.%s,
  r.querySelector('.row-num').dataset.value, r.querySelector('.row-num').textContent])"""


def assert_kpis_match(b: Chromium, kpis: dict[str, Any]) -> None:
    cards = b.evaluate(CARDS_JS)
    assert [c[1] for c in cards] == [*KPIS_365, *KPIS_30]
    e30 = kpis["engagement_30d"]
    for window, name, value, text in cards:
        doc, kinds = (kpis, KPIS_365) if window == str(kpis["window_days"]) else (e30, KPIS_30)
        assert name in kinds, (window, name)
        expected = doc[name]
        # the DOM carries the API's number exactly (the shortest round-trip form, as JSON has it)
        assert (None if value == "null" else float(value)) == expected, (name, value, expected)
        assert_number(text, kinds[name], expected, name)
    assert kpis["orders"] > 0 and e30["active_customers"] > 0  # the comparison compared something


def assert_rows_match(b: Chromium, selector: str, key: str, expected: dict[str, int]) -> None:
    rows = b.evaluate(ROWS_JS % (selector, key))
    assert {name: int(value) for name, value, _ in rows} == expected
    for name, value, text in rows:
        assert_number(text, "count", int(value), name)


# -- the live dashboard -------------------------------------------------------------------------------

def test_live_dashboard_shows_the_apis_numbers(chromium: Chromium, fed_worker: WorkerProcess) -> None:
    b, w = chromium, fed_worker
    b.errors.clear()
    b.goto(f"{w.url}/#token={TOKEN}")
    b.wait_for("document.body.dataset.rendered", what="the first render")
    # the token left the address bar for this tab's sessionStorage
    assert b.evaluate("location.href") == f"{w.url}/"
    assert b.evaluate("sessionStorage.getItem('engagement-api-token')") == TOKEN
    _, kpis = api(w.url, "/kpis")
    _, segments = api(w.url, "/segments")
    _, overview = api(w.url, "/overview")
    b.wait_for(f"document.getElementById('kpi-panel').dataset.asOf === {orjson.dumps(kpis['as_of']).decode()}",
               what="the page to show the API's as_of")
    assert_kpis_match(b, kpis)
    assert overview["scope"]["missing_partitions"] == [] and overview["customers"] > 100
    assert_rows_match(b, "#tiers .row[data-tier]", "tier", overview["tiers"])
    assert b.evaluate("document.querySelector('[data-total=tiers]').dataset.value") == str(overview["customers"])
    assert_rows_match(b, "#segments .row[data-segment]", "segment",
                      {s["name"]: s["members"] for s in segments["segments"]})
    assert {s["name"]: s["members"] for s in segments["segments"]} == kpis["segments"]
    alerts = b.evaluate("Array.from(document.querySelectorAll('#alerts tr[data-alert]')).map(r => r.dataset.alert)")
    assert alerts == [a["alert_id"] for a in overview["latest_alerts"]] and alerts
    assert b.evaluate("document.querySelector('#clv [data-clv]').dataset.clv") == (
        "model" if overview["clv"] else "none")
    # trends: a bar per day of what the worker published
    assert b.evaluate("document.querySelectorAll('#chart-alerts rect').length") > 10
    b.screenshot("dashboard-live.png")

    # one customer's record, from the search box
    cid = overview["latest_alerts"][0]["customer_id"]
    status, record = api(w.url, f"/customers/{cid}")
    assert status == 200
    b.evaluate(f"document.getElementById('search-id').value = {orjson.dumps(cid).decode()};"
               "document.getElementById('search').requestSubmit()")
    b.wait_for(f"document.querySelector('[data-customer=\"{cid}\"]')", what="the customer panel")
    fields = b.evaluate("""Object.fromEntries(Array.from(document.querySelectorAll('#customer-body [data-field]'))
        .map(e => [e.dataset.field, e.dataset.value !== undefined ? e.dataset.value : e.textContent]))""")
    assert float(fields["score"]) == record["score"] and fields["tier"] == record["tier"]
    assert float(fields["revenue_total"]) == record["revenue_total"]
    assert b.evaluate("Array.from(document.querySelectorAll('#customer-body .chip')).length") == len(record["segments"])
    assert record["tier"] in fields["tier_history"]
    b.screenshot("dashboard-live-customer.png")
    # an unknown customer says so
    b.evaluate("document.getElementById('search-id').value = 'nobody-here'; document.getElementById('search').requestSubmit()")
    b.wait_for("document.querySelector('[data-customer-error]')", what="the unknown-customer message")
    assert b.evaluate("document.querySelector('[data-customer-error]').textContent") == "No customer with this id."
    errors = [e for e in b.settle() if "status of 404" not in e]  # the unknown customer's answer
    assert errors == []


def test_a_wrong_or_missing_token_gets_the_prompt_not_data(chromium: Chromium, fed_worker: WorkerProcess) -> None:
    b, w = chromium, fed_worker
    b.goto(f"{w.url}/dashboard")
    b.evaluate("sessionStorage.clear()")
    b.goto("about:blank")  # so that the next is a new document, not a move to a fragment
    b.errors.clear()
    b.goto(f"{w.url}/dashboard#token=not-the-token")
    b.wait_for("!document.getElementById('token-prompt').hidden", what="the token prompt")
    assert b.evaluate("location.href") == f"{w.url}/dashboard"  # not kept in the URL either
    assert b.evaluate("document.getElementById('content').hidden") is True
    assert b.evaluate("!document.getElementById('token-error').hidden") is True  # "refused", not just "needed"
    assert b.evaluate("document.querySelectorAll('.kpi, .row, tr[data-alert], [data-value]').length") == 0
    assert b.evaluate("sessionStorage.getItem('engagement-api-token')") is None  # the wrong one is dropped
    _, kpis = api(w.url, "/kpis")
    text = b.evaluate("document.body.innerText")
    assert f"{kpis['orders']:,}" not in text and "churn risk" not in text
    b.screenshot("dashboard-token-prompt.png", full_page=False)
    # the same without any token: the prompt, without the "refused" line
    b.goto(f"{w.url}/")
    b.wait_for("!document.getElementById('token-prompt').hidden", what="the token prompt")
    assert b.evaluate("document.getElementById('token-error').hidden") is True
    # the right token typed into the prompt opens the data
    b.evaluate(f"document.getElementById('token-input').value = {orjson.dumps(TOKEN).decode()};"
               "document.getElementById('token-form').requestSubmit()")
    b.wait_for("document.body.dataset.rendered", what="the render after the token")
    b.wait_for("document.querySelectorAll('#kpis-365 .kpi').length === 10")
    assert_kpis_match(b, api(w.url, "/kpis")[1])
    errors = b.settle()
    assert errors and all(UNAUTHORIZED.match(e) for e in errors), errors  # the 401s, nothing else


# -- the report ----------------------------------------------------------------------------------

def test_report_of_the_online_retail_replay_in_a_browser(chromium: Chromium, tmp_path: Path) -> None:
    b = chromium
    out = tmp_path / "online-retail-report.html"
    doc = replay_file(str(ONLINE_RETAIL))  # what `engagement replay --out` writes (the events path: unit tests)
    (tmp_path / "doc.json").write_bytes(orjson.dumps(doc))
    assert main(["report", str(tmp_path / "doc.json"), "--out", str(out)]) == 0
    b.errors.clear()
    b.goto(out.as_uri())
    b.wait_for("document.body.dataset.rendered", what="the report's render")
    assert b.evaluate("document.getElementById('mode').textContent") == "report"
    assert b.evaluate("document.getElementById('kpi-panel').dataset.asOf") == doc["as_of"]
    assert_kpis_match(b, doc["kpis"])
    tiers = {t: sum(1 for r in doc["customers"].values() if r["tier"] == t) for t in ("bronze", "silver", "gold",
                                                                                      "platinum")}
    assert_rows_match(b, "#tiers .row[data-tier]", "tier", tiers)
    assert_rows_match(b, "#segments .row[data-segment]", "segment", doc["kpis"]["segments"])
    # a year of days in the trend charts (a bar for each day with some), as many alerts as the document's
    labels = b.evaluate("Array.from(document.querySelectorAll('#chart-alerts text.axis-label')).map(t => t.textContent)")
    assert labels[-3] == "2010-12-01" and labels[-1] == "2011-12-09", labels
    assert b.evaluate("document.querySelectorAll('#chart-alerts rect').length") > 250
    titles = b.evaluate("Array.from(document.querySelectorAll('#chart-alerts rect title')).map(t => t.textContent)")
    assert sum(int(t.rsplit(": ", 1)[1]) for t in titles) == len(doc["alerts"])
    assert b.evaluate("document.querySelector('#clv [data-clv]').dataset.clv") == "none"  # no model in the replay
    b.screenshot("report-online-retail.png")
    # the README's example customer, from the search box
    b.evaluate("document.getElementById('search-id').value = 'uci-14804'; document.getElementById('search').requestSubmit()")
    b.wait_for("document.querySelector('[data-customer=\"uci-14804\"]')", what="the customer panel")
    record = doc["customers"]["uci-14804"]
    assert float(b.evaluate("document.querySelector('[data-field=score]').dataset.value")) == record["score"]
    assert b.evaluate("document.querySelector('[data-field=tier]').textContent") == record["tier"] == "silver"
    assert "silver" in b.evaluate("document.querySelector('[data-field=tier_history]').textContent")
    b.screenshot("report-online-retail-customer.png")
    assert b.settle() == []  # no console error, and nothing blocked by the page's CSP (no fetch at all)


# -- the demo's dashboard -----------------------------------------------------------------------------

def test_the_demo_prints_a_dashboard_url_whose_page_shows_live_kpis(chromium: Chromium) -> None:
    """`engagement demo` (what `make demo` runs): the URL it prints opens a page whose numbers are
    GET /kpis's. The figures move every second, so the test keeps every document it reads, by
    `as_of`, and compares the page with the one it shows (read in one step with its `as_of`)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stream_app", "demo", "--duration", "90", "--customers", "100",
                             "--rate", "200"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            # SIGINT as a terminal would deliver it, even from a background job
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        url = None
        while url is None or not any(re.match(r"^\[\s*[\d.]+s\] .* scored [1-9]", x) for x in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)[-3000:]
            m = next((re.match(r"^demo: dashboard (http://\S+/) ", x) for x in lines if x.startswith("demo: dash")), None)
            url = m.group(1) if m else None
            time.sleep(0.2)
        assert url is not None
        b = chromium
        b.errors.clear()
        b.goto(url)
        b.wait_for("document.body.dataset.rendered", what="the demo dashboard's render")
        seen: dict[str, dict[str, Any]] = {}
        snapshot: Any = None
        while time.monotonic() < deadline + 30:
            status, doc = api(url.rstrip("/"), "/kpis", token=None)
            if status == 200:
                seen[doc["as_of"]] = doc
            snapshot = b.evaluate("[document.getElementById('kpi-panel').dataset.asOf, " + CARDS_JS + "]")
            doc = seen.get(snapshot[0])
            if doc is not None and all(
                    (None if v == "null" else float(v)) == (doc if w == "365" else doc["engagement_30d"])[n]
                    for w, n, v, _ in snapshot[1]):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the page never showed a document GET /kpis answered: {snapshot}, {list(seen)[-5:]}")
        for _, name, value, text in snapshot[1]:
            kinds = KPIS_365 if name in KPIS_365 else KPIS_30
            assert_number(text, kinds[name], None if value == "null" else float(value), name)
        assert doc["orders"] > 0
        b.screenshot("dashboard-demo.png")
        assert b.settle() == []
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reader.join(5)
    assert proc.returncode == 0, "".join(lines)[-3000:]
