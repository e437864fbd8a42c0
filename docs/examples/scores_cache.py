"""A downstream consumer: a local cache of `engagement.scores` (docs/CONSUMER.md).

The cache maps each customer id to its latest SPEC §4 record; a tombstone (a null value) means
the customer was erased, and deletes the entry. Only aiokafka is needed:

    pip install aiokafka
    python scores_cache.py broker-1:9092 [engagement.scores]

It reads every partition from the start (no consumer group: each copy of a service keeps the
whole cache), says when it has caught up, then follows changes until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition


class ScoresCache:
    """customer id -> the customer's latest record."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return  # every scores record has a key (the customer id)
        customer_id = key.decode()
        if value is None:  # a tombstone: the customer was erased; forget our copy too
            self.records.pop(customer_id, None)
        else:  # a customer's records are in one partition, in order: the last one wins
            self.records[customer_id] = json.loads(value)


async def follow_scores(bootstrap: str, topic: str = "engagement.scores", cache: ScoresCache | None = None, *,
                        on_caught_up: Callable[[ScoresCache], None] | None = None,
                        stop_when_caught_up: bool = False) -> ScoresCache:
    """Fill `cache` from the start of `topic`, then keep it current.

    Caught up means every partition was read up to its end when the cache started: the high-water
    mark of its first fetch (some brokers' ListOffsets reports less, so that is not used).
    """
    cache = cache if cache is not None else ScoresCache()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")  # add security_protocol=..., sasl_* as needed
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            raise SystemExit(f"no topic {topic!r} on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}  # each partition's end when we started
        caught_up = False
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    cache.apply(record.key, record.value)
            if not caught_up and await _reached(consumer, tps, ends):
                caught_up = True
                if on_caught_up is not None:
                    on_caught_up(cache)
                if stop_when_caught_up:
                    return cache
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
    for tp in tps:
        if tp not in ends:
            end = consumer.highwater(tp)  # from a fetch response; None before the first one
            if end is None:
                return False
            ends[tp] = end
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


def main() -> None:
    bootstrap = sys.argv[1] if len(sys.argv) > 1 else "localhost:9092"
    topic = sys.argv[2] if len(sys.argv) > 2 else "engagement.scores"

    def ready(cache: ScoresCache) -> None:
        tiers: dict[str, int] = {}
        for record in cache.records.values():
            tiers[record["tier"]] = tiers.get(record["tier"], 0) + 1
        print(f"caught up: {len(cache.records)} customers, tiers {tiers}", flush=True)

    try:
        asyncio.run(follow_scores(bootstrap, topic, on_caught_up=ready))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
