"""`engagement tail TOPIC`: a topic's records as JSON lines, the consumer most users would write.

One line per record: `{"topic", "partition", "offset", "timestamp", "key", "value"}`, the value
parsed when it is JSON (else a string) and `null` for a tombstone; the timestamp is RFC 3339 UTC
(null when the record has none). TOPIC is a full name or a short name (`scores`, `alerts`, ...:
`SHORT_NAMES`) mapped through the ENGAGEMENT_TOPIC_* settings.

A consumer without a group (nothing committed, nothing joined) assigned every partition. By
default it starts at the end and follows new records until Ctrl-C; `--from-beginning` starts at
offset 0; `--no-follow` stops at the end of every partition as first seen; `-n N` stops after N
printed records; `--key ID` prints only that key's records (every partition is read).

The end of a partition is the high-water mark of a fetch response, never ListOffsets, which reads
low on the bundled broker (the start of the last record batch + 1; docs/BROKER.md): starting at
the end, the first fetch finds the mark and the partition is sought there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.config import Settings
from stream_app.stream.compat import refresh_metadata
from stream_app.stream.kafka_io import consumer_options, start_client

__all__ = ["SHORT_NAMES", "UnknownTopic", "record_doc", "resolve_topic", "tail_main", "tail_records"]

#: short name -> the Settings field with the topic's name
SHORT_NAMES = {
    "orders": "topic_orders", "clicks": "topic_clicks", "social": "topic_social", "privacy": "topic_privacy",
    "events": "topic_events", "scores": "topic_scores", "tier-changes": "topic_tier_changes",
    "alerts": "topic_alerts", "kpis": "topic_kpis", "segment-changes": "topic_segment_changes",
    "dead-letter": "topic_dead_letter",
}


class UnknownTopic(Exception):
    """The broker has no such topic."""


def resolve_topic(settings: Settings, name: str) -> str:
    """A short name's configured topic (`scores` -> ENGAGEMENT_TOPIC_SCORES); any other name as is."""
    field = SHORT_NAMES.get(name)
    return str(getattr(settings, field)) if field else name


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def record_doc(msg: Any) -> dict[str, Any]:
    """One record as the line `engagement tail` prints."""
    value: Any = None
    if msg.value is not None:
        try:
            value = orjson.loads(msg.value)
        except orjson.JSONDecodeError:
            value = _text(msg.value)
    ts = msg.timestamp
    when = None
    if ts is not None and ts >= 0:
        when = datetime.fromtimestamp(ts / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"topic": msg.topic, "partition": msg.partition, "offset": msg.offset, "timestamp": when,
            "key": None if msg.key is None else _text(msg.key), "value": value}


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        await refresh_metadata(consumer)  # metadata as of now, not of the consumer's start
        parts = consumer.partitions_for_topic(topic)
    if not parts:
        raise UnknownTopic(topic)
    return [TopicPartition(topic, p) for p in sorted(parts)]


async def _seek_to_true_end(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                            timeout_s: float = 30.0) -> dict[TopicPartition, int]:
    """Seek every partition to the high-water mark of a fetch response (records before it are
    skipped): ListOffsets' end, where the consumer starts, may be short of it. Returns the marks."""
    await consumer.seek_to_end(*tps)
    pending = set(tps)
    ends: dict[TopicPartition, int] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while pending and loop.time() < deadline:
        await consumer.getmany(*pending, timeout_ms=100, max_records=1)
        for tp in list(pending):
            hw = consumer.highwater(tp)
            if hw is not None:
                consumer.seek(tp, hw)
                ends[tp] = hw
                pending.discard(tp)
    if pending:
        raise TimeoutError(f"no fetch answer for {sorted(tp.partition for tp in pending)} in {timeout_s:.0f}s")
    return ends


async def tail_records(settings: Settings, topic: str, *, from_beginning: bool = False, follow: bool = True,
                       key: str | None = None) -> AsyncGenerator[list[Any], None]:
    """The topic's records (aiokafka ConsumerRecords), one list per fetch (partition by partition).

    Raises `UnknownTopic` when the broker has no `topic`.
    """
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest" if from_beginning else "latest",
                                **consumer_options(settings))
    await start_client(consumer, settings)
    want = None if key is None else key.encode()
    try:
        tps = await _partitions(consumer, topic)
        consumer.assign(tps)
        #: without follow, each partition's end: the high-water mark of its first fetch
        ends: dict[TopicPartition, int] = {}
        if from_beginning:
            await consumer.seek_to_beginning(*tps)
        else:
            ends = await _seek_to_true_end(consumer, tps)
        while True:
            batches = await consumer.getmany(timeout_ms=200, max_records=1000)
            records = [msg for tp in sorted(batches, key=lambda t: t.partition) for msg in batches[tp]
                       if (want is None or msg.key == want) and (follow or tp not in ends or msg.offset < ends[tp])]
            if records:
                yield records
            if not follow and await _reached(consumer, tps, ends):
                return
    finally:
        await consumer.stop()


async def _reached(consumer: AIOKafkaConsumer, tps: list[TopicPartition], ends: dict[TopicPartition, int]) -> bool:
    """Every partition read up to its end (set from the first fetch response that has one)."""
    for tp in tps:
        if tp not in ends:
            hw = consumer.highwater(tp)
            if hw is None:
                return False
            ends[tp] = hw
        if await consumer.position(tp) < ends[tp]:
            return False
    return True


async def tail(settings: Settings, topic: str, write: Callable[[bytes], Any], *, from_beginning: bool = False,
               follow: bool = True, key: str | None = None, limit: int | None = None,
               flush: Callable[[], Any] = lambda: None) -> int:
    """Write up to `limit` records as JSON lines; returns how many were written."""
    n = 0
    if limit is not None and limit <= 0:
        return 0
    fetches = tail_records(settings, topic, from_beginning=from_beginning, follow=follow, key=key)
    try:
        async for records in fetches:
            if limit is not None:
                records = records[:limit - n]
            write(b"".join(orjson.dumps(record_doc(msg), option=orjson.OPT_APPEND_NEWLINE) for msg in records))
            flush()  # a reader following the output sees each fetch at once
            n += len(records)
            if limit is not None and n >= limit:
                break
    finally:
        await fetches.aclose()
    return n


def tail_main(settings: Settings, name: str, *, from_beginning: bool, follow: bool, key: str | None,
              limit: int | None) -> int:
    """`engagement tail`: the exit status (2 for an unknown topic)."""
    import sys

    topic = resolve_topic(settings, name)
    out = sys.stdout.buffer
    try:
        asyncio.run(tail(settings, topic, out.write, from_beginning=from_beginning, follow=follow, key=key,
                         limit=limit, flush=out.flush))
    except UnknownTopic:
        print(f"engagement tail: unknown topic {topic!r} (not on the broker at {settings.bootstrap})",
              file=sys.stderr)
        return 2
    return 0
