"""A worker at INFO with an API token and a workload: its log has none of the workload's customer
ids, event ids, payloads or the token, and the HTTP API it serves asks for the token."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from stream_app.stream.kafka_io import partition_for
from tests.helpers.stream import WorkerProcess, dead_letter_reasons, isolated_settings, wait_for_audit


def workload(tag: str) -> tuple[list[bytes], list[str], list[str], str]:
    """(lines, customer ids, event ids, a marker that is only in the payloads)."""
    marker = f"payload-{tag}-marker"
    customers = [f"cust-{tag}-{i:03d}" for i in range(40)]
    lines: list[bytes] = []
    event_ids: list[str] = []
    for i, c in enumerate(customers):
        for j in range(5):
            eid = f"evt-{tag}-{i:03d}-{j}"
            event_ids.append(eid)
            day = 1 + j
            if j % 2:
                lines.append(orjson.dumps({"event_id": eid, "type": "page_view", "customer_id": c,
                                           "occurred_at": f"2024-03-{day:02d}T10:00:00Z", "channel": "web",
                                           "url": f"/products/{marker}/{i}"}))
            else:
                lines.append(orjson.dumps({"event_id": eid, "type": "order_placed", "customer_id": c,
                                           "order_id": f"ord-{tag}-{i}-{j}", "amount": 10.5 + j,
                                           "currency": "GBP", "channel": "web",
                                           "occurred_at": f"2024-03-{day:02d}T12:00:00Z"}))
    # rejected input: dead letters carry these payloads by design, the log must not
    for i, c in enumerate(customers[:5]):
        eid = f"evt-{tag}-bad-{i}"
        event_ids.append(eid)
        lines.append(orjson.dumps({"event_id": eid, "type": "order_placed", "customer_id": c,
                                   "order_id": f"ord-{tag}-bad-{i}", "amount": -3, "currency": "GBP",
                                   "channel": "web", "occurred_at": "2024-03-09T12:00:00Z", "note": marker}))
    return lines, customers, event_ids, marker


def http(url: str, token: str | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, orjson.loads(err.read() or b"null")


def test_info_log_has_no_ids_payloads_or_token(broker: EmbeddedBroker, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    token = f"tok-{uuid.uuid4().hex}"
    settings = isolated_settings(broker, tmp_path, log_level="info", partitions=2)
    lines, customers, event_ids, marker = workload(tag)
    worker = WorkerProcess(settings, tmp_path, ENGAGEMENT_API_TOKEN=token)
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, lines))
        assert wait_for_audit(settings) == []
        reasons = dead_letter_reasons(settings)
        assert len(reasons) == 5 and marker.encode() in orjson.dumps(reasons), \
            "the bad events reached the dead letters (with their payloads, by design)"
        # the API needs the token; with it, a customer of either partition reads back
        assert http(f"{worker.url}/customers/{customers[0]}")[0] == 401
        assert http(f"{worker.url}/kpis", token + "x")[0] == 401
        assert http(f"{worker.url}/kpis", token)[0] == 200
        status, record = http(f"{worker.url}/customers/{customers[1]}", token)
        assert status == 200 and record["customer_id"] == customers[1]
        assert http(f"{worker.url}/customers/cust-{tag}-unknown", token)[0] == 404
        assert http(f"{worker.url}/healthz")[0] == 200 and http(f"{worker.url}/readyz")[0] == 200
        assert {partition_for(c.encode(), 2) for c in customers} == {0, 1}
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert "INFO" in log, "the worker logged at INFO (the check would be empty otherwise)"
    leaked = [s for s in [*customers, *event_ids, marker, token, tag] if s in log]
    assert not leaked, f"the INFO log shows workload data: {leaked[:5]}"
