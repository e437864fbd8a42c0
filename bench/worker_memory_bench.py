"""A real worker process's resident memory with 1,000,000 customers (memory store).

The state is made by the engine (three events per customer: an order on the web, a page view in
the app, an email sent, so each customer carries order and activity buckets, two channels and a
message bucket), written to the changelog in committed groups as the worker writes them, then a
worker process (`engagement worker`, ENGAGEMENT_STORE=memory://) restores it. Its VmRSS once
ready, minus that of the same worker with no state, divided by the customers, is the figure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.recovery_bench import _write
from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import EMBEDDED_PROFILE, Settings
from stream_app.engine import Unit
from stream_app.engine.clock import DAY, HOUR, parse_rfc3339
from stream_app.engine.events import Event
from stream_app.stream.kafka_io import ensure_topics, partition_for
from stream_app.stream.launch import stop_process, worker_process


def _units(customers: int, partitions: int) -> dict[int, Unit]:
    units = {p: Unit() for p in range(partitions)}
    t0 = parse_rfc3339("2011-06-01T00:00:00Z")
    assert t0 is not None
    for n in range(customers):
        cid = f"c-{n}"
        unit = units[partition_for(cid.encode(), partitions)]
        t = t0 + (n % 180) * DAY // 180
        unit.offer(Event(f"o-{n}", "order_placed", "orders", cid, t, "web", order_id=f"o-{n}",
                         amount=float(10 + n % 300)))  # type: ignore[call-arg]
        unit.offer(Event(f"v-{n}", "page_view", "clicks", cid, t + HOUR, "app"))
        unit.offer(Event(f"s-{n}", "email_sent", "clicks", cid, t + 2 * HOUR))
    return units


def _rss_when_ready(settings: Settings, tmp: str, name: str, timeout_s: float = 600.0) -> tuple[int, float]:
    port = free_port()
    proc = worker_process(dataclasses.replace(settings, web_port=port), Path(tmp) / f"{name}.log")
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited: {(Path(tmp) / f'{name}.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        ready_s = time.monotonic() - t0
        time.sleep(3)  # let the first batches and the KPI publication settle
        with open(f"/proc/{proc.pid}/status") as f:
            rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        return rss_kib * 1024, ready_s
    finally:
        stop_process(proc, 30)


def bench_worker_memory(customers: int = 1_000_000, partitions: int = 8) -> dict[str, Any]:
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        base = dict(broker=broker.url, partitions=partitions, data_dir=os.path.join(tmp, "data"),
                    store="memory://", log_level="warning", **EMBEDDED_PROFILE)
        empty = Settings(app_id="memory-bench-empty", **base)
        full = Settings(app_id="memory-bench", **base)
        for s in (empty, full):
            asyncio.run(ensure_topics(s))
        units = _units(customers, partitions)
        asyncio.run(_write(full, units))
        del units
        gc.collect()
        rss_empty, _ = _rss_when_ready(empty, tmp, "empty")
        rss_full, ready_s = _rss_when_ready(full, tmp, "full")
    return {
        "worker_memory_customers": customers,
        "worker_rss_empty_mib": round(rss_empty / 2**20),
        "worker_rss_mib": round(rss_full / 2**20),
        "worker_rss_bytes_per_customer": round(rss_full / customers),
        "worker_state_bytes_per_customer": round((rss_full - rss_empty) / customers),
        "worker_restore_ready_s": round(ready_s, 1),
    }


if __name__ == "__main__":
    import sys

    import orjson

    print(orjson.dumps(bench_worker_memory(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)).decode())
