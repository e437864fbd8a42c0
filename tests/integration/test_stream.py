"""The stream end to end on the real (bundled) broker: produce, score, publish, audit."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest

from stream_app.audit import expected_outputs
from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from stream_app.replay import replay_lines
from stream_app.stream.kafka_io import read_topic
from tests.helpers.schemas import validator as _validator
from tests.helpers.stream import (
    WorkerProcess,
    dead_letter_reasons,
    isolated_settings,
    wait_for_audit,
)
from tests.helpers.workloads import retail_workload as workload


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
        assert record["segments"] == replay_lines(lines, as_of=None)["customers"][cid]["segments"]
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
        # segments (SPEC §10): the audit above compared the segment-changes topic per customer
        published_changes = sum(map(len, per_partition["segment_changes"].values()))
        assert scraped.total("engagement_segment_changes_total") == published_changes > 0
        assert kpis["segments"] == expected["kpis"]["segments"] and sum(kpis["segments"].values()) > 0
        for name, n in kpis["segments"].items():
            assert scraped.total("engagement_segment_members", segment=name) == n, name
        status, segments = worker.get("/segments")
        assert status == 200
        _validator("http_segments").validate(segments)
        assert [(s["name"], s["members"]) for s in segments["segments"]] == list(kpis["segments"].items())
        assert scraped.total("engagement_customers") == len(per_partition["records"])
        assert scraped.total("engagement_store_kpi", kpi="orders") == expected["kpis"]["orders"]
        assert scraped.total("engagement_ready") == 1
    finally:
        worker.stop()
