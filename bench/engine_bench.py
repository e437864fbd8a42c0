"""Engine and replay throughput, bytes per customer (DESIGN: measured, not asserted in tests)."""

from __future__ import annotations

import dataclasses
import gc
import gzip
import math
import os
import time
from typing import Any

from stream_app.engine import COMPILED, DEFAULT_CONFIG, EngineConfig, Unit
from stream_app.engine.clock import DAY
from stream_app.engine.events import Event
from stream_app.replay import Replay, replay_file
from stream_app.simulate import Simulator
from stream_app.validation import validate_bytes

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "online-retail-orders.jsonl.gz")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: SPEC §10 `{"segments": []}`: segments off (the bench's default config has the built-in ones)
SEGMENTS_OFF = EngineConfig(segments='{"segments": []}')


def bench_replay(n: int, config: EngineConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    lines = list(Simulator(customers=max(1000, n // 20), seed=1).lines(n))
    numbered = list(enumerate(lines, start=1))
    r = Replay(config)
    gc.collect()
    t0 = time.perf_counter()
    r.feed(numbered)
    r.document()
    dt = time.perf_counter() - t0
    events = [validate_bytes(line) for line in lines]
    del lines, numbered
    u = Unit(config)
    gc.collect()
    t0 = time.perf_counter()
    offer = u.offer
    for ev in events:
        offer(ev)  # type: ignore[arg-type]
    dt2 = time.perf_counter() - t0
    # COMPILED: the mypyc-compiled engine (false: interpreted, ENGAGEMENT_PURE_PYTHON or no compiler)
    return {"events": n, "engine_compiled": COMPILED, "replay_events_per_s": round(n / dt),
            "engine_events_per_s": round(n / dt2), "replay_s": round(dt, 3), "engine_s": round(dt2, 3)}


def bench_online_retail() -> dict[str, Any]:
    t0 = time.perf_counter()
    doc = replay_file(DATA)
    return {"online_retail_replay_s": round(time.perf_counter() - t0, 3),
            "online_retail_events": doc["counts"]["applied"]}


CLV_MODEL = os.path.join(os.path.dirname(__file__), "..", "data", "clv-model-online-retail.json")


def bench_clv() -> dict[str, Any]:
    """SPEC §11's cost: the Online Retail replay with the shipped model and without, and the time
    to build one record (what the stream pays per published record) with and without it."""
    from stream_app.engine.clv import load_model

    with_model = dataclasses.replace(DEFAULT_CONFIG, clv_model=load_model(CLV_MODEL))
    out: dict[str, Any] = {}
    for name, cfg in (("no_model", DEFAULT_CONFIG), ("model", with_model)):
        best = math.inf
        for _ in range(3):
            t0 = time.perf_counter()
            replay_file(DATA, config=cfg)
            best = min(best, time.perf_counter() - t0)
        out[f"online_retail_replay_s_{name}"] = round(best, 3)
    r = Replay(with_model)
    with gzip.open(DATA, "rb") as f:
        r.feed(enumerate(f, start=1))
    customers = list(r.unit.customers.values())
    for name, cfg in (("no_model", DEFAULT_CONFIG), ("model", with_model)):
        best = math.inf
        for _ in range(5):
            t0 = time.perf_counter()
            for c in customers:
                c.read(None, cfg, [])
            best = min(best, time.perf_counter() - t0)
        out[f"record_us_{name}"] = round(best / len(customers) * 1e6, 2)
    return out


def bench_memory(customers: int) -> dict[str, Any]:
    """RSS growth per customer: `customers` customers with 3 events each over 90 days. The unit's
    outputs (tier changes, alerts) are drained every 1,000 events, as every shell does: what stays
    is the state. Each customer's first tier change is an output record of about 400 bytes; kept
    undrained, as until issue 11, it was counted as if it were state."""
    base = 1_704_067_200_000_000  # 2024-01-01
    step = 90 * DAY // (3 * customers)
    u = Unit()
    gc.collect()
    before = rss_bytes()
    t = base
    for i in range(3 * customers):
        c = i % customers
        t += step
        kind = i // customers
        if kind == 1:
            ev = Event(f"e{i}", "order_placed", "orders", f"cust-{c:07d}", t, order_id=f"o{i}", amount=25.0)
        else:
            ev = Event(f"e{i}", "product_view" if kind == 0 else "like",
                       "clicks" if kind == 0 else "social", f"cust-{c:07d}", t)
        u.offer(ev)
        if i % 1000 == 999:
            u.drain()
    u.drain()
    gc.collect()
    after = rss_bytes()
    return {"memory_customers": customers, "bytes_per_customer": round((after - before) / customers),
            "memory_recent_event_ids": len(u.seen)}
