"""SPEC §9 on the real (bundled) broker: an erasure request on the privacy topic deletes the
customer (tombstone on the scores topic, 404 from the API, its pending cart timer dropped) and the
store KPIs keep it only as anonymous aggregates; the audit agrees with the replay."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from stream_app.replay import replay_lines
from stream_app.stream.kafka_io import partition_for, read_topic
from tests.helpers.compare import assert_same
from tests.helpers.stream import WorkerProcess, isolated_settings, wait_for_audit
from tests.integration.test_stream import scrape


def _ev(eid: str, kind: str, cid: str, at: str, **fields: Any) -> bytes:
    return orjson.dumps({"event_id": eid, "type": kind, "customer_id": cid, "occurred_at": at, **fields})


def _same_partition(cid: str, partitions: int) -> str:
    """Another customer id in `cid`'s partition: it moves that partition's watermark."""
    want = partition_for(cid.encode(), partitions)
    return next(c for i in range(1000) if partition_for((c := f"neighbour-{i}").encode(), partitions) == want)


def _wait(predicate: Any, what: str, worker: WorkerProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}\n{worker.tail()}")


def test_erasure_on_the_real_broker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path)
    ann, bob = "ann-erase", "bob-keep"
    other = _same_partition(ann, settings.partitions)
    before = [
        _ev("a1", "order_placed", ann, "2024-05-01T09:00:00Z", order_id="oa1", amount=120.0, channel="web"),
        _ev("a2", "order_placed", ann, "2024-05-01T09:10:00Z", order_id="oa2", amount=80.0, channel="app"),
        _ev("a3", "survey_response", ann, "2024-05-01T09:20:00Z", nps=10),
        _ev("a4", "email_sent", ann, "2024-05-01T09:25:00Z"),
        _ev("a5", "checkout_started", ann, "2024-05-01T09:30:00Z", cart_id="k1"),
        _ev("b1", "order_placed", bob, "2024-05-01T09:00:00Z", order_id="ob1", amount=30.0, channel="store"),
        _ev("n1", "page_view", other, "2024-05-01T09:00:00Z"),
    ]
    erase = _ev("x1", "customer_erased", ann, "2024-05-01T09:40:00Z")
    after = [_ev("n2", "page_view", other, "2024-05-01T12:00:00Z")]  # past ann's cart deadline
    worker = WorkerProcess(settings, tmp_path)
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, before))
        _wait(lambda: worker.get(f"/customers/{ann}")[0] == 200, "ann's record", worker)
        kpis_before = replay_lines(before)["kpis"]
        # one topic at a time: ingest does not order messages across input topics
        asyncio.run(produce_lines(settings, [erase]))
        _wait(lambda: worker.get(f"/customers/{ann}")[0] == 404, "ann's 404", worker)
        assert worker.get(f"/customers/{bob}")[0] == 200
        asyncio.run(produce_lines(settings, after))
        _wait(lambda: worker.get(f"/customers/{other}")[1].get("events_total") == 2, "the neighbour", worker)

        # the scores topic ends with a tombstone for ann's key
        scores = asyncio.run(read_topic(settings, settings.topic_scores, idle_ms=800))
        last: dict[bytes, bytes | None] = {}
        for rs in scores.values():
            for r in rs:
                last[r.key] = r.value
        assert ann.encode() in last and last[ann.encode()] is None
        assert last[bob.encode()] is not None

        diffs = wait_for_audit(settings)
        assert diffs == [], "\n".join(diffs[:20]) + "\n" + worker.tail()

        # SPEC §10: the erased customer leaves every segment it held, at the watermark once the
        # erasure is applied, in definition order (here: promoters for its NPS 10, omnichannel for
        # web + app); the audit above compared every customer's changes with the replay of the
        # re-keyed topic (ingest does not keep the order across input topics, so not the file's)
        changes = asyncio.run(read_topic(settings, settings.topic_segment_changes, idle_ms=800))
        ann_changes = [orjson.loads(r.value) for rs in changes.values() for r in rs if r.key == ann.encode()]
        assert [c for c in ann_changes if c["reason"] == "erasure"] == [
            {"customer_id": ann, "segment": s, "change": "left", "at": "2024-05-01T09:40:00Z", "reason": "erasure"}
            for s in ("promoters", "omnichannel")]
        assert ann_changes[-2:] == [c for c in ann_changes if c["reason"] == "erasure"]

        # no abandoned cart for the erased customer, although its deadline has passed
        alerts = asyncio.run(read_topic(settings, settings.topic_alerts, idle_ms=800))
        assert not [r for rs in alerts.values() for r in rs if r.key == ann.encode()]

        expected = replay_lines([*before, erase, *after])
        assert expected["counts"]["erased"] == 1

        def kpis_caught_up() -> bool:
            status, doc = worker.get("/kpis")
            return status == 200 and doc["as_of"] == expected["kpis"]["as_of"]

        _wait(kpis_caught_up, "the KPI document after the erasure", worker)
        kpis = worker.get("/kpis")[1]
        assert_same(kpis, expected["kpis"])
        # what SPEC §9 keeps and what it removes, stated by hand
        assert (kpis["orders"], kpis["revenue"]) == (kpis_before["orders"], kpis_before["revenue"]) == (3, 230.0)
        assert (kpis_before["identified_orders"], kpis["identified_orders"]) == (3, 1)
        assert (kpis_before["customers"], kpis["customers"]) == (2, 1)
        assert kpis["survey_responses"] == 1 and kpis["engagement_30d"]["email_sent"] == 1
        assert kpis["engagement_30d"]["omnichannel_customers"] == 0
        assert kpis["engagement_30d"]["customers_by_channel"]["web"] == 0

        assert scrape(worker).total("engagement_erasures_total") == 1
    finally:
        worker.stop()
