"""`make bench`: one JSON object on stdout and in bench-results.json."""

from __future__ import annotations

import argparse
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor

import orjson

from bench.engine_bench import SEGMENTS_OFF, bench_clv, bench_memory, bench_online_retail, bench_replay


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench-results.json")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--customers", type=int, default=1_000_000)
    p.add_argument("--stream-events", dest="stream_events", type=int, default=500_000)
    p.add_argument("--recovery-customers", dest="recovery_customers", type=int, default=1_000_000)
    p.add_argument("--worker-memory-customers", dest="worker_memory_customers", type=int, default=1_000_000)
    p.add_argument("--only", choices=["engine", "stream", "recovery", "worker-memory"], default=None)
    args = p.parse_args()
    results: dict[str, object] = {}
    if args.only in (None, "engine"):
        results.update(bench_replay(args.events))
        # SPEC §10 segments off, same workload: the cost of the built-in segments per event
        off = bench_replay(args.events, SEGMENTS_OFF)
        results.update({"segments_off_replay_events_per_s": off["replay_events_per_s"],
                        "segments_off_engine_events_per_s": off["engine_events_per_s"]})
        print(orjson.dumps(results).decode(), file=sys.stderr)
        results.update(bench_online_retail())
        results.update(bench_clv())  # SPEC §11: with the shipped model and without
        # in a fresh process: RSS growth here would reuse what the benches above freed
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            results.update(pool.submit(bench_memory, args.customers).result())
    if args.only in (None, "recovery"):
        from bench.recovery_bench import bench_recovery

        results.update(bench_recovery(args.recovery_customers))
    if args.only in (None, "worker-memory"):
        from bench.worker_memory_bench import bench_worker_memory

        results.update(bench_worker_memory(args.worker_memory_customers))
    if args.only in (None, "stream"):
        from bench.stream_bench import bench_stream

        results.update(bench_stream(args.stream_events))
    data = orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    with open(args.out, "wb") as f:
        f.write(data + b"\n")
    sys.stdout.write(data.decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
