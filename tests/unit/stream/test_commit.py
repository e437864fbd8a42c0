"""BatchCommitter: one batch's outputs (segment changes included) are sent and awaited before its
state (docs/RELIABILITY.md, "The write order of one processing batch"); no broker, the senders
recorded."""

from __future__ import annotations

import logging
from typing import Any

import orjson
import pytest

from stream_app.config import Settings
from stream_app.engine import Unit
from stream_app.stream import commit
from stream_app.stream.commit import BatchCommitter
from stream_app.stream.dead_letters import DeadLetters
from stream_app.stream.kafka_io import changelog_topic, kpi_partials_topic, partition_for, topic_specs
from stream_app.stream.kpis import KpiPartials
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionProcessor
from stream_app.stream.state_store import MemoryStore
from tests.unit.stream.test_processor import messages


class Recorder:
    """Stands in for `kafka_io.BatchSender`: each flush is one step of the write order."""

    flushes: list[list[tuple[str, int, bytes | None, bytes | None]]] = []

    def __init__(self, producer: Any, max_records: int = 0) -> None:
        self.records: list[tuple[str, int, bytes | None, bytes | None]] = []

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self.records.append((topic, partition, key, value))

    def extend(self, topic: str, partition: int, records: list[tuple[bytes, bytes | None]]) -> None:
        self.records.extend((topic, partition, k, v) for k, v in records)

    async def flush(self, between: str | None = None) -> dict[tuple[str, int], int]:
        Recorder.flushes.append(self.records)
        last = {(t, p): i for i, (t, p, _, _) in enumerate(self.records)}
        self.records = []
        return last


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    Recorder.flushes = []
    monkeypatch.setattr(commit, "BatchSender", Recorder)
    return Recorder


async def test_segment_changes_are_outputs_keyed_by_customer_and_sent_before_the_state(
        recorder: type[Recorder]) -> None:
    s = Settings(broker="kafka://h:1", partitions=4, topic_segment_changes="t.segment-changes")
    metrics = Metrics()
    committer = BatchCommitter(s, metrics, MemoryStore(), KpiPartials(s),
                               DeadLetters(logging.getLogger("test"), "scoring"))
    proc = PartitionProcessor(2, Unit(s.engine_config()))
    out = proc.process(messages(600))
    assert out.segment_changes, "the workload enters built-in segments"
    await committer.commit_batch([(2, proc, out)], producer=None)  # type: ignore[arg-type]

    outputs, state = recorder.flushes
    published = [(p, k, v) for t, p, k, v in outputs if t == s.topic_segment_changes]
    assert published == [(partition_for(sc["customer_id"].encode(), 4), sc["customer_id"].encode(),
                          orjson.dumps(sc)) for sc in out.segment_changes]
    assert {t for t, _, _, _ in outputs} >= {s.topic_scores, s.topic_tier_changes, s.topic_segment_changes}
    assert {t for t, _, _, _ in state} == {changelog_topic(s)}, "outputs first (step 2), then state (step 3)"
    assert sum(sample.value for fam in metrics.registry.collect() for sample in fam.samples
               if sample.name == "engagement_segment_changes_total") == len(out.segment_changes)


def test_the_segment_changes_topic_is_created_with_the_other_outputs() -> None:
    s = Settings(partitions=5, topic_segment_changes="x.segment-changes")
    specs = {name: (parts, configs) for name, parts, configs in topic_specs(s)}
    assert specs["x.segment-changes"] == specs[s.topic_tier_changes] == (5, {"cleanup.policy": "delete"})


def test_tail_and_audit_know_the_segment_changes_topic() -> None:
    from stream_app.config import OUTPUT_TOPIC_SETTINGS
    from stream_app.tail import SHORT_NAMES, resolve_topic

    s = Settings(topic_segment_changes="x.segment-changes")
    assert resolve_topic(s, "segment-changes") == "x.segment-changes"
    assert "topic_segment_changes" in OUTPUT_TOPIC_SETTINGS
    # every output topic the worker creates has a short name for `engagement tail`
    created = {name for name, _, _ in topic_specs(s)}
    assert {getattr(s, f) for f in SHORT_NAMES.values()} >= created - {kpi_partials_topic(s), changelog_topic(s)}
