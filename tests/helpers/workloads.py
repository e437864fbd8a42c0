"""Workloads for the broker tests: real orders with synthetic traffic, and seeded chaos streams."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

from stream_app.engine.clock import parse_rfc3339
from stream_app.simulate import Simulator

DATA = Path(__file__).resolve().parents[2] / "data" / "online-retail-orders.jsonl.gz"


def retail_workload() -> list[bytes]:
    """The Online Retail orders plus synthetic clicks/social/carts of 2011, with ~2% bad lines."""
    retail = [line.rstrip(b"\n") for line in gzip.open(DATA) if line.strip()]
    sim = Simulator(customers=300, seed=11, start=parse_rfc3339("2011-01-01T00:00:00Z"), days=330,  # type: ignore[arg-type]
                    bad_rate=0.02, prefix="uci-1")
    synthetic = list(sim.lines(4000))
    # interleave by position so the synthetic traffic overlaps the orders in time
    out: list[bytes] = []
    step = max(1, len(retail) // len(synthetic))
    for i, line in enumerate(retail):
        out.append(line)
        if i % 997 == 0:
            out.append(line)  # a producer retry: an exact duplicate right behind the original
        if i % step == 0 and synthetic:
            out.append(synthetic.pop(0))
    return out + synthetic


def chaos_workload(seed: int, events: int = 2500) -> list[bytes]:
    """Seeded shoppers over five months: out of order, ~1 % re-sent duplicates, ~1 % bad lines."""
    sim = Simulator(customers=60, seed=seed, start=parse_rfc3339("2011-01-01T00:00:00Z"),  # type: ignore[arg-type]
                    days=150, bad_rate=0.01, prefix=f"s{seed}")
    rng = random.Random(seed)
    out: list[bytes] = []
    for line in sim.lines(events):
        out.append(line)
        if rng.random() < 0.01:
            out.append(line)  # a producer retry
    return out
