"""Writing an applied batch in the one order recovery relies on (docs/RELIABILITY.md, "The write
order of one processing batch"; the step numbers below are the docs' numbers).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.config import Settings
from stream_app.panels import LiveActivity
from stream_app.stream import failpoints
from stream_app.stream.dead_letters import DeadLetters
from stream_app.stream.kafka_io import BatchSender, changelog_topic, partition_for
from stream_app.stream.kpis import KpiPartials
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionBatch, PartitionProcessor
from stream_app.stream.state_store import StateStore

__all__ = ["Applied", "BatchCommitter"]

#: one partition's part of a processing batch, applied in memory and not yet written
Applied = tuple[int, PartitionProcessor, PartitionBatch]


@dataclass
class BatchCommitter:
    """Writes what the scoring loop applied, in the order docs/RELIABILITY.md numbers."""

    settings: Settings
    metrics: Metrics
    store: StateStore
    partials: KpiPartials
    dead_letters: DeadLetters
    #: what the dashboard shows of the outputs (`GET /overview`): fed once a batch is written
    activity: LiveActivity | None = None
    changelog: str = field(init=False)

    def __post_init__(self) -> None:
        self.changelog = changelog_topic(self.settings)

    async def commit_batch(self, done: list[Applied], producer: AIOKafkaProducer) -> None:
        """Write a batch the engine applied in memory (step 1, `ScoringLoop.apply_batch`): outputs,
        then each partition's state with its unit record last, then the local store."""
        outputs = BatchSender(producer)
        state = BatchSender(producer, self.settings.changelog_batch_records)
        for p, proc, out in done:
            self._add_outputs(outputs, p, proc, out)
            state.extend(self.changelog, p, out.state)
        # 2. outputs (scores and tombstones, tier changes, alerts, segment changes, dead letters), awaited
        await outputs.flush()
        failpoints.hit("score_after_outputs")
        # 3. state, awaited: per partition its changed records, then the unit record (the commit marker)
        written = await state.flush(between="score_mid_state")
        failpoints.hit("score_after_state")
        # 4. the local store: the same records and the changelog offset, in one write
        for p, proc, out in done:
            if out.state:
                self.store.write(p, out.state, written[(self.changelog, p)])
            self.metrics.record_partition_batch(p, proc, out)
            if self.activity is not None:
                self.activity.record(out.tier_changes, out.alerts, out.segment_changes)

    def _add_outputs(self, outputs: BatchSender, p: int, proc: PartitionProcessor, out: PartitionBatch) -> None:
        s = self.settings
        for cid, score in proc.score_records(out):
            key = cid.encode()
            outputs.add(s.topic_scores, partition_for(key, s.partitions), key, score)
        changes: tuple[tuple[str, Sequence[Mapping[str, Any]]], ...] = (
            (s.topic_tier_changes, out.tier_changes), (s.topic_alerts, out.alerts),
            (s.topic_segment_changes, out.segment_changes))
        for topic, records in changes:
            for record in records:
                key = record["customer_id"].encode()
                outputs.add(topic, partition_for(key, s.partitions), key, orjson.dumps(record))
        for offset, rejection, raw in out.rejected:
            outputs.add(s.topic_dead_letter, p, None, self.dead_letters.record(rejection, s.topic_events, p, offset, raw))
        if out.kpis_changed:
            self.partials.mark(p)
