"""Predicted lifetime value (SPEC §11) through a real worker on the bundled broker: with the
shipped model, every published record's and committed state's `clv` equals the brute-force
oracle's (tests/oracle.py, 45-digit evaluation) per partition, and the HTTP API's record at a
later `as_of` equals the replay's at that instant."""

from __future__ import annotations

import asyncio
from pathlib import Path

from stream_app.broker import EmbeddedBroker
from stream_app.engine import Unit
from stream_app.engine.clock import format_instant, parse_rfc3339
from stream_app.produce import produce_lines
from stream_app.stream.kafka_io import read_topic
from stream_app.validation import Rejection, decode_rekeyed
from tests.helpers.chaos import observe, wait_until_exact
from tests.helpers.stream import WorkerProcess, isolated_settings
from tests.helpers.workloads import chaos_workload

SEED = 20261206
MODEL = str(Path(__file__).resolve().parents[2] / "data" / "clv-model-online-retail.json")


def test_published_clv_equals_the_oracle_and_the_api_equals_the_replay(broker: EmbeddedBroker,
                                                                      tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path, clv_model_file=MODEL)
    assert settings.engine_config().clv_model is not None
    worker = WorkerProcess(settings, tmp_path)
    try:
        worker.wait_ready()
        lines = chaos_workload(SEED, 2000)
        asyncio.run(produce_lines(settings, lines))
        diffs = wait_until_exact(settings, SEED)  # records (clv included), changes, KPIs, state
        assert diffs == [], "\n".join(diffs[:15]) + "\n" + worker.tail()
        got = asyncio.run(observe(settings))
        with_clv = [r for r in got.records.values() if r is not None and r["clv"] is not None]
        assert with_clv and all(r["clv"]["model_version"] == settings.engine_config().clv_model.version
                                for r in with_clv)
        # the API at a later as_of equals a replay of the customer's partition at that instant
        cid = max(with_clv, key=lambda r: r["orders_total"])["customer_id"]
        as_of = format_instant(parse_rfc3339(max(r["as_of"] for r in got.records.values() if r)) + 86_400_000_000 * 40)
        status, rec = worker.get(f"/customers/{cid}?as_of={as_of}")
        assert status == 200, rec
        # the engine as replay runs it, over the customer's partition of the re-keyed topic
        partitions = asyncio.run(read_topic(settings, settings.topic_events))
        part = next(p for p, msgs in partitions.items() if any(m.key == cid.encode() for m in msgs))
        unit = Unit(settings.engine_config())
        for m in partitions[part]:
            ev = decode_rekeyed(m.value or b"", settings.input_topics, settings.currency)
            if type(ev) is not Rejection:
                unit.offer(ev)  # type: ignore[arg-type]
        want = unit.record(cid, parse_rfc3339(as_of))
        assert want is not None and want["clv"] is not None
        assert rec["clv"] == want["clv"] and rec["as_of"] == as_of
    finally:
        worker.stop()

