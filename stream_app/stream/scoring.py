"""The scoring loop: the re-keyed partitions this worker owns (`owned.py`), read in large
fetches, applied by the engine in memory (`apply_batch`) and written batch by batch
(`commit.BatchCommitter`); between batches the KPI partials (`kpis.KpiPartials`) and, about once a
second, the group offsets for monitoring tools.

A gap (a fetch that starts after the next offset the state expects) is sought back once; a batch
is never applied past a message it has not seen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from stream_app.config import Settings
from stream_app.engine import EngineConfig
from stream_app.panels import LiveActivity
from stream_app.stream.assignor import OwnerAssignor
from stream_app.stream.commit import Applied, BatchCommitter
from stream_app.stream.dead_letters import DeadLetters
from stream_app.stream.kafka_io import consumer_options
from stream_app.stream.kpis import KpiPartials
from stream_app.stream.metrics import Metrics
from stream_app.stream.owned import OwnedPartitions, RebalanceListener
from stream_app.stream.state_store import StateStore
from stream_app.stream.supervisor import Supervisor

log = logging.getLogger(__name__)

__all__ = ["ScoringLoop"]


class ScoringLoop:
    def __init__(self, settings: Settings, engine_config: EngineConfig, metrics: Metrics,
                 store: StateStore, supervisor: Supervisor) -> None:
        self.settings = s = settings
        self.supervisor = supervisor
        self.metrics = metrics
        self.assignor = OwnerAssignor(f"http://{s.web_host}:{s.web_port}")
        self.partials = KpiPartials(s)
        self.owned = OwnedPartitions(s, engine_config, metrics, store, self.partials)
        self.dead_letters = DeadLetters(log, "scoring: {n} re-keyed events dead-lettered")
        #: the latest alerts and the day counts of this worker's outputs, for the dashboard
        self.activity = LiveActivity()
        self.committer = BatchCommitter(s, metrics, store, self.partials, self.dead_letters, self.activity)
        self.consumer: AIOKafkaConsumer | None = None
        self._reseek: dict[int, int] = {}
        self._committed_at = 0.0
        #: called with the owned partitions when this worker becomes ready (and True), and again
        #: (and False) when a rebalance changes them: the worker's "ready" log line
        self.on_ready: Callable[[list[int], bool], None] | None = None
        self._announced: list[int] | None = None

    @property
    def ready(self) -> bool:
        return self.owned.ready

    def owner_url(self, partition: int) -> str | None:
        return self.assignor.owners.get(partition)

    async def run(self, producer: AIOKafkaProducer) -> None:
        s, owned = self.settings, self.owned
        self.consumer = consumer = AIOKafkaConsumer(
            group_id=f"{s.app_id}-scoring", enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=int(s.session_timeout_s * 1000),
            heartbeat_interval_ms=int(s.heartbeat_interval_s * 1000),
            partition_assignment_strategy=(self.assignor,), max_partition_fetch_bytes=4 * 1024 * 1024,
            **consumer_options(s))
        restorer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="none", **consumer_options(s))
        consumer.subscribe([s.topic_events], listener=RebalanceListener(owned, consumer, self.supervisor))
        await consumer.start()
        await restorer.start()
        try:
            while True:
                if owned.to_restore:
                    await owned.restore_pending(consumer, restorer, producer)
                batches = await consumer.getmany(timeout_ms=50, max_records=s.batch_size)
                async with owned.lock:
                    if batches:
                        t0 = time.perf_counter()
                        done = self.apply_batch(batches)  # 1. the engine, in memory
                        if done:
                            await self.committer.commit_batch(done, producer)  # 2.-4. the writes
                            self._observe_batch([p for p, _, _ in done], t0)
                    await self.partials.publish(producer, owned.processors)
                await self._commit_offsets()  # 5. group offsets, for monitoring
                if self.ready:
                    self._announce()
                self.dead_letters.tick()
        finally:
            self.dead_letters.flush()
            await restorer.stop()
            await consumer.stop()

    def _announce(self) -> None:
        """Tell `on_ready` the owned partitions, once per distinct set."""
        parts = sorted(self.owned.processors)
        if parts != self._announced:
            first = self._announced is None
            self._announced = parts
            if self.on_ready is not None:
                self.on_ready(parts, first)

    def _contiguous(self, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """The records that continue the partition's state; a gap is sought back once."""
        proc = self.owned.processors[tp.partition]
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
        processors = self.owned.processors
        for tp, records in batches.items():
            p = tp.partition
            if p not in processors or not records:
                continue  # revoked, or waiting for its restore (which seeks it again)
            records = self._contiguous(tp, records)
            if not records:
                continue
            proc = processors[p]
            done.append((p, proc, proc.process([(r.offset, r.value) for r in records])))
        return done

    def _observe_batch(self, partitions: list[int], t0: float) -> None:
        m = self.metrics
        m.batch_duration.labels(stage="score").observe(time.perf_counter() - t0)
        consumer, processors = self.consumer, self.owned.processors
        for p in partitions:
            proc = processors.get(p)
            hw = consumer.highwater(TopicPartition(self.settings.topic_events, p)) if consumer else None
            if hw is not None and proc is not None:
                m.consumer_lag.labels(topic=self.settings.topic_events, partition=str(p)).set(
                    max(0, hw - proc.offset - 1))
        m.set_tier_counts(processors)

    async def _commit_offsets(self) -> None:
        """Offsets for monitoring tools (lag); the state, not these, decides where a partition resumes."""
        processors = self.owned.processors
        now = time.monotonic()
        if now - self._committed_at < 1.0 or not processors or self.consumer is None:
            return
        self._committed_at = now
        offsets = {TopicPartition(self.settings.topic_events, p): proc.offset + 1
                   for p, proc in processors.items() if proc.offset >= 0}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except KafkaError as exc:  # a rebalance in progress: the next commit carries it
            log.debug("offset commit skipped: %r", exc)
