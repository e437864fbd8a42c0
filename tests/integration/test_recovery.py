"""Two workers in one group, and a worker killed with SIGKILL mid-stream then restarted."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from stream_app.stream.kafka_io import partition_for
from tests.helpers.stream import WorkerProcess, isolated_settings, wait_for_audit
from tests.helpers.workloads import retail_workload as workload


def test_two_workers_split_partitions_and_route_http(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path)
    lines = workload()[:12_000]
    w1 = WorkerProcess(settings, tmp_path, "w1")
    w2 = WorkerProcess(settings, tmp_path, "w2")
    try:
        w1.wait_ready()
        w2.wait_ready()
        asyncio.run(produce_lines(settings, lines))
        diffs = wait_for_audit(settings)
        assert diffs == [], "\n".join(diffs[:20]) + w1.tail() + w2.tail()
        parts1 = set(w1.get("/readyz")[1]["partitions"])
        parts2 = set(w2.get("/readyz")[1]["partitions"])
        assert parts1 and parts2 and not parts1 & parts2 and parts1 | parts2 == {0, 1, 2, 3}
        # a customer owned by w2, asked of w1: routed to the owner
        cid = next(f"uci-{n}" for n in range(12_346, 18_288)
                   if partition_for(f"uci-{n}".encode(), 4) in parts2 and w2.get(f"/customers/uci-{n}")[0] == 200)
        s1, via_w1 = w1.get(f"/customers/{cid}")
        s2, direct = w2.get(f"/customers/{cid}")
        assert s1 == s2 == 200 and via_w1 == direct
        # the store KPIs are the same document on both workers (merged from every partition)
        assert w1.get("/kpis") == w2.get("/kpis")
    finally:
        w1.stop()
        w2.stop()


def test_kill_9_mid_stream_then_restart_loses_and_doubles_nothing(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path)
    lines = workload()
    worker = WorkerProcess(settings, tmp_path, "before")
    producer = threading.Thread(target=lambda: asyncio.run(produce_lines(settings, lines, rate=4000)))
    try:
        worker.wait_ready()
        producer.start()
        time.sleep(4.0)  # mid-stream: about half produced, part of it scored
        worker.kill()
        producer.join(60)
        worker = WorkerProcess(settings, tmp_path, "after")
        worker.wait_ready()
        diffs = wait_for_audit(settings)
        assert diffs == [], "\n".join(diffs[:20]) + worker.tail()
        # the restarted worker resumed from its changelog, not from an empty state
        restored = re.findall(r"partition \d+ ready: (\d+) customers, offset (-?\d+)", worker.tail(100_000))
        assert restored and any(int(n) > 0 and int(o) >= 0 for n, o in restored), worker.tail()
    finally:
        worker.stop()


def test_rocksdb_store_survives_kill_9_with_its_data_dir(broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path, store="rocksdb://")
    lines = workload()[:10_000]
    worker = WorkerProcess(settings, tmp_path, "rocks-before")
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, lines[:5_000]))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (tmp_path / "data").exists():
            time.sleep(0.5)
        time.sleep(3.0)
        worker.kill()
        worker = WorkerProcess(settings, tmp_path, "rocks-after")
        worker.wait_ready()
        asyncio.run(produce_lines(settings, lines[5_000:]))
        diffs = wait_for_audit(settings)
        assert diffs == [], "\n".join(diffs[:20]) + worker.tail()
        restored = re.findall(r"partition \d+ ready: (\d+) customers, offset (-?\d+)", worker.tail(100_000))
        assert restored and any(int(n) > 0 for n, _ in restored), worker.tail()
        assert any((tmp_path / "data").rglob("*.db")) or any((tmp_path / "data").rglob("CURRENT"))
    finally:
        worker.stop()
