"""docs/examples/scores_cache.py (docs/CONSUMER.md) against the real broker: the local cache of a
scores topic holds each customer's last record, and a tombstone deletes the customer."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path
from types import ModuleType

import orjson

from stream_app.broker import EmbeddedBroker
from tests.helpers.stream import isolated_settings
from tests.integration.test_tail import produce

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "scores_cache.py"


def example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scores_cache", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(cid: str, tier: str, score: float) -> bytes:
    return orjson.dumps({"customer_id": cid, "tier": tier, "score": score})


def test_the_cache_keeps_the_last_record_per_customer_and_forgets_the_erased(broker: EmbeddedBroker,
                                                                             tmp_path: Path) -> None:
    mod = example()
    settings = isolated_settings(broker, tmp_path)
    asyncio.run(produce(settings, settings.topic_scores,
                        [(b"c1", record("c1", "bronze", 1.0)), (b"c2", record("c2", "silver", 20.0)),
                         (b"c3", record("c3", "bronze", 3.0)), (b"c1", record("c1", "gold", 60.0)),
                         (b"c2", None)],  # c2 erased
                        [(b"c3", record("c3", "silver", 30.0)), (b"c4", record("c4", "bronze", 4.0))]))
    seen: list[int] = []
    cache = asyncio.run(mod.follow_scores(broker.url.split("://", 1)[1], settings.topic_scores,
                                          on_caught_up=lambda c: seen.append(len(c.records)),
                                          stop_when_caught_up=True))
    assert cache.records == {"c1": {"customer_id": "c1", "tier": "gold", "score": 60.0},
                             "c3": {"customer_id": "c3", "tier": "silver", "score": 30.0},
                             "c4": {"customer_id": "c4", "tier": "bronze", "score": 4.0}}
    assert seen == [3]


def test_the_cache_applies_records_and_tombstones() -> None:
    cache = example().ScoresCache()
    cache.apply(b"c1", record("c1", "gold", 1.0))
    cache.apply(None, b"{}")
    cache.apply(b"c2", None)  # a tombstone for a customer never seen
    assert list(cache.records) == ["c1"]
    cache.apply(b"c1", None)
    assert cache.records == {}
