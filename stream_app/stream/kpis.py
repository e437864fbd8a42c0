"""Store KPIs: every worker follows every partition's KPI partial; the owner of partition 0
publishes the merged store document to `engagement.kpis` (on change, at least every
`kpi_interval_s`), so it is published once across the group and `GET /kpis` answers anywhere.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_app.config import Settings
from stream_app.engine import EngineConfig, KpiPartial, store_document
from stream_app.stream import failpoints
from stream_app.stream.kafka_io import consumer_options, kpi_partials_topic
from stream_app.stream.metrics import Metrics

__all__ = ["StoreKpis", "is_kpi_leader"]


def is_kpi_leader(owned: Collection[int]) -> bool:
    """The owner of partition 0 publishes the store-wide KPIs, so they are published once."""
    return 0 in owned


class StoreKpis:
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
                        doc = orjson.loads(r.value)
                        self.partials[doc["partition"]] = (doc["watermark"], KpiPartial.from_state(doc["kpis"]))
                        self.version += 1
        finally:
            await consumer.stop()

    def document(self) -> dict[str, Any]:
        """The store document: the merge of every partial, read at the largest watermark."""
        cfg = self.config
        return store_document(self.partials.values(), cfg.order_window_days, cfg.activity_window_days, cfg.channels)

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
