"""Segments (SPEC §10) through a real worker on the bundled broker, against the brute-force oracle
(`tests/oracle.py`) per partition of the re-keyed topic: the segment-changes topic per customer,
the records' and the KPI document's `segments`, `GET /segments` and the segment metrics."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

from stream_app.broker import EmbeddedBroker
from stream_app.engine import DEFAULT_CONFIG
from stream_app.engine.segments import segment_set
from stream_app.produce import produce_lines
from tests.helpers.chaos import expected, observe, read_all, wait_until_exact
from tests.helpers.schemas import validator
from tests.helpers.stream import WorkerProcess, isolated_settings
from tests.helpers.workloads import chaos_workload
from tests.integration.test_stream import scrape

SEED = 20261205


def test_segment_changes_records_kpis_api_and_metrics_equal_the_oracle(broker: EmbeddedBroker,
                                                                       tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path)
    worker = WorkerProcess(settings, tmp_path)
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, chaos_workload(SEED, 3000)))
        diffs = wait_until_exact(settings, SEED)  # segment changes per customer, records, KPIs, state
        assert diffs == [], "\n".join(diffs[:15]) + "\n" + worker.tail()

        events = asyncio.run(read_all(settings, [settings.topic_events]))[settings.topic_events]
        want = expected(settings, events)
        changes = [c for cs in want.segment_changes.values() for c in cs]
        # not vacuous: customers entered and left segments, on events and at midnight sweeps
        assert {(c["change"], c["reason"]) for c in changes} >= {("entered", "event"), ("left", "event"),
                                                                  ("left", "sweep")}
        got = asyncio.run(observe(settings))
        assert set(got.segment_changes) == set(want.segment_changes)
        assert any(r is not None and r["segments"] for r in got.records.values())

        assert want.kpis is not None and got.kpis is not None
        members = want.kpis["segments"]
        assert list(members) == list(segment_set(DEFAULT_CONFIG).names) and sum(members.values()) > 0
        assert got.kpis["segments"] == members

        status, body = worker.get("/segments")
        assert status == 200, body
        validator("http_segments").validate(body)
        assert body == {"segments": [{**s.definition(), "members": members[s.name]}
                                     for s in segment_set(DEFAULT_CONFIG).segments]}
        assert worker.get("/kpis")[1]["segments"] == members

        scraped = scrape(worker)
        for name, n in members.items():
            assert scraped.total("engagement_segment_members", segment=name) == n, name
        # no crash: each change was published once (an event applied again after its id was
        # forgotten repeats a change on both sides)
        for (segment, change, reason), n in Counter((c["segment"], c["change"], c["reason"])
                                                    for c in changes).items():
            assert scraped.total("engagement_segment_changes_total", segment=segment, change=change,
                                 reason=reason) == n, (segment, change, reason)
        assert scraped.total("engagement_segment_changes_total") == len(changes)
    finally:
        worker.stop()
