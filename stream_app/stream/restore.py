"""Restoring owned partitions: local store + changelog -> committed state -> engine units.

Used by the scoring loop on assignment and by the recovery benchmark, so both measure and run
the same code. Several partitions are read with one consumer, in parallel fetches.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import OffsetOutOfRangeError

from stream_app.engine import EngineConfig
from stream_app.stream import failpoints
from stream_app.stream.changelog import ChangelogReplayer
from stream_app.stream.kafka_io import BatchSender
from stream_app.stream.processor import PartitionProcessor
from stream_app.stream.state_store import StateStore

log = logging.getLogger(__name__)


async def read_changelog(consumer: AIOKafkaConsumer, topic: str, replayers: dict[int, ChangelogReplayer],
                         stall_s: float = 60.0) -> set[int]:
    """Feed each partition's replayer every record after its offset, up to the high-water mark.

    The high-water mark comes from fetch responses: the bundled broker's ListOffsets answers the
    start of the last record batch (docs/BROKER.md). Returns the partitions whose local offset
    the topic does not have (recreated, or cut by retention): their local copy cannot be used.
    """
    tps = {TopicPartition(topic, p): r for p, r in replayers.items()}
    consumer.assign(list(tps))
    for tp, r in tps.items():
        if r.offset >= 0:
            consumer.seek(tp, r.offset + 1)
    fresh = [tp for tp, r in tps.items() if r.offset < 0]
    if fresh:
        await consumer.seek_to_beginning(*fresh)
    pending = set(tps)
    mismatched: set[int] = set()
    progress = time.monotonic()
    while pending:
        try:
            batches = await consumer.getmany(*pending, timeout_ms=100, max_records=50_000)
        except OffsetOutOfRangeError as exc:
            for tp in exc.args[0] if exc.args and isinstance(exc.args[0], dict) else pending:
                if tp in pending:
                    mismatched.add(tp.partition)
                    pending.discard(tp)
            continue
        for tp, records in batches.items():
            if records:
                progress = time.monotonic()
                tps[tp].feed_many((r.offset, r.key, r.value) for r in records)
                failpoints.hit("recovery_mid")
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None and await consumer.position(tp) >= hw:
                pending.discard(tp)
        if pending and time.monotonic() - progress > stall_s:
            raise TimeoutError(f"changelog {topic}: no progress for {stall_s:.0f}s on "
                               f"{sorted(tp.partition for tp in pending)}")
    return mismatched


async def restore_units(partitions: Iterable[int], store: StateStore, consumer: AIOKafkaConsumer,
                        producer: AIOKafkaProducer, changelog: str, config: EngineConfig,
                        topic_names: dict[str, str]) -> dict[int, tuple[PartitionProcessor, ChangelogReplayer]]:
    """Restore `partitions`: committed groups applied, an unfinished one rolled back in the topic."""
    replayers = {}
    for p in partitions:
        records, offset = store.load(p)
        replayers[p] = ChangelogReplayer(p, records, offset, store)
    mismatched = await read_changelog(consumer, changelog, replayers)
    if mismatched:
        log.warning("changelog partitions %s do not have the local store's offsets: reading them whole",
                    sorted(mismatched))
        for p in mismatched:
            store.reset(p)
            replayers[p] = ChangelogReplayer(p, {}, -1, store)
        if await read_changelog(consumer, changelog, {p: replayers[p] for p in mismatched}):
            raise RuntimeError(f"changelog partitions {sorted(mismatched)} cannot be read from their start")
    undo = {p: tail for p, r in replayers.items() if (tail := r.rollback())}
    rollback = BatchSender(producer)
    for p, tail in undo.items():
        log.warning("partition %d: discarded %d state records of an unfinished batch", p, len(replayers[p].pending))
        rollback.extend(changelog, p, tail)
    written = await rollback.flush()  # a committed group of its own, before anything new is written
    for p, tail in undo.items():  # its values are the committed ones the replayer already holds
        store.write(p, tail, written[(changelog, p)])
    return {p: (PartitionProcessor.restore(p, r.records, config, topic_names), r) for p, r in replayers.items()}
