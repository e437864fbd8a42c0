"""The stream end to end on the real (bundled) broker: produce, score, publish, audit."""

from __future__ import annotations

import asyncio
import gzip
from collections import Counter
from pathlib import Path

import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.engine.clock import parse_rfc3339
from stream_app.produce import produce_lines
from stream_app.replay import replay_lines
from stream_app.audit import expected_outputs
from tests.unit.test_schemas import _validator
from stream_app.simulate import Simulator
from stream_app.stream.kafka_io import read_topic

from tests.integration.stream_helpers import WorkerProcess, dead_letter_reasons, isolated_settings, wait_for_audit

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "online-retail-orders.jsonl.gz"


def workload() -> list[bytes]:
    """The Online Retail orders plus synthetic clicks/social/carts of 2011, with ~2% bad lines."""
    retail = [line.rstrip(b"\n") for line in gzip.open(DATA) if line.strip()]
    sim = Simulator(customers=300, seed=11, start=parse_rfc3339("2011-01-01T00:00:00Z"), days=330,  # type: ignore[arg-type]
                    bad_rate=0.02, prefix="uci-1")
    synthetic = list(sim.lines(4000))
    # interleave by position so the synthetic traffic overlaps the orders in time
    out: list[bytes] = []
    step = max(1, len(retail) // len(synthetic))
    for i, line in enumerate(retail):
        out.append(line)
        if i % 997 == 0:
            out.append(line)  # a producer retry: an exact duplicate right behind the original
        if i % step == 0 and synthetic:
            out.append(synthetic.pop(0))
    return out + synthetic


class Scrape:
    def __init__(self, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        self.samples = [s for fam in text_string_to_metric_families(text) for s in fam.samples]

    def total(self, name: str, **labels: str) -> float:
        return sum(s.value for s in self.samples
                   if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def scrape(worker: WorkerProcess) -> Scrape:
    import urllib.request

    with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        return Scrape(resp.read().decode())


def close(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9)
    return a == b


def test_stream_matches_replay_and_dead_letters(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path)
    lines = workload()
    worker = WorkerProcess(settings, tmp_path)
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, lines))
        diffs = wait_for_audit(settings)
        assert diffs == [], "\n".join(diffs[:20]) + "\n" + worker.tail()

        expected = replay_lines(lines)
        status, kpis = worker.get("/kpis")
        assert status == 200
        assert kpis.keys() == expected["kpis"].keys()
        for field, value in expected["kpis"].items():
            assert close(kpis[field], value), (field, kpis[field], value)
        assert kpis["orders"] > 19_000  # the Online Retail orders are in the window

        dead = dead_letter_reasons(settings)
        assert Counter(d["reason"] for d in dead) == Counter(d["reason"] for d in expected["dead_letters"])
        assert len(dead) == expected["counts"]["rejected"] > 0
        assert all({"topic", "partition", "offset"} <= d["source"].keys() and d["payload"] for d in dead)

        cid = "uci-17850"
        status, record = worker.get(f"/customers/{cid}")
        assert status == 200 and record["customer_id"] == cid
        _validator("customer_record").validate(record)
        _validator("kpis").validate(kpis)
        for path in ("/customers/nobody", f"/customers/{cid}?as_of=2000-01-01T00:00:00Z",
                     f"/customers/{cid}?as_of=soon"):
            _validator("http_error").validate(worker.get(path)[1])
        _validator("http_ready").validate(worker.get("/readyz")[1])
        replayed = replay_lines(lines, as_of=None)["customers"][cid]
        assert record["events_total"] == replayed["events_total"]
        assert worker.get("/customers/nobody")[0] == 404
        assert worker.get(f"/customers/{cid}?as_of=2000-01-01T00:00:00Z")[0] == 400
        status, later = worker.get(f"/customers/{cid}?as_of=2030-01-01T00:00:00Z")
        assert status == 200 and later["score"] < record["score"]
        assert worker.get("/healthz") == (200, {"status": "ok"})

        scraped = scrape(worker)
        counts = expected["counts"]
        assert scraped.total("engagement_events_total", outcome="applied") == counts["applied"]
        assert scraped.total("engagement_events_total", outcome="duplicate") == counts["duplicates"] > 0
        assert scraped.total("engagement_events_total", outcome="rejected") == counts["rejected"]
        for reason, n in Counter(d["reason"] for d in expected["dead_letters"]).items():
            assert scraped.total("engagement_dead_letters_total", reason=reason) == n
        per_partition = expected_outputs(settings, asyncio.run(read_topic(settings, settings.topic_events)))
        assert scraped.total("engagement_tier_changes_total") == sum(map(len, per_partition["tier_changes"].values()))
        assert scraped.total("engagement_alerts_total") == sum(map(len, per_partition["alerts"].values()))
        assert scraped.total("engagement_customers") == len(per_partition["records"])
        assert scraped.total("engagement_store_kpi", kpi="orders") == expected["kpis"]["orders"]
        assert scraped.total("engagement_ready") == 1
    finally:
        worker.stop()
