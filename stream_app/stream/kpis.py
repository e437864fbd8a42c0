"""Store KPIs, both halves: each worker publishes its partitions' KPI partials to
`<app>-kpi-partials` (`KpiPartials`); every worker follows every partial, and the owner of
partition 0 publishes the merged store document to `engagement.kpis` (on change, at least every
`kpi_interval_s`), so it is published once across the group and `GET /kpis` answers anywhere
(`StoreKpis`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.config import Settings
from stream_app.engine import EngineConfig, KpiPartial, store_document
from stream_app.engine.formats import decode_kpi_message
from stream_app.engine.records import KpiDocument
from stream_app.engine.segments import segment_set
from stream_app.stream import failpoints
from stream_app.stream.kafka_io import BatchSender, consumer_options, kpi_partials_topic
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionProcessor

__all__ = ["KpiPartials", "StoreKpis", "is_kpi_leader"]


def is_kpi_leader(owned: Collection[int]) -> bool:
    """The owner of partition 0 publishes the store-wide KPIs, so they are published once."""
    return 0 in owned


class KpiPartials:
    """This worker's side: the partitions whose KPI partial changed since it was last published,
    published at most every `kpi_partial_interval_ms`, not with every batch."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.changed: set[int] = set()
        self.sent_at = 0.0

    def mark(self, partition: int) -> None:
        """A batch changed the partition's partial, or a restore made it this worker's."""
        self.changed.add(partition)

    def forget(self, partition: int) -> None:
        """The partition was revoked: its new owner publishes it after its restore."""
        self.changed.discard(partition)

    async def publish(self, producer: AIOKafkaProducer, processors: Mapping[int, PartitionProcessor]) -> None:
        """The changed partitions' KPI partials, at most every `kpi_partial_interval_ms` (each is
        ~10-50 KB of day buckets, and the KPI document is read far less often than batches
        commit). They are derived data: the unit record in the changelog holds the same partial,
        and a restore marks the partition for publication again."""
        now = time.monotonic()
        if not self.changed or (now - self.sent_at) * 1000 < self.settings.kpi_partial_interval_ms:
            return
        self.sent_at = now
        partials = BatchSender(producer)
        topic = kpi_partials_topic(self.settings)
        for p in sorted(self.changed):
            proc = processors.get(p)
            if proc is not None:
                partials.add(topic, 0, str(p).encode(), proc.kpi_partial_record())
        self.changed.clear()
        await partials.flush()


class StoreKpis:
    """Every worker's side: the latest partial of every partition, and the leader's publisher."""

    def __init__(self, settings: Settings, metrics: Metrics, config: EngineConfig) -> None:
        self.settings = settings
        self.metrics = metrics
        self.config = config
        #: partition -> (watermark, KPI partial), the latest of each from `<app>-kpi-partials`
        self.partials: dict[int, tuple[int | None, KpiPartial]] = {}
        self.version = 0
        self.published = (-1, 0.0)

    async def follow(self) -> None:
        """Read every partition's KPI partial, from the beginning, for as long as the app runs."""
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
                        msg = decode_kpi_message(r.value)
                        self.partials[msg.partition] = (msg.watermark, msg.kpis)
                        self.version += 1
        finally:
            await consumer.stop()

    def document(self) -> KpiDocument:
        """The store document: the merge of every partial, read at the largest watermark."""
        cfg = self.config
        return store_document(self.partials.values(), cfg.order_window_days, cfg.activity_window_days, cfg.channels,
                              segment_set(cfg).names)

    async def publish(self, ready: bool, owned: Collection[int],
                      producer: Callable[[], Awaitable[AIOKafkaProducer]]) -> None:
        """One tick of the publisher (every second): the leader sends the document when it changed,
        or when `kpi_interval_s` has passed; the others export no KPI gauges."""
        if not ready or not self.partials:
            return
        if not is_kpi_leader(owned):
            self.metrics.set_kpis(None)  # exported once across the group: by the leader
            return
        version, last = self.published
        now = time.monotonic()
        if version == self.version and now - last < self.settings.kpi_interval_s:
            return
        doc = self.document()
        self.metrics.set_kpis(doc)
        out = await producer()
        failpoints.hit("kpi_publish")
        await out.send_and_wait(self.settings.topic_kpis, orjson.dumps(doc), key=b"store", partition=0)
        self.published = (self.version, now)
