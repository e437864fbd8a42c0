"""The embedded broker serves real Kafka clients: aiokafka round trips and a Faust app."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path

import faust
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.broker import BrokerStartError, EmbeddedBroker

pytestmark = pytest.mark.integration


def _name(prefix: str) -> str:
    # The broker lives for the whole session: unique names keep tests independent.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_broker_addresses(broker: EmbeddedBroker) -> None:
    assert broker.running
    assert broker.bootstrap == f"127.0.0.1:{broker.port}"
    assert broker.url == f"kafka://127.0.0.1:{broker.port}"


def test_second_broker_on_a_taken_port_fails_fast(broker: EmbeddedBroker) -> None:
    other = EmbeddedBroker(port=broker.port, start_timeout=5.0)
    with pytest.raises(BrokerStartError):
        other.start()
    other.stop()
    assert broker.running


def test_context_manager_starts_and_stops() -> None:
    with EmbeddedBroker() as b:
        assert b.running
    assert not b.running


async def test_aiokafka_round_trip_over_four_partitions(broker: EmbeddedBroker) -> None:
    topic = _name("roundtrip")
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()

    sent = {(f"k{i}".encode(), f"v{i}".encode()) for i in range(200)}
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        for key, value in sorted(sent):
            await producer.send(topic, value, key=key)
        await producer.flush()
        assert producer.client.cluster.partitions_for_topic(topic) == {0, 1, 2, 3}
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    received: set[tuple[bytes, bytes]] = set()
    partitions: set[int] = set()
    try:
        deadline = time.monotonic() + 20
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=1000)
            for tp, records in batches.items():
                partitions.add(tp.partition)
                received.update((r.key, r.value) for r in records)
    finally:
        await consumer.stop()
    assert received == sent
    assert partitions == {0, 1, 2, 3}


async def test_faust_group_by_into_table(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """A Faust worker (run in this event loop) re-keys with group_by and counts in a table.

    Uses the short group timings that make Tansu's JoinGroup answer fast (see
    NOTES-broker.md); records the start -> first-processed latency in the test output.
    """
    source = _name("orders")
    n_messages, customers = 40, [f"c{i}" for i in range(5)]

    # Produce before the worker starts: the measured time is start -> first processed.
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await producer.start()
    try:
        for i in range(n_messages):
            body = {"customer_id": customers[i % len(customers)], "i": i}
            await producer.send(source, json.dumps(body).encode(), key=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()

    app = faust.App(
        _name("faust-it"),
        broker=broker.url,
        datadir=str(tmp_path),
        store="memory://",
        topic_partitions=4,
        broker_session_timeout=2.0,
        broker_heartbeat_interval=0.5,
        web_enabled=False,
        autodiscover=False,
        consumer_auto_offset_reset="earliest",
    )
    # value_type=bytes alone would still JSON-decode (the app's value_serializer): let Faust
    # decode to dicts, and the repartition topic carries JSON too.
    orders = app.topic(source, partitions=4)
    counts = app.Table("counts", default=int, partitions=4)
    first_processed = asyncio.Event()
    all_processed = asyncio.Event()
    processed = 0

    failures: list[BaseException] = []

    @app.agent(orders)
    async def tally(stream: faust.StreamT) -> None:
        nonlocal processed
        try:
            # A failing group_by key function is logged and the event skipped, not raised.
            async for order in stream.group_by(
                lambda order: order["customer_id"], name="by_customer"
            ):
                counts[order["customer_id"]] += 1
                processed += 1
                first_processed.set()
                if processed == n_messages:
                    all_processed.set()
        except Exception as exc:
            # Faust logs a crashed agent and restarts it; surface the error instead.
            failures.append(exc)
            first_processed.set()
            all_processed.set()
            raise

    t0 = time.monotonic()
    await app.start()
    try:
        await asyncio.wait_for(first_processed.wait(), 30)
        t_first = time.monotonic() - t0
        await asyncio.wait_for(all_processed.wait(), 30)
        t_all = time.monotonic() - t0
    finally:
        await app.stop()
    assert not failures, failures
    print(f"faust: start -> first processed {t_first:.2f}s, all {n_messages} {t_all:.2f}s")

    assert dict(counts.items()) == {c: n_messages // len(customers) for c in customers}
    # group_by wrote through a 4-partition repartition topic, and the table's changelog exists.
    assert counts.changelog_topic.get_topic_name() == f"{app.conf.id}-counts-changelog"
