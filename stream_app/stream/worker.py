"""The worker: a Faust app (lifecycle, signals, web server, timers) running three tasks.

- ingest: validate the input topics and re-key accepted events by customer (at-least-once);
- scoring (`scoring.py`): the owned partitions of the re-keyed topic -> `PartitionProcessor` ->
  outputs, then state; the state decides where each partition resumes;
- KPIs: follow every partition's KPI partial, publish the merged store document.

The scoring is `PartitionProcessor` -> engine `Unit`, the same code as `engagement replay`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import defaultdict
from typing import Any

import faust
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import CommitFailedError

from stream_app.config import Settings
from stream_app.engine import TIERS, KpiPartial
from stream_app.engine.clock import format_instant, parse_rfc3339
from stream_app.stream import failpoints
from stream_app.stream.kafka_io import (BatchSender, client_options, consumer_options, kpi_partials_topic,
                                        partition_for)
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionBatch, PartitionProcessor, wrap_event
from stream_app.stream.scoring import Scoring
from stream_app.stream.state_store import open_store
from stream_app.validation import Rejection, validate_bytes

log = logging.getLogger("stream_app.worker")

def dead_letter(rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes) -> bytes:
    return orjson.dumps({
        "reason": rejection.reason,
        "field": rejection.field,
        "message": rejection.message,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "payload": payload.decode("utf-8", errors="replace"),
    })


class Scorer:
    """Builds the Faust app (lifecycle, web server, timers) and runs ingest, scoring and KPIs in it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.engine_config = s.engine_config()
        self.app = faust.App(
            s.app_id,
            broker=s.broker,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_credentials=self._credentials(),
            web_host=s.web_host,
            web_port=s.web_port,
            web_bind=s.web_bind or s.web_host,
            datadir=s.data_dir,
            autodiscover=False,
            web_in_thread=False,
        )
        self.store = open_store(s.store, s.data_dir)
        self.scoring = Scoring(self, self.store)
        self._producer: AIOKafkaProducer | None = None
        self.kpi_partials: dict[int, tuple[int | None, KpiPartial]] = {}
        self.kpi_version = 0
        self.kpi_published = (-1, 0.0)
        self.metrics = Metrics()
        self._register()

    def _credentials(self) -> Any:
        s = self.settings
        if s.security_protocol in ("SSL", "SASL_SSL"):
            import ssl

            ctx = ssl.create_default_context(cafile=s.ssl_cafile or None)
        else:
            ctx = None
        if s.security_protocol.startswith("SASL"):
            return faust.SASLCredentials(username=s.sasl_username, password=s.sasl_password,
                                         ssl_context=ctx, mechanism=s.sasl_mechanism or "PLAIN")
        if ctx is not None:
            return faust.SSLCredentials(ctx)
        return None

    @property
    def ready(self) -> bool:
        return self.scoring.ready

    @property
    def processors(self) -> dict[int, PartitionProcessor]:
        return self.scoring.processors

    async def producer(self) -> AIOKafkaProducer:
        """One producer for every output, state record and dead letter of this worker."""
        if self._producer is None:
            producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1_000_000,
                                        max_request_size=1_048_576, request_timeout_ms=60_000,
                                        **client_options(self.settings))
            await producer.start()
            self._producer = producer
        return self._producer

    def fatal(self, exc: BaseException) -> None:
        """A bug or a broken broker: stop at once; the state decides where the restart resumes."""
        log.critical("fatal error in the scoring pipeline: %r", exc, exc_info=exc)
        logging.shutdown()
        os._exit(70)

    # -- wiring ------------------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        app.task(self._ingest_loop)
        app.task(self._scoring_loop)
        app.task(self._kpi_reader)
        app.timer(interval=1.0)(self._kpi_publisher)
        from stream_app.stream.web import register_views

        register_views(self)

    async def _scoring_loop(self) -> None:
        try:
            await self.scoring.run(await self.producer())
        except asyncio.CancelledError:  # a clean stop (SIGTERM): the scoring consumer has left the group
            self.store.close()
            if self._producer is not None:
                await self._producer.stop()
            raise
        except Exception as exc:  # noqa: BLE001 - see fatal()
            self.fatal(exc)

    async def _ingest_loop(self) -> None:
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
            producer = await self.producer()
            while True:
                batches = await consumer.getmany(timeout_ms=50, max_records=s.batch_size * 5)
                if not batches:
                    continue
                t0 = time.perf_counter()
                sender = BatchSender(producer)
                burst = sum(self.ingest_records(short_of[tp.topic], tp.topic, tp.partition, records, sender)
                            for tp, records in batches.items())
                if burst:
                    log.warning("dead-lettered %d of %d messages in one batch", burst,
                                sum(len(r) for r in batches.values()))
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
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug; see fatal()
            self.fatal(exc)
        finally:
            await consumer.stop()

    def ingest_records(self, short: str, topic_name: str, partition: int, records: list[Any],
                       sender: BatchSender) -> int:
        """Validate and route one partition's fetch; returns how many were dead-lettered."""
        s = self.settings
        rejected = 0
        for msg in records:
            raw = msg.value if msg.value is not None else b""
            result = validate_bytes(raw, short, s.currency)
            if type(result) is Rejection:
                sender.add(s.topic_dead_letter, partition % s.partitions, msg.key,
                           dead_letter(result, topic_name, partition, msg.offset, raw))
                rejected += 1
                self.metrics.events.labels(topic=short, outcome="rejected").inc()
                self.metrics.dead_letters.labels(reason=result.reason).inc()
                continue
            key = result.unit_key.encode()  # type: ignore[union-attr]
            sender.add(s.topic_events, partition_for(key, s.partitions), key, wrap_event(short, raw))
        return rejected

    # -- metrics of the scoring path -----------------------------------------------------------
    def record_metrics(self, p: int, proc: PartitionProcessor, out: PartitionBatch) -> None:
        m = self.metrics
        for (topic, outcome), n in out.outcomes.items():
            m.events.labels(topic=topic, outcome=outcome).inc(n)
        for _, rejection, _ in out.rejected:
            m.events.labels(topic="events", outcome="rejected").inc()
            m.dead_letters.labels(reason=rejection.reason).inc()
        if out.applied_at:
            now_us = time.time() * 1_000_000
            for at in out.applied_at:
                m.event_lag.observe((now_us - at) / 1_000_000)
        for d in out.tier_changes:
            m.tier_changes.labels(from_tier=d["from_tier"] or "none", to_tier=d["to_tier"], reason=d["reason"]).inc()
        for d in out.alerts:
            m.alerts.labels(type=d["type"], severity=d["severity"]).inc()
        wm = proc.unit.watermark
        if wm is not None:
            m.watermark.labels(partition=str(p)).set(wm / 1_000_000)

    def observe_batch(self, partitions: list[int], t0: float) -> None:
        m = self.metrics
        m.batch_duration.labels(stage="score").observe(time.perf_counter() - t0)
        consumer = self.scoring.consumer
        for p in partitions:
            proc = self.processors.get(p)
            hw = consumer.highwater(TopicPartition(self.settings.topic_events, p)) if consumer else None
            if hw is not None and proc is not None:
                m.consumer_lag.labels(topic=self.settings.topic_events, partition=str(p)).set(
                    max(0, hw - proc.offset - 1))
        self.update_tier_gauges()

    def update_tier_gauges(self) -> None:
        totals: dict[str, int] = defaultdict(int)
        for proc in list(self.processors.values()):
            for tier, n in proc.tier_counts.items():
                totals[tier] += n
        for tier in TIERS:
            self.metrics.customers.labels(tier=tier).set(totals[tier])

    # -- store KPIs ----------------------------------------------------------------------------
    async def _kpi_reader(self) -> None:
        """Every worker follows every partition's KPI partial; the merge is the store's KPIs."""
        topic = kpi_partials_topic(self.settings)
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **consumer_options(self.settings))
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for records in batches.values():
                    for r in records:
                        doc = orjson.loads(r.value)
                        self.kpi_partials[doc["partition"]] = (doc["watermark"], KpiPartial.from_state(doc["kpis"]))
                        self.kpi_version += 1
        finally:
            await consumer.stop()

    def kpi_document(self) -> dict[str, Any]:
        window = self.engine_config.order_window_days
        merged = KpiPartial(window)
        as_of: int | None = None
        for wm, partial in self.kpi_partials.values():
            merged.merge(partial)
            if wm is not None and (as_of is None or wm > as_of):
                as_of = wm
        return merged.document(as_of)

    def is_kpi_leader(self) -> bool:
        """The owner of partition 0 publishes the store-wide KPIs, so they are published once."""
        return 0 in self.processors

    async def _kpi_publisher(self) -> None:
        if not self.ready or not self.kpi_partials:
            return
        if not self.is_kpi_leader():
            self.metrics.set_kpis(None)  # exported once across the group: by the leader
            return
        version, last = self.kpi_published
        now = time.monotonic()
        if version == self.kpi_version and now - last < self.settings.kpi_interval_s:
            return
        doc = self.kpi_document()
        self.metrics.set_kpis(doc)
        producer = await self.producer()
        failpoints.hit("kpi_publish")
        await producer.send_and_wait(self.settings.topic_kpis, orjson.dumps(doc), key=b"store", partition=0)
        self.kpi_published = (self.kpi_version, now)

    # -- reading -------------------------------------------------------------------------------
    def customer_partition(self, customer_id: str) -> int:
        return partition_for(customer_id.encode(), self.settings.partitions)

    def local_record(self, customer_id: str, as_of: str | None) -> tuple[int, dict[str, Any]]:
        """(status, body) for a customer owned by this worker."""
        proc = self.processors.get(self.customer_partition(customer_id))
        if proc is None:
            return 503, {"error": "partition not ready on this worker"}
        c = proc.unit.customers.get(customer_id)
        if c is None:
            return 404, {"error": "unknown customer"}
        at = c.t_ref
        if as_of is not None:
            t = parse_rfc3339(as_of)
            if t is None:
                return 400, {"error": "as_of must be an RFC 3339 date-time, e.g. 2024-01-31T00:00:00Z"}
            if t < c.t_ref:
                return 400, {"error": f"as_of is before the customer's clock {format_instant(c.t_ref)}"}
            at = t
        return 200, c.record(at, self.engine_config)


__all__ = ["Scorer", "dead_letter"]
