"""The scoring path: the re-keyed partitions this worker owns, read in large fetches and committed
batch by batch in one order: outputs, then state (unit record last), then the local store.

**The state decides where a partition resumes.** On assignment a partition is paused, its state
is restored from the local store and the changelog (`changelog.py`), and only then is it sought
to the unit record's offset + 1, whatever offset the consumer group holds (that offset is
committed for monitoring tools only). A partition is revoked only between batches, so no write
for it is in flight when another worker starts restoring it.

A gap (a fetch that starts after the next offset the state expects) is sought back once; a batch
is never applied past a message it has not seen.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    TopicPartition,
)
from aiokafka.errors import KafkaError

from stream_app.config import Settings
from stream_app.engine import EngineConfig
from stream_app.logs import CountSummary
from stream_app.stream import failpoints
from stream_app.stream.assignor import OwnerAssignor
from stream_app.stream.ingest import dead_letter
from stream_app.stream.kafka_io import (
    BatchSender,
    changelog_topic,
    consumer_options,
    kpi_partials_topic,
    partition_for,
)
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionBatch, PartitionProcessor
from stream_app.stream.restore import restore_units
from stream_app.stream.state_store import StateStore

log = logging.getLogger("stream_app.scoring")

#: one partition's part of a processing batch, applied in memory and not yet written
Applied = tuple[int, PartitionProcessor, PartitionBatch]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, scoring: Scoring) -> None:
        self.scoring = scoring

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.scoring.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # No await before the pause: the fetcher must not read a new partition before its restore.
        self.scoring.on_assigned(assigned)


class Scoring:
    def __init__(self, settings: Settings, engine_config: EngineConfig, metrics: Metrics,
                 store: StateStore) -> None:
        self.settings = s = settings
        self.engine_config = engine_config
        self.metrics = metrics
        self.store = store
        self.changelog = changelog_topic(s)
        self.assignor = OwnerAssignor(f"http://{s.web_host}:{s.web_port}")
        self.processors: dict[int, PartitionProcessor] = {}
        self.to_restore: set[int] = set()
        self.joined = False
        self.lock = asyncio.Lock()
        self.consumer: AIOKafkaConsumer | None = None
        self._reseek: dict[int, int] = {}
        self._committed_at = 0.0
        #: partitions whose KPI partial changed since it was last published, and when that was:
        #: partials go out at most every `kpi_partial_interval_ms`, not with every batch
        self._kpi_dirty: set[int] = set()
        self._kpi_sent_at = 0.0
        #: called with the owned partitions when this worker becomes ready (and True), and again
        #: (and False) when a rebalance changes them: the worker's "ready" log line
        self.on_ready: Callable[[list[int], bool], None] | None = None
        self._announced: list[int] | None = None
        self.dead_letters = CountSummary(log, "scoring: {n} re-keyed events dead-lettered")

    @property
    def ready(self) -> bool:
        return self.joined and not self.to_restore

    def owner_url(self, partition: int) -> str | None:
        return self.assignor.owners.get(partition)

    # -- group membership ------------------------------------------------------------------------
    def on_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self.consumer
        assert consumer is not None
        new = {tp for tp in assigned if tp.partition not in self.processors}
        consumer.pause(*new)
        self.to_restore |= {tp.partition for tp in new}
        self.joined = True
        m = self.metrics
        m.rebalances.inc()
        m.recovering.set(1 if self.to_restore else 0)
        m.ready.set(0 if self.to_restore else 1)
        log.info("partitions assigned: %s (%d to restore)", sorted(tp.partition for tp in assigned),
                 len(self.to_restore))

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:  # waits for the batch in flight: no write for a moving partition
            self.joined = False
            for tp in revoked:
                self.processors.pop(tp.partition, None)
                self._kpi_dirty.discard(tp.partition)  # its new owner publishes it after its restore
                self.to_restore.discard(tp.partition)
                self.store.release(tp.partition)
                try:
                    self.metrics.watermark.remove(str(tp.partition))
                except KeyError:
                    pass

    # -- the loop ----------------------------------------------------------------------------------
    async def run(self, producer: AIOKafkaProducer) -> None:
        s = self.settings
        self.consumer = consumer = AIOKafkaConsumer(
            group_id=f"{s.app_id}-scoring", enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            partition_assignment_strategy=(self.assignor,), max_partition_fetch_bytes=4 * 1024 * 1024,
            **consumer_options(s))
        restorer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="none", **consumer_options(s))
        consumer.subscribe([s.topic_events], listener=_Listener(self))
        await consumer.start()
        await restorer.start()
        try:
            while True:
                if self.to_restore:
                    await self.restore_pending(restorer, producer)
                batches = await consumer.getmany(timeout_ms=50, max_records=s.batch_size)
                async with self.lock:
                    if batches:
                        t0 = time.perf_counter()
                        done = self.apply_batch(batches)
                        if done:
                            await self.commit_batch(done, producer, t0)
                    await self._publish_kpi_partials(producer)
                await self._commit_offsets()
                if self.ready:
                    self._announce()
                self.dead_letters.tick()
        finally:
            self.dead_letters.flush()
            await restorer.stop()
            await consumer.stop()

    def _announce(self) -> None:
        """Tell `on_ready` the owned partitions, once per distinct set."""
        parts = sorted(self.processors)
        if parts != self._announced:
            first = self._announced is None
            self._announced = parts
            if self.on_ready is not None:
                self.on_ready(parts, first)

    async def restore_pending(self, restorer: AIOKafkaConsumer, producer: AIOKafkaProducer) -> None:
        """Restore every newly assigned partition, then resume each at its unit offset + 1."""
        async with self.lock:  # a revoke waits: no rollback is written for a partition that moved
            parts = sorted(self.to_restore)
            if not parts:
                return
            t0 = time.monotonic()
            done = await restore_units(parts, self.store, restorer, producer, self.changelog,
                                       self.engine_config, self.settings.input_topics)
            consumer = self.consumer
            assert consumer is not None
            m = self.metrics
            for p, (proc, replayer) in sorted(done.items()):
                self.processors[p] = proc
                self._kpi_dirty.add(p)  # the previous owner may not have published its latest
                events_tp = TopicPartition(self.settings.topic_events, p)
                consumer.seek(events_tp, proc.offset + 1)
                consumer.resume(events_tp)
                if proc.unit.watermark is not None:
                    m.watermark.labels(partition=str(p)).set(proc.unit.watermark / 1_000_000)
                log.info("partition %d ready: %d customers, offset %d (%d changelog records read)", p,
                         len(proc.unit.customers), proc.offset, replayer.read)
            self.to_restore.clear()
            elapsed = time.monotonic() - t0
            m.recovery_duration.set(elapsed)
            m.recovery_partitions.set(len(parts))
            m.recovering.set(0)
            m.ready.set(1)
            m.set_tier_counts(self.processors)
            log.info("restored %d partitions in %.2fs", len(parts), elapsed)

    def _contiguous(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records that continue the partition's state; a gap is sought back once."""
        proc = self.processors[tp.partition]
        expected = proc.offset + 1
        first = records[0].offset
        if first <= expected:
            return records
        if self._reseek.get(tp.partition) != expected:
            self._reseek[tp.partition] = expected
            log.warning("partition %d: fetch starts at offset %d, the state expects %d: seeking back",
                        tp.partition, first, expected)
            assert self.consumer is not None
            self.consumer.seek(tp, expected)
            return []
        log.error("partition %d: offsets %d..%d are gone from the topic (retention?); continuing at %d",
                  tp.partition, expected, first - 1, first)
        return records

    def apply_batch(self, batches: dict[TopicPartition, list[Any]]) -> list[Applied]:
        """The engine step, in memory: each owned partition's records that continue its state."""
        done: list[Applied] = []
        for tp, records in batches.items():
            p = tp.partition
            if p not in self.processors or not records:
                continue  # revoked, or waiting for its restore (which seeks it again)
            records = self._contiguous(tp, records)
            if not records:
                continue
            proc = self.processors[p]
            done.append((p, proc, proc.process([(r.offset, r.value) for r in records])))
        return done

    async def commit_batch(self, done: list[Applied], producer: AIOKafkaProducer, t0: float) -> None:
        """Write an applied batch in the one order recovery relies on (docs/RELIABILITY.md):
        outputs (awaited), then each partition's state with its unit record last, then the local
        store."""
        outputs = BatchSender(producer)
        state = BatchSender(producer, self.settings.changelog_batch_records)
        for p, proc, out in done:
            self._add_outputs(outputs, p, proc, out)
            state.extend(self.changelog, p, out.state)
        await outputs.flush()
        failpoints.hit("score_after_outputs")
        written = await state.flush(between="score_mid_state")
        failpoints.hit("score_after_state")
        for p, proc, out in done:
            if out.state:
                self.store.write(p, out.state, written[(self.changelog, p)])
            self.metrics.record_partition_batch(p, proc, out)
        self._observe_batch([p for p, _, _ in done], t0)

    def _add_outputs(self, outputs: BatchSender, p: int, proc: PartitionProcessor, out: PartitionBatch) -> None:
        s = self.settings
        for cid, score in proc.score_records(out):
            key = cid.encode()
            outputs.add(s.topic_scores, partition_for(key, s.partitions), key, score)
        for topic, records in ((s.topic_tier_changes, out.tier_changes), (s.topic_alerts, out.alerts)):
            for record in records:
                key = record["customer_id"].encode()
                outputs.add(topic, partition_for(key, s.partitions), key, orjson.dumps(record))
        for offset, rejection, raw in out.rejected:
            outputs.add(s.topic_dead_letter, p, None, dead_letter(rejection, s.topic_events, p, offset, raw))
            self.dead_letters.add(rejection.reason)
        if out.kpis_changed:
            self._kpi_dirty.add(p)

    async def _publish_kpi_partials(self, producer: AIOKafkaProducer) -> None:
        """The changed partitions' KPI partials, at most every `kpi_partial_interval_ms` (each is
        ~10-50 KB of day buckets, and the KPI document is read far less often than batches
        commit). They are derived data: the unit record in the changelog holds the same partial,
        and a restore marks the partition for publication again."""
        now = time.monotonic()
        if not self._kpi_dirty or (now - self._kpi_sent_at) * 1000 < self.settings.kpi_partial_interval_ms:
            return
        self._kpi_sent_at = now
        partials = BatchSender(producer)
        topic = kpi_partials_topic(self.settings)
        for p in sorted(self._kpi_dirty):
            proc = self.processors.get(p)
            if proc is not None:
                partials.add(topic, 0, str(p).encode(), proc.kpi_partial_record())
        self._kpi_dirty.clear()
        await partials.flush()

    def _observe_batch(self, partitions: list[int], t0: float) -> None:
        m = self.metrics
        m.batch_duration.labels(stage="score").observe(time.perf_counter() - t0)
        consumer = self.consumer
        for p in partitions:
            proc = self.processors.get(p)
            hw = consumer.highwater(TopicPartition(self.settings.topic_events, p)) if consumer else None
            if hw is not None and proc is not None:
                m.consumer_lag.labels(topic=self.settings.topic_events, partition=str(p)).set(
                    max(0, hw - proc.offset - 1))
        m.set_tier_counts(self.processors)

    async def _commit_offsets(self) -> None:
        """Offsets for monitoring tools (lag); the state, not these, decides where a partition resumes."""
        now = time.monotonic()
        if now - self._committed_at < 1.0 or not self.processors or self.consumer is None:
            return
        self._committed_at = now
        offsets = {TopicPartition(self.settings.topic_events, p): proc.offset + 1
                   for p, proc in self.processors.items() if proc.offset >= 0}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress: the next commit carries it
            log.debug("offset commit skipped: %r", exc)
