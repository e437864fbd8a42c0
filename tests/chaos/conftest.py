"""Chaos fixtures: a real (bundled) broker, seeded workloads, worker processes that get killed."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.engine.clock import parse_rfc3339
from stream_app.simulate import Simulator

#: CHAOS_SEED=<n> replays one printed seed; by default the suite's seeds are fixed and printed
BASE_SEED = int(os.environ.get("CHAOS_SEED", "20261124"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker(start_timeout=30.0)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def workload(seed: int, events: int = 2500) -> list[bytes]:
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
