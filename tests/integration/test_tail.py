"""`engagement tail` against the real broker, as a user runs it (a subprocess): JSON lines,
`--from-beginning`, `--no-follow`, `-n`, `--key`, tombstones, following new records, and the
exit status 2 for an unknown topic or no ENGAGEMENT_BROKER."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from stream_app.broker import EmbeddedBroker
from stream_app.config import Settings
from stream_app.stream.kafka_io import BatchSender, client_options, partition_for
from tests.helpers.stream import isolated_settings

#: (key, value) in the order produced; partitions by the default partitioner (as the worker keys)
RECORDS: list[tuple[bytes, bytes | None]] = [
    (b"c1", orjson.dumps({"customer_id": "c1", "tier": "bronze", "score": 1.5})),
    (b"c2", orjson.dumps({"customer_id": "c2", "tier": "silver", "score": 20.0})),
    (b"c1", orjson.dumps({"customer_id": "c1", "tier": "gold", "score": 55.25})),
    (b"c3", b"not json \xff"),
    (b"c2", None),  # c2 erased: a tombstone
    (b"c4", orjson.dumps([1, 2])),
]
#: then sent as one record batch: the bundled broker's ListOffsets end is the batch's start + 1
BATCH: list[tuple[bytes, bytes | None]] = [(b"c5", orjson.dumps({"i": i})) for i in range(4)]


async def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes | None]],
                  batch: list[tuple[bytes, bytes | None]] | None = None) -> None:
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        for key, value in records:  # one at a time: several record batches per partition
            await producer.send_and_wait(topic, value, key=key,
                                         partition=partition_for(key, settings.partitions))
        sender = BatchSender(producer)
        for key, value in batch or []:
            sender.add(topic, partition_for(key, settings.partitions), key, value)
        await sender.flush()
    finally:
        await producer.stop()


def tail_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGAGEMENT_")}
    return {**env, **settings.to_env(), **extra}


def run_tail(settings: Settings, *args: str, env: dict[str, str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "stream_app", "tail", *args], capture_output=True,
                          env=env if env is not None else tail_env(settings), timeout=timeout, check=False)


def lines(proc: subprocess.CompletedProcess[bytes]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr.decode()
    return [orjson.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def scores(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = isolated_settings(broker, tmp_path_factory.mktemp("tail"))
    asyncio.run(produce(settings, settings.topic_scores, RECORDS, BATCH))
    return settings


def test_from_the_beginning_to_the_end(scores: Settings) -> None:
    got = lines(run_tail(scores, "scores", "--from-beginning", "--no-follow"))
    assert len(got) == len(RECORDS) + len(BATCH)
    assert all(set(doc) == {"topic", "partition", "offset", "timestamp", "key", "value"} for doc in got)
    assert {doc["topic"] for doc in got} == {scores.topic_scores}
    by_key: dict[str, list[Any]] = {}
    for doc in got:  # a key's records are in one partition, in offset order
        assert doc["partition"] == partition_for(doc["key"].encode(), scores.partitions)
        assert doc["timestamp"].endswith("Z") and doc["timestamp"][:2] == "20"
        by_key.setdefault(doc["key"], []).append(doc["value"])
    assert by_key == {
        "c1": [{"customer_id": "c1", "tier": "bronze", "score": 1.5}, {"customer_id": "c1", "tier": "gold", "score": 55.25}],
        "c2": [{"customer_id": "c2", "tier": "silver", "score": 20.0}, None],  # the tombstone: value null
        "c3": ["not json \ufffd"],  # not JSON: a string
        "c4": [[1, 2]],
        "c5": [{"i": i} for i in range(4)],
    }
    offsets: dict[int, list[int]] = {}
    for doc in got:
        offsets.setdefault(doc["partition"], []).append(doc["offset"])
    assert all(o == list(range(len(o))) for o in offsets.values())


def test_full_topic_names_work_too(scores: Settings) -> None:
    assert len(lines(run_tail(scores, scores.topic_scores, "--from-beginning", "--no-follow"))) == \
        len(RECORDS) + len(BATCH)


def test_n_stops_after_n_records(scores: Settings) -> None:
    got = lines(run_tail(scores, "scores", "--from-beginning", "-n", "2"))  # follows, but exits after 2
    assert len(got) == 2
    assert len(lines(run_tail(scores, "scores", "--from-beginning", "--no-follow", "-n", "100"))) == \
        len(RECORDS) + len(BATCH)


def test_key_keeps_one_customers_records(scores: Settings) -> None:
    got = lines(run_tail(scores, "scores", "--from-beginning", "--no-follow", "--key", "c2"))
    assert [(d["key"], d["value"]) for d in got] == [("c2", {"customer_id": "c2", "tier": "silver", "score": 20.0}),
                                                     ("c2", None)]
    assert lines(run_tail(scores, "scores", "--from-beginning", "--no-follow", "--key", "nobody")) == []


def test_without_from_beginning_only_new_records(scores: Settings) -> None:
    # from the end: nothing of what is there (the bundled broker's ListOffsets would say less)
    assert lines(run_tail(scores, "scores", "--no-follow")) == []
    proc = subprocess.Popen([sys.executable, "-m", "stream_app", "tail", "scores", "-n", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tail_env(scores))
    try:
        # produce until the follower (which needs a moment to start) prints one
        deadline = time.monotonic() + 60
        sent = 0
        while proc.poll() is None and time.monotonic() < deadline:
            sent += 1
            asyncio.run(produce(scores, scores.topic_scores, [(b"c9", orjson.dumps({"n": sent}))]))
            time.sleep(0.5)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode()
    (doc,) = [orjson.loads(line) for line in out.splitlines()]
    assert doc["key"] == "c9" and 1 <= doc["value"]["n"] <= sent
    # the records produced here are on the topic too, after those of the module's fixture
    assert doc["offset"] >= sum(1 for k, _ in RECORDS + BATCH if partition_for(k, 4) == doc["partition"])


def test_an_unknown_topic_is_exit_2(scores: Settings) -> None:
    proc = run_tail(scores, "no.such.topic", "--from-beginning")
    assert proc.returncode == 2 and proc.stdout == b""
    err = proc.stderr.decode().strip().splitlines()
    assert len(err) == 1 and "unknown topic 'no.such.topic'" in err[0]


def test_no_broker_is_exit_2(scores: Settings, tmp_path: Path) -> None:
    env = {k: v for k, v in tail_env(scores).items() if k != "ENGAGEMENT_BROKER"}
    proc = run_tail(scores, "scores", env=env)
    assert proc.returncode == 2 and proc.stdout == b""
    assert "ENGAGEMENT_BROKER" in proc.stderr.decode()
