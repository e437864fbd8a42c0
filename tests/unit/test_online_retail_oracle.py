"""The bundled Online Retail orders (data/README.md): `engagement replay` equals the brute-force oracle.

The oracle recomputes from the full history at every step (quadratic), so it runs on a fixed
sample: every 16th customer's whole year plus every 10th guest order. The full file's store KPIs
are checked against plain grouping in test_replay.py.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson

from stream_app.replay import replay_lines
from tests.helpers.compare import assert_same, without_alert_ids
from tests.oracle import oracle_document

DATA = Path(__file__).resolve().parents[2] / "data" / "online-retail-orders.jsonl.gz"


def test_online_retail_sample_matches_oracle() -> None:
    rows = [json.loads(line) for line in gzip.open(DATA)]
    customers = sorted({r["customer_id"] for r in rows if r.get("customer_id")})[::16]
    keep = set(customers)
    guests = [i for i, r in enumerate(rows) if not r.get("customer_id")][::10]
    chosen = set(guests)
    sample = [r for i, r in enumerate(rows) if r.get("customer_id") in keep or i in chosen]
    assert len(keep) > 250 and len(sample) > 1500
    expected = oracle_document(sample)
    actual = replay_lines([orjson.dumps(r) for r in sample])
    assert_same(without_alert_ids(actual), without_alert_ids(expected))
    assert len(actual["tier_changes"]) > len(keep) and actual["alerts"]  # it exercised tiers and churn
