"""Crash safety (docs/RELIABILITY.md): kill -9 anywhere, a worker taken over, a hung broker, SIGTERM.

Every scenario ends with `wait_until_exact`: every output topic and the committed state against
the oracle, per partition of the re-keyed topic. Seeds are printed; CHAOS_SEED replays them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from tests.helpers.chaos import wait_until_exact
from tests.helpers.stream import WorkerProcess, isolated_settings
from tests.helpers.workloads import chaos_workload as workload

#: CHAOS_SEED=<n> replays a printed seed; by default the suite's seeds are fixed (and printed)
BASE_SEED = int(os.environ.get("CHAOS_SEED", "20261124"))
#: where a run's kill lands: a failpoint in the write order, or a plain SIGKILL at a random moment
KINDS = ("score_after_outputs", "score_mid_state", "score_after_state", "ingest_after_send",
         "kpi_publish", "random", "recovery_mid")
RUNS = 21


def producing(settings, lines: list[bytes], rate: float) -> threading.Thread:  # type: ignore[no-untyped-def]
    t = threading.Thread(target=lambda: asyncio.run(produce_lines(settings, lines, rate=rate)), daemon=True)
    t.start()
    return t


def wait_killed(worker: WorkerProcess, timeout: float) -> bool:
    try:
        worker.proc.wait(timeout)
    except Exception:  # noqa: BLE001 - still running
        return False
    return worker.proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("run", range(RUNS))
def test_sigkill_anywhere_loses_and_doubles_nothing(broker: EmbeddedBroker, tmp_path: Path, run: int) -> None:
    seed = BASE_SEED + run
    rng = random.Random(seed)
    kind = KINDS[run % len(KINDS)]
    count = rng.randint(1, 3) if kind == "kpi_publish" else rng.randint(1, 8)  # ~1 document a second
    # a restore that dies must have something to read: the memory store reads the whole changelog
    store = "memory://" if kind == "recovery_mid" else rng.choice(("memory://", "rocksdb://"))
    print(f"chaos run={run} seed={seed} kill={kind}:{count} store={store}")
    settings = isolated_settings(broker, tmp_path, store=store, changelog_batch_records=rng.choice((3, 7, 0)))
    lines = workload(seed)
    armed = {} if kind in ("random", "recovery_mid") else {"ENGAGEMENT_FAILPOINT": f"{kind}:{count}"}
    worker = WorkerProcess(settings, tmp_path, "w-a", **armed)
    workers = [worker]
    try:
        worker.wait_ready()
        feed = producing(settings, lines, rate=1500)
        if armed:
            assert wait_killed(worker, 40), f"seed={seed}: failpoint {kind}:{count} never hit\n{worker.tail()}"
        else:
            time.sleep(rng.uniform(0.3, 2.0))
            worker.kill()
        if kind == "recovery_mid":
            # the restart dies while it reads the changelog; the one after must still be exact
            worker = WorkerProcess(settings, tmp_path, "w-b", ENGAGEMENT_FAILPOINT="recovery_mid:1")
            workers.append(worker)
            assert wait_killed(worker, 40), f"seed={seed}: recovery failpoint never hit\n{worker.tail()}"
        feed.join(60)
        worker = WorkerProcess(settings, tmp_path, "w-c")
        workers.append(worker)
        worker.wait_ready()
        diffs = wait_until_exact(settings, seed)
        assert diffs == [], "\n".join(diffs[:15]) + "\n" + worker.tail()
    finally:
        for w in workers:
            w.stop()


def test_survivor_takes_over_a_killed_worker(broker: EmbeddedBroker, tmp_path: Path) -> None:
    seed = BASE_SEED + 100
    print(f"chaos takeover seed={seed}")
    settings = isolated_settings(broker, tmp_path)
    w1 = WorkerProcess(settings, tmp_path, "w1")
    w2 = WorkerProcess(settings, tmp_path, "w2")
    try:
        w1.wait_ready()
        w2.wait_ready()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(w2.get("/readyz")[1].get("partitions", [])) != 2:
            time.sleep(0.2)
        feed = producing(settings, workload(seed, 4000), rate=1500)
        time.sleep(1.0)
        w1.kill()
        killed = time.monotonic()
        took = None
        while time.monotonic() - killed < 30:
            status, body = w2.get("/readyz")
            if status == 200 and body["partitions"] == [0, 1, 2, 3]:
                took = time.monotonic() - killed
                break
            time.sleep(0.1)
        print(f"takeover: the survivor scored every partition {took} s after the kill")
        assert took is not None and took < 10, w2.tail()
        feed.join(60)
        diffs = wait_until_exact(settings, seed)
        assert diffs == [], "\n".join(diffs[:15]) + "\n" + w2.tail()
    finally:
        w1.stop()
        w2.stop()


def test_hung_broker_for_20s_then_back(tmp_path: Path) -> None:
    seed = BASE_SEED + 200
    print(f"chaos hung-broker seed={seed}")
    broker = EmbeddedBroker(start_timeout=30.0)
    broker.start()
    worker = None
    try:
        settings = isolated_settings(broker, tmp_path)
        worker = WorkerProcess(settings, tmp_path, "w1")
        worker.wait_ready()
        feed = producing(settings, workload(seed), rate=1500)
        time.sleep(1.0)
        os.kill(broker.pid, signal.SIGSTOP)
        time.sleep(20)
        os.kill(broker.pid, signal.SIGCONT)
        feed.join(90)
        if worker.proc.poll() is not None:
            print(f"worker exited with {worker.proc.returncode} while the broker hung; restarting it")
            worker = WorkerProcess(settings, tmp_path, "w2")
            worker.wait_ready()
        diffs = wait_until_exact(settings, seed, timeout=120)
        assert diffs == [], "\n".join(diffs[:15]) + "\n" + worker.tail()
        assert worker.proc.poll() is None, "the worker must survive a hung broker\n" + worker.tail()
    finally:
        if worker is not None:
            worker.stop()
        os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


def test_sigterm_mid_stream_stops_cleanly_and_resumes(broker: EmbeddedBroker, tmp_path: Path) -> None:
    seed = BASE_SEED + 300
    print(f"chaos sigterm seed={seed}")
    settings = isolated_settings(broker, tmp_path, store="rocksdb://")
    worker = WorkerProcess(settings, tmp_path, "w1")
    try:
        worker.wait_ready()
        feed = producing(settings, workload(seed), rate=1500)
        time.sleep(1.0)
        t0 = time.monotonic()
        worker.proc.terminate()
        rc = worker.proc.wait(20)
        print(f"SIGTERM: exited {rc} after {time.monotonic() - t0:.2f} s")
        assert rc == 0, worker.tail()
        worker.stop()
        feed.join(60)
        worker = WorkerProcess(settings, tmp_path, "w2")
        worker.wait_ready()
        diffs = wait_until_exact(settings, seed)
        assert diffs == [], "\n".join(diffs[:15]) + "\n" + worker.tail()
    finally:
        worker.stop()
