"""`engagement erase` against the session's broker: the events land on the privacy topic, keyed
by customer id, in the partition a keyed producer would choose, exactly as the CLI printed them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from stream_app.broker import EmbeddedBroker
from stream_app.engine.events import Event
from stream_app.stream.kafka_io import partition_for
from stream_app.validation import validate_bytes

PARTITIONS = 4


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()


async def _read_all(bootstrap: str, topic: str, want: int, timeout_s: float = 20.0) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while len(out) < want and loop.time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out.extend(records)
        return out
    finally:
        await consumer.stop()


def test_erase_cli_sends_one_event_per_customer(broker: EmbeddedBroker) -> None:
    bootstrap = broker.url.removeprefix("kafka://")
    topic = f"t{uuid.uuid4().hex[:8]}.privacy"
    asyncio.run(_create_topic(bootstrap, topic))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    env.update(ENGAGEMENT_BROKER=broker.url, ENGAGEMENT_TOPIC_PRIVACY=topic, ENGAGEMENT_LOG_LEVEL="info")
    ids = ["cust-1", "cust-2", "ü-" + "x" * 126, "cust-1"]  # a repeated id is sent once
    res = subprocess.run([sys.executable, "-m", "stream_app", "erase", *ids],
                         capture_output=True, text=True, timeout=90, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    printed = [orjson.loads(line) for line in res.stdout.splitlines()]
    assert [e["customer_id"] for e in printed] == ids[:3]
    assert f"sent 3 erasure request(s) to {topic}" in res.stderr
    assert not any(cid in res.stderr for cid in ids)  # customer ids only on stdout, never logged

    records = asyncio.run(_read_all(bootstrap, topic, want=3))
    assert len(records) == 3
    by_id = {orjson.loads(r.value)["event_id"]: r for r in records}
    assert set(by_id) == {e["event_id"] for e in printed}
    for ev in printed:
        r = by_id[ev["event_id"]]
        assert orjson.loads(r.value) == ev
        assert r.key == ev["customer_id"].encode()
        assert r.partition == partition_for(r.key, PARTITIONS)
        parsed = validate_bytes(r.value, topic="privacy")
        assert isinstance(parsed, Event) and parsed.type == "customer_erased", parsed
