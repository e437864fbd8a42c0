"""Stream figures on the bundled broker, all on the same input topics in one run (issue #4).

- raw_consume_events_per_s: a plain aiokafka `getmany` consumer over the input topics
- faust_iterate_events_per_s: a bare Faust agent that only counts them
- stream_events_per_s: one worker, first ingest output to last scored output (record timestamps)
- latency_p50_ms / latency_p99_ms: produce -> record on engagement.scores at half that rate
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import EMBEDDED_PROFILE, Settings
from stream_app.engine.clock import SECOND, format_instant
from stream_app.produce import produce_lines
from stream_app.simulate import Simulator
from stream_app.stream.kafka_io import client_options, ensure_topics, read_topic
from stream_app.stream.launch import stop_process, worker_process


async def _consume_count(settings: Settings, topics: list[str], n: int) -> float:
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                fetch_max_bytes=52_428_800, max_partition_fetch_bytes=8_388_608,
                                **client_options(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        got = 0
        t0 = time.perf_counter()
        while got < n:
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got += sum(len(r) for r in batches.values())
        return n / (time.perf_counter() - t0)
    finally:
        await consumer.stop()


async def _faust_iterate(settings: Settings, topics: list[str], n: int, datadir: str) -> float:
    import faust

    app = faust.App(f"bench-iter-{uuid.uuid4().hex[:6]}", broker=settings.broker, store="memory://",
                    broker_session_timeout=settings.session_timeout_s,
                    broker_heartbeat_interval=settings.heartbeat_interval_s, web_enabled=False,
                    autodiscover=False, consumer_auto_offset_reset="earliest", topic_partitions=settings.partitions,
                    datadir=datadir)
    src = app.topic(*topics, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    done = asyncio.Event()
    state = {"count": 0, "t0": 0.0, "t1": 0.0}

    @app.agent(src)
    async def count(stream: Any) -> None:
        async for _ in stream:
            if state["count"] == 0:
                state["t0"] = time.perf_counter()
            state["count"] += 1
            if state["count"] >= n:
                state["t1"] = time.perf_counter()
                done.set()

    await app.start()
    try:
        await asyncio.wait_for(done.wait(), 600)
    finally:
        await app.stop()
    return n / (state["t1"] - state["t0"])


def _start_worker(settings: Settings, log_path: str) -> subprocess.Popen[bytes]:
    return worker_process(dataclasses.replace(settings, web_port=free_port(), log_level="warning"), log_path)


async def _wait_scored(settings: Settings, expected: int, timeout: float) -> None:
    """Until ingest has re-keyed every input and the scores topic has stopped growing for 3 s."""
    deadline = time.monotonic() + timeout
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(1)
        ev = await read_topic(settings, settings.topic_events, idle_ms=200, timeout_s=60)
        if sum(len(v) for v in ev.values()) < expected:
            continue
        scores = sum(len(v) for v in (await read_topic(settings, settings.topic_scores, idle_ms=200,
                                                        timeout_s=60)).values())
        if scores != last:
            last, stable_since = scores, time.monotonic()
        elif time.monotonic() - stable_since >= 3:
            return
    raise TimeoutError("the worker did not finish in time")


def _profile(workers: list[subprocess.Popen[bytes]], mode: str) -> list[subprocess.Popen[bytes]]:
    """With BENCH_PROFILE_DIR set: sample each worker with py-spy (collapsed stacks, one file per
    process), the profile docs/BENCHMARKS.md reads where the stream's time goes. py-spy is not a
    dependency: `pip install py-spy` first."""
    out = os.environ.get("BENCH_PROFILE_DIR")
    if not out:
        return []
    os.makedirs(out, exist_ok=True)
    return [subprocess.Popen(["py-spy", "record", "--pid", str(w.pid), "--format", "raw", "--rate", "200",
                              "--nonblocking", "-o", os.path.join(out, f"{mode}-{i}.txt")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for i, w in enumerate(workers)]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _outputs_of(settings: Settings, mode: str) -> Settings:
    """The same input topics; re-keyed and output topics, groups and state of their own."""
    tag = f"{settings.app_id}-{mode}"
    return dataclasses.replace(settings, app_id=tag, **{
        f"topic_{t}": f"{tag}.{t}" for t in ("events", "scores", "tier_changes", "alerts", "kpis", "segment_changes",
                                              "dead_letter")})


async def _run_mode(settings: Settings, mode: str, n: int, tmp: str, broker_pid: int,
                    results: dict[str, Any]) -> list[subprocess.Popen[bytes]]:
    """Start the workers of `mode` (`all`: one process; `split`: one ingest + one score process),
    wait until the n inputs are scored; records events/s and the CPU each process used."""
    await ensure_topics(settings)
    roles = {"all": ["all"], "two": ["all", "all"], "split": ["ingest", "score"]}[mode]
    cpu0 = _cpu_s(broker_pid)
    workers = [_start_worker(dataclasses.replace(settings, role=r), os.path.join(tmp, f"{mode}-{r}.log"))
               for r in roles]
    profilers = _profile(workers, mode)
    await _wait_scored(settings, n, timeout=900)
    for prof in profilers:
        prof.send_signal(signal.SIGINT)  # py-spy writes its samples and exits
        prof.wait(60)
    first, last, _ = await _drain_time(settings)
    rate = n / max((last - first) / 1000, 1e-3)
    key = "stream_events_per_s" if mode == "all" else f"stream_events_per_s_{mode}"
    results[key] = round(rate)
    results[f"cpu_s_{mode}"] = {"broker": round(_cpu_s(broker_pid) - cpu0, 1),
                                **{f"{r}{i}": round(_cpu_s(w.pid), 1) for i, (r, w) in enumerate(zip(roles, workers, strict=True))}}
    return workers


async def _drain_time(settings: Settings) -> tuple[int, int, dict[tuple[str, str], int]]:
    """(first ingest output ms, last score output ms, (customer, as_of) -> score ms)."""
    events = await read_topic(settings, settings.topic_events, idle_ms=500, timeout_s=300)
    first = min(r.timestamp for rs in events.values() for r in rs)
    scores = await read_topic(settings, settings.topic_scores, idle_ms=500, timeout_s=300)
    last = max(r.timestamp for rs in scores.values() for r in rs)
    by_key: dict[tuple[str, str], int] = {}
    for rs in scores.values():
        for r in rs:
            if r.value is None:
                continue  # a tombstone: an erased customer (SPEC §9)
            rec = orjson.loads(r.value)
            by_key.setdefault((rec["customer_id"], rec["as_of"]), r.timestamp)
    return first, last, by_key


async def bench_stream_async(n: int) -> dict[str, Any]:
    results: dict[str, Any] = {"stream_events": n}
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = Settings(broker=broker.url, partitions=4, app_id=f"bench-{uuid.uuid4().hex[:6]}",
                            data_dir=os.path.join(tmp, "data"),
                            # SPEC §10: the built-in segments, or a file (`{"segments": []}`: off)
                            segments_file=os.environ.get("ENGAGEMENT_SEGMENTS_FILE", ""),
                            clv_model_file=os.environ.get("ENGAGEMENT_CLV_MODEL_FILE", ""), **EMBEDDED_PROFILE)
        await ensure_topics(settings)
        lines = list(Simulator(customers=20_000, seed=5, days=365).lines(n))
        t0 = time.perf_counter()
        await produce_lines(settings, lines)
        results["produce_events_per_s"] = round(n / (time.perf_counter() - t0))
        inputs = list(settings.input_topics.values())
        results["raw_consume_events_per_s"] = round(await _consume_count(settings, inputs, n))
        results["faust_iterate_events_per_s"] = round(await _faust_iterate(settings, inputs, n, os.path.join(tmp, "iter")))

        workers: list[subprocess.Popen[bytes]] = []
        try:
            for mode in ("all", "two"):  # one worker process, then two in one group
                for w in await _run_mode(_outputs_of(settings, mode), mode, n, tmp, broker.pid, results):
                    stop_process(w, 20)
            settings = _outputs_of(settings, "split")
            workers = await _run_mode(settings, "split", n, tmp, broker.pid, results)
            for key in ("stream_events_per_s", "stream_events_per_s_two", "stream_events_per_s_split"):
                results[key.replace("events_per_s", "vs_faust_iterate")] = round(
                    results[key] / results["faust_iterate_events_per_s"], 3)
            rate = results["stream_events_per_s_split"]  # the workers still running: the latency is theirs
            results["stream_vs_raw_consume"] = round(rate / results["raw_consume_events_per_s"], 4)

            # latency at half the sustained rate: live events, produced with their wall-clock time
            half = max(50.0, rate / 2)
            m = int(half * 20)
            sim = Simulator(customers=5_000, seed=9, prefix="lat")
            now = int(time.time()) * SECOND
            live = []
            for ev in sim.events(m):
                ev["occurred_at"] = format_instant(now)  # unique per customer below
                live.append(ev)
            sent_at: dict[tuple[str, str], float] = {}
            stamped: list[bytes] = []
            for i, ev in enumerate(live):
                ev["occurred_at"] = format_instant(now + i)  # distinct instants: (customer, as_of) is unique
                if ev.get("customer_id"):
                    stamped.append(orjson.dumps(ev))
            start = time.time()
            await produce_lines(settings, stamped, rate=half)
            for i, raw in enumerate(stamped):
                ev = orjson.loads(raw)
                sent_at[(ev["customer_id"], ev["occurred_at"])] = (start + i / half) * 1000
            await asyncio.sleep(5)
            _, _, by_key = await _drain_time(settings)
            series = sorted((t, by_key[k] - t) for k, t in sent_at.items() if k in by_key)
            lat = sorted(v for _, v in series)
            quarter = max(1, len(series) // 4)
            results["latency_p99_ms_by_quarter"] = [
                round(sorted(v for _, v in series[i:i + quarter])[int(quarter * 0.99) - 1], 1)
                for i in range(0, quarter * 4, quarter)]
            if lat:
                results["latency_rate_events_per_s"] = round(half)
                results["latency_samples"] = len(lat)
                results["latency_p50_ms"] = round(lat[len(lat) // 2], 1)
                results["latency_p99_ms"] = round(lat[int(len(lat) * 0.99)], 1)
        finally:
            for w in workers:
                stop_process(w, 20)
    return results


def bench_stream(n: int) -> dict[str, Any]:
    return asyncio.run(bench_stream_async(n))
