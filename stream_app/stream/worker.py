"""The Faust shell: ingest agents, the per-partition scoring agent, state table, KPIs, HTTP API.

Agents only route, batch and do I/O; the scoring is `PartitionProcessor` -> engine `Unit`, the
same code as `engagement replay`.

Per batch of the re-keyed topic: outputs (scores, tier changes, alerts) are sent and awaited
first, then the state records (unit record last), then Faust acknowledges the batch. A crash
before the state is written re-delivers the batch and re-publishes the same outputs
(at-least-once, deterministic ids); a crash after it skips the already-applied offsets.
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
from faust.types import TP

from stream_app.config import Settings
from stream_app.engine import TIERS, KpiPartial
from stream_app.engine.clock import format_instant, parse_rfc3339
from stream_app.stream.metrics import Metrics
from stream_app.stream.kafka_io import BatchSender, consumer_options, kpi_partials_topic, partition_for
from stream_app.stream.processor import PartitionProcessor, wrap_event
from stream_app.validation import Rejection, validate_bytes

log = logging.getLogger("stream_app.worker")

RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


def dead_letter(rejection: Rejection, topic: str, partition: int, offset: int, payload: bytes) -> bytes:
    return orjson.dumps({
        "reason": rejection.reason,
        "field": rejection.field,
        "message": rejection.message,
        "source": {"topic": topic, "partition": partition, "offset": offset},
        "payload": payload.decode("utf-8", errors="replace"),
    })


def _faust_fetch_wait(ms: int) -> None:
    """Faust's aiokafka driver hard-codes fetch_max_wait_ms=1500; make it ours (process-wide).

    On the bundled broker every fetch waits that long, which alone put ~1 s into the latency.
    """
    import types

    import aiokafka
    from faust.transport.drivers import aiokafka as driver

    class Consumer(aiokafka.AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["fetch_max_wait_ms"] = ms
            super().__init__(*args, **kwargs)

    shim = types.ModuleType("aiokafka")
    shim.__dict__.update(aiokafka.__dict__)
    shim.AIOKafkaConsumer = Consumer  # type: ignore[attr-defined]
    driver.aiokafka = shim  # type: ignore[attr-defined]


class Scorer:
    """Builds the Faust app and holds the worker's in-memory units."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.engine_config = s.engine_config()
        _faust_fetch_wait(s.fetch_max_wait_ms)
        self.app = app = faust.App(
            s.app_id,
            broker=s.broker,
            store=s.store,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            table_standby_replicas=s.standby_replicas,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_commit_interval=0.5,
            broker_credentials=self._credentials(),
            consumer_auto_offset_reset="earliest",
            stream_wait_empty=False,
            producer_linger_ms=5,
            producer_max_batch_size=1_000_000,
            producer_max_request_size=1_048_576,
            web_host=s.web_host,
            web_port=s.web_port,
            web_bind=s.web_bind or s.web_host,
            datadir=s.data_dir,
            autodiscover=False,
            web_in_thread=False,
        )
        self.events = app.topic(s.topic_events, partitions=s.partitions, **RAW)
        self.state = app.Table("state", key_type=bytes, value_type=bytes, partitions=s.partitions)
        self.processors: dict[int, PartitionProcessor] = {}
        self.kpi_partials: dict[int, tuple[int | None, KpiPartial]] = {}
        self.kpi_version = 0
        self.kpi_published = (-1, 0.0)
        self.ready = False
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
    def changelog_topic(self) -> str:
        return self.state.changelog_topic.get_topic_name()

    async def producer(self) -> AIOKafkaProducer:
        # Faust's aiokafka producer, used directly for record batches (NOTES-broker.md).
        await self.app.producer.maybe_start()
        return self.app.producer._producer  # type: ignore[attr-defined,no-any-return]

    def fatal(self, exc: BaseException) -> None:
        """A bug: stop at once without acknowledging the batch (a graceful stop would commit it)."""
        log.critical("fatal error in the scoring pipeline: %r", exc, exc_info=exc)
        logging.shutdown()
        os._exit(70)

    # -- wiring ------------------------------------------------------------------------------
    def _register(self) -> None:
        app = self.app
        app.task(self._ingest_loop)
        app.agent(self.events, name="score")(self._score_agent)
        self.state.on_recover(self._on_recover)
        app.on_partitions_revoked.connect(self._on_revoked)
        app.on_partitions_assigned.connect(self._on_assigned)
        app.task(self._kpi_reader)
        app.timer(interval=1.0)(self._kpi_publisher)
        from stream_app.stream.web import register_views

        register_views(self)

    async def _ingest_loop(self) -> None:
        """Validate and re-key the input topics with a plain aiokafka consumer group.

        Ingest needs no table, so it skips Faust's per-event machinery (the throughput ceiling,
        NOTES-broker.md): whole fetches are validated and sent as record batches, then committed.
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
                await consumer.commit()
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

    async def _score_agent(self, stream: faust.StreamT) -> None:
        async for events in stream.take_events(self.settings.batch_size, within=0.05):
            try:
                await self.score_batch(events)
            except Exception as exc:  # noqa: BLE001 - a bug; see fatal()
                self.fatal(exc)

    async def score_batch(self, events: list[Any]) -> None:
        s = self.settings
        t0 = time.perf_counter()
        by_partition: dict[int, list[tuple[int, bytes | None]]] = defaultdict(list)
        for ev in events:
            by_partition[ev.message.partition].append((ev.message.offset, ev.message.value))
        outputs = BatchSender(await self.producer())
        state = BatchSender(outputs.producer)
        changelog = self.changelog_topic
        partials = kpi_partials_topic(s)
        for p, messages in by_partition.items():
            proc = self.processor(p)
            out = proc.process(messages)
            for cid, record in out.scores.items():
                key = cid.encode()
                outputs.add(s.topic_scores, partition_for(key, s.partitions), key, record)
            for topic, records in ((s.topic_tier_changes, out.tier_changes), (s.topic_alerts, out.alerts)):
                for record in records:
                    key = record["customer_id"].encode()
                    outputs.add(topic, partition_for(key, s.partitions), key, orjson.dumps(record))
            for offset, rejection, raw in out.rejected:
                outputs.add(s.topic_dead_letter, p, None, dead_letter(rejection, s.topic_events, p, offset, raw))
            if out.kpis_changed:
                outputs.add(partials, 0, str(p).encode(), proc.kpi_partial_record())
            state.extend(changelog, p, out.state)
            self._store(p, out.state)
            self._record(p, proc, out)
        await outputs.flush()
        await state.flush()
        self._observe(by_partition, t0)

    def _record(self, p: int, proc: PartitionProcessor, out: Any) -> None:
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

    def _observe(self, by_partition: dict[int, Any], t0: float) -> None:
        m = self.metrics
        m.batch_duration.labels(stage="score").observe(time.perf_counter() - t0)
        for p in by_partition:
            hw = self.app.consumer.highwater(TP(self.settings.topic_events, p))
            proc = self.processors.get(p)
            if hw is not None and proc is not None:
                m.consumer_lag.labels(topic=self.settings.topic_events, partition=str(p)).set(
                    max(0, hw - proc.offset - 1))
        self.update_tier_gauges()

    def update_tier_gauges(self) -> None:
        totals: dict[str, int] = defaultdict(int)
        for proc in self.processors.values():
            for tier, n in proc.tier_counts.items():
                totals[tier] += n
        for tier in TIERS:
            self.metrics.customers.labels(tier=tier).set(totals[tier])

    @property
    def _memory_store(self) -> bool:
        return self.settings.store.startswith("memory://")

    def _store(self, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        """Mirror our own changelog writes into the table's local store (memory or RocksDB)."""
        store = self.state.data
        if not self._memory_store:
            # RocksDB: Faust's own write path needs a current event; write the partition's DB.
            db = store._db_for_partition(partition)  # type: ignore[attr-defined]  # noqa: SLF001
            for key, value in records:
                if value is None:
                    db.delete(key)
                else:
                    db[key] = value
            return
        data = store.data  # type: ignore[attr-defined]
        key_partition = store._key_partition  # type: ignore[attr-defined]  # noqa: SLF001
        for key, value in records:
            if value is None:
                data.pop(key, None)
                key_partition.pop(key, None)
            else:
                data[key] = value
                # Faust records key partitions only during recovery; without this a revoked
                # partition's keys would never be dropped from the memory store.
                key_partition[key] = partition

    def _partition_records(self, partition: int) -> dict[bytes, bytes]:
        store = self.state.data
        prefix = f"{partition}|".encode()
        if not self._memory_store:
            # the partition's DB also holds Faust's own keys (its persisted changelog offset)
            db = store._db_for_partition(partition)  # type: ignore[attr-defined]  # noqa: SLF001
            return {bytes(k): bytes(v) for k, v in db.items() if bytes(k).startswith(prefix)}
        return {k: v for k, v in store.data.items() if k.startswith(prefix)}  # type: ignore[attr-defined]

    def processor(self, partition: int) -> PartitionProcessor:
        proc = self.processors.get(partition)
        if proc is None:
            records = self._partition_records(partition)
            proc = PartitionProcessor.restore(partition, records, self.engine_config, self.settings.input_topics)
            self.processors[partition] = proc
            log.info("partition %d ready: %d customers, offset %d", partition,
                     len(proc.unit.customers), proc.offset)
        return proc

    # -- recovery ----------------------------------------------------------------------------
    async def _on_recover(self) -> None:
        try:
            t0 = time.monotonic()
            actives = sorted(tp.partition for tp in self.app.assignor.assigned_actives()
                             if tp.topic == self.changelog_topic)
            repaired = await self._repair_changelog_tail(actives)
            self.processors = {}
            for p in actives:
                self.processor(p)
            self.ready = True
            m = self.metrics
            m.recovering.set(0)
            m.ready.set(1)
            m.recovery_duration.set(time.monotonic() - t0)
            m.recovery_partitions.set(len(actives))
            m.watermark.clear()
            for p, proc in self.processors.items():
                if proc.unit.watermark is not None:
                    m.watermark.labels(partition=str(p)).set(proc.unit.watermark / 1_000_000)
            self.update_tier_gauges()
            log.info("recovered %d partitions in %.2fs (%d tail records re-read)", len(actives),
                     time.monotonic() - t0, repaired)
        except Exception as exc:  # noqa: BLE001 - Faust would swallow it
            self.fatal(exc)

    async def _repair_changelog_tail(self, partitions: list[int]) -> int:
        """Read each changelog partition's last batch up to the real high-water mark.

        The bundled broker reports end offsets at the start of a partition's last batch, where
        Faust's recovery stops (NOTES-broker.md). Re-reading from there is harmless on real
        Kafka (the last values again) and completes the state here.
        """
        if not partitions:
            return 0
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **consumer_options(self.settings))
        await consumer.start()
        n = 0
        try:
            tps = [TopicPartition(self.changelog_topic, p) for p in partitions]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(0, ends[tp] - 1))
            pending = set(tps)
            deadline = time.monotonic() + 60
            while pending and time.monotonic() < deadline:
                batches = await consumer.getmany(*pending, timeout_ms=300, max_records=10_000)
                for tp, records in batches.items():
                    for r in records:
                        self._store(tp.partition, [(r.key, r.value)])
                        n += 1
                for tp in list(pending):
                    hw = consumer.highwater(tp)
                    if hw is not None and await consumer.position(tp) >= hw:
                        pending.discard(tp)
        finally:
            await consumer.stop()
        return n

    async def _on_assigned(self, app: Any, assigned: set[TP], **_: Any) -> None:
        self.metrics.rebalances.inc()
        self.metrics.recovering.set(1)
        log.info("partitions assigned: %d topic partitions", len(assigned))

    async def _on_revoked(self, app: Any, revoked: set[TP], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == self.settings.topic_events:
                self.processors.pop(tp.partition, None)

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
        return TP(self.changelog_topic, 0) in self.app.assignor.assigned_actives()

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
