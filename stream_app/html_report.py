"""`engagement report`: a replay document (SPEC §8) as one self-contained HTML file.

The page is the worker's dashboard (`stream_app/web_assets/`) with its style sheet and script
inlined and the figures embedded as JSON, so it opens offline, from a mail attachment or a file
share; its Content-Security-Policy (`default-src 'none'`) forbids any network request. Besides
the live page's panels it has the whole period's trends (tier changes, alerts, segment entries
and exits per day) and a search over the customers' records, with each one's tier history.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from collections.abc import Mapping
from typing import Any

import orjson

from stream_app.panels import replay_overview
from stream_app.web_assets import asset

__all__ = ["DOCUMENT_KEYS", "MAX_CUSTOMERS", "NotADocument", "load_document", "render_report", "report_data"]

#: at most this many customers are searchable in a report (the highest scores first), so a
#: replay of millions of customers still makes a file a browser opens
MAX_CUSTOMERS = 50_000
#: the replay document's keys the report reads (SPEC §8)
DOCUMENT_KEYS = ("as_of", "kpis", "customers", "tier_changes", "alerts", "counts")
#: the record fields a report keeps per customer (SPEC §4; `clv` when the document has it, §11)
CUSTOMER_FIELDS = ("customer_id", "as_of", "score", "tier", "tier_since", "points", "orders_365d", "revenue_365d",
                   "orders_total", "revenue_total", "first_order_at", "last_order_at", "last_activity_at",
                   "segments", "clv")
#: no request of any kind leaves the page: it has everything inline
REPORT_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
              "base-uri 'none'; form-action 'none'")


class NotADocument(ValueError):
    """The input is not a replay document (the message says why)."""


def looks_like_events(path: str) -> bool:
    """An events file by its name (`.jsonl`, `.jsonl.gz`, `.ndjson`, stdin); anything else is
    read as a document first."""
    name = path.lower()
    return path == "-" or name.endswith((".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz"))


def load_document(path: str) -> dict[str, Any] | None:
    """The replay document in `path` (JSON, or gzipped JSON); None when the file is not one JSON
    value (then it is an events file); NotADocument when it is JSON but not a replay document.
    OSError when it cannot be read."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise NotADocument(f"{path}: not a readable gzip file ({exc})") from None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None  # several lines: events
    if not isinstance(doc, dict):
        raise NotADocument(f"{path}: a JSON {type(doc).__name__}, not a replay document (engagement replay --out)")
    if "type" in doc or "event" in doc:
        return None  # a file of one event (or one wrapper)
    missing = [k for k in DOCUMENT_KEYS if k not in doc]
    if missing:
        raise NotADocument(f"{path}: not a replay document (engagement replay --out): no {', '.join(missing)}")
    if not isinstance(doc["customers"], dict) or not isinstance(doc["kpis"], dict):
        raise NotADocument(f"{path}: not a replay document: 'customers' and 'kpis' must be objects")
    return doc


def report_data(doc: Mapping[str, Any], source: str, generated_at: str | None = None,
                max_customers: int = MAX_CUSTOMERS) -> dict[str, Any]:
    """What the report page embeds: the KPI document, the overview (`panels.replay_overview`),
    the searchable customers with their tier histories, counts and provenance."""
    customers: Mapping[str, Mapping[str, Any]] = doc["customers"]
    ids = list(customers)
    note = ""
    if len(ids) > max_customers:
        ids = sorted(ids, key=lambda c: (-float(customers[c].get("score") or 0), c))[:max_customers]
        note = (f"Search covers the {max_customers:,} customers with the highest scores "
                f"of {len(customers):,}.")
    kept = set(ids)
    history: dict[str, list[dict[str, Any]]] = {}
    for change in doc.get("tier_changes", []):
        cid = change.get("customer_id")
        if cid in kept:
            if change.get("from_tier") is None:  # a first event: an id erased before starts afresh (SPEC §9)
                history[cid] = []
            history.setdefault(cid, []).append({k: change.get(k) for k in ("at", "from_tier", "to_tier", "reason")})
    for changes in history.values():
        changes.reverse()  # newest first, as the page lists them
    return {
        "as_of": doc.get("as_of"),
        "source": source,
        "generated_at": generated_at or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kpis": doc["kpis"],
        "counts": doc.get("counts", {}),
        "overview": replay_overview(doc),
        "customers": {cid: {k: customers[cid][k] for k in CUSTOMER_FIELDS if k in customers[cid]} for cid in ids},
        "customers_note": note,
        "tier_history": history,
    }


def _json_for_script(data: Any) -> str:
    """JSON that cannot end its <script> element: every `<` (only in strings) as \\u003c."""
    return orjson.dumps(data).decode().replace("<", "\\u003c")


def render_report(doc: Mapping[str, Any], source: str, generated_at: str | None = None,
                  max_customers: int = MAX_CUSTOMERS) -> str:
    """The whole HTML page: the dashboard's markup with its CSS, its script and the data inline."""
    page = asset("dashboard.html").decode()
    css = asset("dashboard.css").decode()
    js = asset("dashboard.js").decode()
    assert "</" not in js, "the script must not contain '</' (it would end its <script> element)"
    data = _json_for_script(report_data(doc, source, generated_at, max_customers))
    link = '<link rel="stylesheet" href="dashboard.css">'
    script = '<script src="dashboard.js"></script>'
    assert link in page and script in page, "dashboard.html changed: update html_report.render_report"
    title = f"Engagement report: {os.path.basename(source)}, as of {doc.get('as_of') or 'n/a'}"
    page = page.replace("<title>Engagement dashboard</title>", f"<title>{_escape(title)}</title>")
    page = page.replace('<meta charset="utf-8">',
                        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{REPORT_CSP}">\n'
                        '<meta name="generator" content="engagement report">')
    page = page.replace(link, f"<style>\n{css}</style>")
    return page.replace(script, f'<script id="report-data" type="application/json">{data}</script>\n'
                                f"<script>\n{js}</script>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
