"""Recovery of 1,000,000 customers: from the changelog alone, and from local RocksDB.

The state is made by the engine (one order per customer, spread over the partitions as the
stream spreads them), written to the changelog in committed groups like the worker writes them,
then restored with the worker's own restore (`stream_app.stream.restore.restore_units`).
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import tempfile
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream_app.broker import EmbeddedBroker
from stream_app.config import Settings
from stream_app.engine import Unit
from stream_app.engine.clock import DAY, parse_rfc3339
from stream_app.engine.events import Event
from stream_app.engine.formats import CUSTOMER, UNIT, encode_customer, encode_unit, state_key
from stream_app.stream.kafka_io import BatchSender, changelog_topic, client_options, ensure_topics, partition_for
from stream_app.stream.restore import restore_units
from stream_app.stream.state_store import MemoryStore, RocksStore, StateStore

GROUP = 5_000  # customers per committed group (a processing batch's state)


def _units(customers: int, partitions: int) -> dict[int, Unit]:
    units = {p: Unit() for p in range(partitions)}
    t0 = parse_rfc3339("2011-06-01T00:00:00Z")
    assert t0 is not None
    for n in range(customers):
        cid = f"c-{n}"
        p = partition_for(cid.encode(), partitions)
        ev = Event(f"e-{n}", "order_placed", "orders", cid, t0 + (n % 180) * DAY // 180, None,
                   order_id=f"o-{n}", amount=float(10 + n % 300), guest=False)  # type: ignore[call-arg]
        units[p].offer(ev)
    return units


async def _write(settings: Settings, units: dict[int, Unit]) -> int:
    producer = AIOKafkaProducer(linger_ms=20, max_batch_size=1_000_000, max_request_size=1_048_576,
                                **client_options(settings))
    await producer.start()
    topic = changelog_topic(settings)
    n = 0
    try:
        for p, unit in units.items():
            core = encode_unit(unit.core(), len(unit.customers) - 1, 0)
            customers = list(unit.customers.values())
            for i in range(0, len(customers), GROUP):
                sender = BatchSender(producer)
                sender.extend(topic, p, [(state_key(p, CUSTOMER, c.customer_id), encode_customer(c))
                                         for c in customers[i:i + GROUP]])
                sender.add(topic, p, state_key(p, UNIT), core)
                n += len(sender)
                await sender.flush()
    finally:
        await producer.stop()
    return n


async def _restore(settings: Settings, store: StateStore, partitions: int) -> tuple[float, int, int]:
    restorer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="none", **client_options(settings))
    producer = AIOKafkaProducer(**client_options(settings))
    await restorer.start()
    await producer.start()
    try:
        gc.collect()
        t0 = time.perf_counter()
        done = await restore_units(list(range(partitions)), store, restorer, producer, changelog_topic(settings),
                                   settings.engine_config(), settings.input_topics)
        dt = time.perf_counter() - t0
    finally:
        await restorer.stop()
        await producer.stop()
    customers = sum(len(proc.unit.customers) for proc, _ in done.values())
    read = sum(r.read for _, r in done.values())
    return dt, customers, read


def bench_recovery(customers: int = 1_000_000, partitions: int = 8) -> dict[str, Any]:
    data = tempfile.mkdtemp(prefix="engagement-recovery-")
    with EmbeddedBroker() as broker:
        settings = Settings(broker=broker.url, app_id="recovery-bench", partitions=partitions,
                            fetch_max_wait_ms=50, data_dir=data)
        asyncio.run(ensure_topics(settings))
        units = _units(customers, partitions)
        written = asyncio.run(_write(settings, units))
        del units
        gc.collect()
        from_changelog, n1, read1 = asyncio.run(_restore(settings, MemoryStore(), partitions))
        rocks = RocksStore(data)
        filling, _, _ = asyncio.run(_restore(settings, rocks, partitions))  # the changelog into RocksDB
        rocks.close()
        rocks = RocksStore(data)
        from_local, n2, read2 = asyncio.run(_restore(settings, rocks, partitions))
        rocks.close()
    shutil.rmtree(data, ignore_errors=True)
    assert n1 == n2 == customers, (n1, n2, customers)
    return {
        "recovery_customers": customers,
        "recovery_changelog_records": written,
        "recovery_from_changelog_s": round(from_changelog, 2),
        "recovery_changelog_records_per_s": round(read1 / from_changelog),
        "recovery_changelog_into_rocksdb_s": round(filling, 2),
        "recovery_from_rocksdb_s": round(from_local, 2),
        "recovery_from_rocksdb_changelog_records_read": read2,
    }


if __name__ == "__main__":
    import sys

    print(orjson.dumps(bench_recovery(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)).decode())
