"""Ingest: validate the input topics and re-key accepted events by customer (at-least-once).

Each message is validated with its Kafka timestamp as its received time (SPEC §1's future rule).

One aiokafka consumer group (`<app>-ingest`) reads whole fetches; per fetch, rejected messages go
to the dead-letter topic (`dead_letters.py`) and accepted ones, the validated event itself
(`formats.encode_rekeyed`), to the re-keyed topic (key `customer_id`, anonymous guest orders `order_id`; Kafka's default partitioner). Offsets are
committed after the sends are acknowledged, so a re-sent message is a duplicate event id for the
engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import CommitFailedError

from stream_app.config import Settings
from stream_app.engine.formats import encode_rekeyed
from stream_app.stream import failpoints
from stream_app.stream.dead_letters import DeadLetters
from stream_app.stream.kafka_io import BatchSender, consumer_options, partition_for
from stream_app.stream.metrics import Metrics
from stream_app.validation import Rejection, validate_bytes

log = logging.getLogger(__name__)

__all__ = ["IngestLoop"]


class IngestLoop:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        #: SPEC §1: an event dated more than this (µs) after its Kafka timestamp is invalid
        self.future_tolerance = settings.engine_config().future_tolerance
        #: one WARNING per 10 s at most, with counts by reason (never ids or payloads)
        self.dead_letters = DeadLetters(log, "ingest: {n} events dead-lettered")
        #: called once the ingest consumer has started (the "ready" line of an ingest-only worker)
        self.on_started: Callable[[], None] | None = None

    async def run(self, producer: Callable[[], Awaitable[AIOKafkaProducer]]) -> None:
        """Validate and re-key the input topics with a plain aiokafka consumer group.

        Whole fetches are validated and sent as record batches, then their offsets committed:
        at-least-once, and a re-sent re-keyed message is a duplicate event id for the engine.
        """
        s = self.settings
        short_of = {name: short for short, name in s.input_topics.items()}
        consumer = AIOKafkaConsumer(
            *short_of, group_id=f"{s.app_id}-ingest", enable_auto_commit=False,
            auto_offset_reset="earliest", session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000), **consumer_options(s))
        await consumer.start()
        try:
            out = await producer()
            if self.on_started is not None:
                self.on_started()
            while True:
                self.dead_letters.tick()
                batches = await consumer.getmany(timeout_ms=50, max_records=s.batch_size * 5)
                if not batches:
                    continue
                t0 = time.perf_counter()
                sender = BatchSender(out)
                for tp, records in batches.items():
                    self.ingest_records(short_of[tp.topic], tp.topic, tp.partition, records, sender)
                await sender.flush()
                failpoints.hit("ingest_after_send")
                try:
                    await consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items() if records})
                except CommitFailedError as exc:
                    # A rebalance moved these partitions: their new owner re-sends from the last
                    # commit, and the engine ignores the re-sent event ids.
                    log.warning("ingest offsets not committed (%r): the batch will be re-sent", exc)
                self.metrics.batch_duration.labels(stage="ingest").observe(time.perf_counter() - t0)
                for tp, records in batches.items():
                    hw = consumer.highwater(tp)
                    if hw is not None and records:
                        self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                            max(0, hw - records[-1].offset - 1))
        finally:  # then a crash goes on to the worker's supervisor (supervisor.py)
            self.dead_letters.flush()
            await consumer.stop()

    def ingest_records(self, short: str, topic_name: str, partition: int, records: list[Any],
                       sender: BatchSender) -> int:
        """Validate and route one partition's fetch; returns how many were dead-lettered."""
        s = self.settings
        currency, tolerance = s.currency, self.future_tolerance
        rejected = 0
        for msg in records:
            raw = msg.value if msg.value is not None else b""
            # A message was received at its Kafka timestamp (ms; SPEC §1). A record without one
            # (-1, from pre-0.10 message formats) is not checked against the future.
            ts = msg.timestamp
            result = validate_bytes(raw, short, currency, received_at=ts * 1000 if ts >= 0 else None,
                                    future_tolerance=tolerance)
            if type(result) is Rejection:
                sender.add(s.topic_dead_letter, partition % s.partitions, msg.key,
                           self.dead_letters.record(result, topic_name, partition, msg.offset, raw))
                rejected += 1
                self.metrics.events.labels(topic=short, outcome="rejected").inc()
                self.metrics.dead_letters.labels(reason=result.reason).inc()
                continue
            key = result.unit_key.encode()
            sender.add(s.topic_events, partition_for(key, s.partitions), key, encode_rekeyed(result))
        return rejected
