"""The re-keyed partitions this worker scores, through the group's rebalances.

**The state decides where a partition resumes.** On assignment a partition is paused, its state
is restored from the local store and the changelog (`restore.py`), and only then is it sought to
the unit record's offset + 1, whatever offset the consumer group holds (that offset is committed
for monitoring tools only). A partition is revoked only between batches (`lock`), so no write
for it is in flight when another worker starts restoring it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition

from stream_app.config import Settings
from stream_app.engine import EngineConfig
from stream_app.stream.kafka_io import changelog_topic
from stream_app.stream.kpis import KpiPartials
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionProcessor
from stream_app.stream.restore import restore_units
from stream_app.stream.state_store import StateStore
from stream_app.stream.supervisor import Supervisor

log = logging.getLogger(__name__)

__all__ = ["OwnedPartitions", "RebalanceListener"]


class OwnedPartitions:
    """The scored partitions (`processors`), those waiting for their restore, and the lock that
    keeps a batch, a restore and a revoke apart."""

    def __init__(self, settings: Settings, engine_config: EngineConfig, metrics: Metrics, store: StateStore,
                 partials: KpiPartials) -> None:
        self.settings = settings
        self.engine_config = engine_config
        self.metrics = metrics
        self.store = store
        self.partials = partials
        self.changelog = changelog_topic(settings)
        self.processors: dict[int, PartitionProcessor] = {}
        self.to_restore: set[int] = set()
        self.joined = False
        self.lock = asyncio.Lock()

    @property
    def ready(self) -> bool:
        return self.joined and not self.to_restore

    def on_assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
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
                self.partials.forget(tp.partition)
                self.to_restore.discard(tp.partition)
                self.store.release(tp.partition)
                try:
                    self.metrics.watermark.remove(str(tp.partition))
                except KeyError:
                    pass

    async def restore_pending(self, consumer: AIOKafkaConsumer, restorer: AIOKafkaConsumer,
                              producer: AIOKafkaProducer) -> None:
        """Restore every newly assigned partition, then resume each at its unit offset + 1."""
        async with self.lock:  # a revoke waits: no rollback is written for a partition that moved
            parts = sorted(self.to_restore)
            if not parts:
                return
            t0 = time.monotonic()
            done = await restore_units(parts, self.store, restorer, producer, self.changelog,
                                       self.engine_config, self.settings.input_topics)
            m = self.metrics
            for p, (proc, replayer) in sorted(done.items()):
                self.processors[p] = proc
                self.partials.mark(p)  # the previous owner may not have published its latest
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


class RebalanceListener(ConsumerRebalanceListener):
    """The scoring group's callbacks; aiokafka would log and swallow an exception in them, so the
    supervisor stops the process instead."""

    def __init__(self, owned: OwnedPartitions, consumer: AIOKafkaConsumer, supervisor: Supervisor) -> None:
        self.owned = owned
        self.consumer = consumer
        self.supervisor = supervisor

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        with self.supervisor.guard("scoring rebalance (revoke)"):
            await self.owned.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # No await before the pause: the fetcher must not read a new partition before its restore.
        with self.supervisor.guard("scoring rebalance (assign)"):
            self.owned.on_assigned(self.consumer, assigned)
