"""`engagement produce`: a JSONL(.gz) file of events to the input topics, keyed by customer_id."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.config import Settings
from stream_app.engine.clock import parse_rfc3339
from stream_app.engine.events import TOPIC_OF_TYPE
from stream_app.lines import iter_lines, open_events
from stream_app.stream.kafka_io import BatchSender, client_options, partition_for, start_client
from stream_app.validation import is_wrapper, wrapper_topic


def route(raw: bytes, settings: Settings) -> tuple[str, bytes | None, bytes]:
    """(topic, key, value) for one line, decoding it once. A wrapper line is unwrapped (the topic
    carries the event itself); lines we cannot route go unkeyed and unchanged to the orders topic,
    where the scorer's validation turns them into dead letters (nothing is dropped on the way in).
    """
    topics = settings.input_topics
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return topics["orders"], None, raw
    if is_wrapper(obj):
        short = wrapper_topic(obj["topic"], topics)
        if short is None:
            return topics["orders"], _key(obj["event"]), raw
        return topics[short], _key(obj["event"]), orjson.dumps(obj["event"])
    if isinstance(obj, dict):
        etype = obj.get("type")
        short = TOPIC_OF_TYPE.get(etype) if isinstance(etype, str) else None
        return topics[short or "orders"], _key(obj), raw
    return topics["orders"], None, raw


_MIN_MS, _MAX_MS = 946_684_800_000, 4_102_444_800_000  # 2000-01-01, 2100-01-01 UTC


def event_time_ms(raw: bytes) -> int | None:
    """The line's `occurred_at` in epoch milliseconds (a wrapper's event's), or None when it has
    none we can read: that record then gets the broker's time, as any other."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if is_wrapper(obj):
        obj = obj["event"]
    if not isinstance(obj, dict):
        return None
    at = obj.get("occurred_at")
    ms: int | None = None
    if isinstance(at, int) and not isinstance(at, bool):
        ms = at
    elif isinstance(at, str):
        micros = parse_rfc3339(at)
        ms = None if micros is None else micros // 1000
    # only instants the scorer accepts ([2000, 2100), SPEC §1): a wild one is rejected anyway,
    # and must not become a timestamp the producer cannot encode
    return ms if ms is not None and _MIN_MS <= ms < _MAX_MS else None


def _key(obj: object) -> bytes | None:
    """customer_id, else order_id (anonymous guest orders), as the scorer re-keys them: one key's
    events then stay in order in one input partition."""
    if isinstance(obj, dict):
        for field in ("customer_id", "order_id"):
            value = obj.get(field)
            if isinstance(value, str) and value:
                return value.encode()
    return None


async def produce_lines(settings: Settings, lines: Iterable[bytes], rate: float | None = None,
                        progress: bool = False, total: int | None = None,
                        event_timestamps: bool = False) -> int:
    """Send `lines` to their input topics; returns how many were sent.

    `event_timestamps`: each record's Kafka timestamp (CreateTime) is its event's `occurred_at`
    instead of the send time, as a producer replaying history would set it. Synthetic traffic
    whose event time runs faster than the wall clock (the demo, `simulate --speed`) needs it:
    the scorer takes the Kafka timestamp as the received time, and an event more than
    `future_tolerance` after it is rejected (SPEC §1).
    """
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=262_144, **client_options(settings))
    await start_client(producer, settings)  # a refused login: a clear error, not a traceback
    sent = 0
    t0 = time.monotonic()
    counts: dict[str, int] = {}
    try:
        sender = BatchSender(producer)
        for raw in lines:
            topic, key, value = route(raw, settings)
            n = counts.get(topic)
            if n is None:  # the topic's real partition count, whatever ENGAGEMENT_PARTITIONS says
                n = counts[topic] = len(await producer.partitions_for(topic))
            part = partition_for(key, n) if key else sent % n
            sender.add(topic, part, key, value, event_time_ms(raw) if event_timestamps else None)
            sent += 1
            if len(sender) >= 2000:
                await sender.flush()
                if progress:
                    _progress(sent, total, t0)
            if rate:
                ahead = sent / rate - (time.monotonic() - t0)
                if ahead > 0.01:
                    await sender.flush()
                    await asyncio.sleep(ahead)
        await sender.flush()
        if progress:
            _progress(sent, total, t0)
            print(file=sys.stderr)
    finally:
        await producer.stop()
    return sent


def _progress(sent: int, total: int | None, t0: float) -> None:
    rate = sent / max(time.monotonic() - t0, 1e-9)
    if total:
        width = 30
        done = int(width * sent / total)
        bar = "#" * done + "-" * (width - done)
        print(f"\r[{bar}] {sent:,}/{total:,} events  {rate:,.0f}/s", end="", file=sys.stderr)
    else:
        print(f"\r{sent:,} events  {rate:,.0f}/s", end="", file=sys.stderr)


def file_lines(path: str) -> list[bytes]:
    stream = open_events(path)
    try:
        return [line for _, line in iter_lines(stream)]
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
