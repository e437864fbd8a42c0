"""`engagement erase`: right-to-be-forgotten requests (SPEC §9) to the privacy topic.

One `customer_erased` event per customer id, keyed by the id (so it lands in the partition of the
customer's other keyed events), with a fresh random event id, so a second request for the same
customer is applied too rather than dropped as a duplicate, and `occurred_at` = now: the erasure
takes effect at its place in the customer's event order. docs/PRIVACY.md says what it removes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaProducer

from stream_app.config import Settings
from stream_app.engine.clock import format_instant
from stream_app.engine.events import CUSTOMER_ERASED
from stream_app.stream.kafka_io import client_options, start_client

__all__ = ["MAX_ID_CHARS", "erasure_event", "send_erasures"]

#: SPEC §1: `customer_id` is a string of 1-128 characters (Unicode code points)
MAX_ID_CHARS = 128


def erasure_event(customer_id: str, now_us: int | None = None) -> dict[str, str]:
    """The SPEC §1 `customer_erased` event for one customer; ValueError for an id the scorer would
    reject (it would become a dead letter, and the customer would not be erased)."""
    if not customer_id:
        raise ValueError("a customer id must not be empty")
    if len(customer_id) > MAX_ID_CHARS:
        raise ValueError(f"a customer id has at most {MAX_ID_CHARS} characters, got {len(customer_id)}")
    at = time.time_ns() // 1_000 if now_us is None else now_us
    return {"event_id": str(uuid.uuid4()), "type": CUSTOMER_ERASED, "customer_id": customer_id,
            "occurred_at": format_instant(at)}


async def send_erasures(settings: Settings, events: Iterable[dict[str, str]]) -> list[dict[str, str]]:
    """Send the events to the privacy topic and wait until the broker has them all."""
    producer = AIOKafkaProducer(acks="all", **client_options(settings))
    await start_client(producer, settings)  # a refused login: a clear error (exit 2), not a traceback
    sent = []
    try:
        futures = [(ev, await producer.send(settings.topic_privacy, orjson.dumps(ev),
                                            key=ev["customer_id"].encode()))
                   for ev in events]
        for ev, fut in futures:
            await fut
            sent.append(ev)
    finally:
        await producer.stop()
    return sent
