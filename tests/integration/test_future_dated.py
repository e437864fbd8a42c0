"""SPEC §1's future-dated rule in the stream: an event dated decades ahead of its Kafka timestamp is
dead-lettered at ingest, so it cannot move its partition's watermark to 2099 — the partition's
timers and sweeps go on, and its scores keep flowing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson

from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from stream_app.replay import replay_lines
from stream_app.stream.kafka_io import read_topic
from tests.helpers.stream import WorkerProcess, dead_letter_reasons, isolated_settings

CID = "fd-customer"
FUTURE = "2099-12-31T23:00:00Z"


def event(event_id: str, etype: str, occurred_at: str, **extra: Any) -> bytes:
    return orjson.dumps({"event_id": event_id, "type": etype, "customer_id": CID, "occurred_at": occurred_at,
                         **extra})


ORDER = event("fd-0", "order_placed", "2024-06-01T08:00:00Z", order_id="fd-order", amount=100)  # silver
CLICKS = [
    event("fd-1", "page_view", "2024-06-01T09:00:00Z"),
    event("fd-2", "page_view", FUTURE),                       # a mistyped year: rejected at ingest
    event("fd-3", "checkout_started", "2024-06-01T10:00:00Z", cart_id="cart-9"),
    event("fd-4", "page_view", "2024-06-01T11:30:00Z"),       # > 60 min later: the cart timer fires
    event("fd-5", "search", "2024-06-20T08:00:00Z"),          # past 19 midnights: the sweeps demote
]
# The clicks all go to one topic keyed by the customer: one input partition, so the order above is
# the order its re-keyed partition applies them in. Topics are not ordered among themselves, so
# the order is produced (and applied) first.
LINES = [ORDER, *CLICKS]


def poll(what: str, fetch: Any, done: Any, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    value = fetch()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {value!r} after {timeout}s")
        time.sleep(1.0)
        value = fetch()
    return value


def alerts(settings: Any) -> list[dict[str, Any]]:
    parts = asyncio.run(read_topic(settings, settings.topic_alerts, idle_ms=800))
    return [orjson.loads(r.value) for rs in parts.values() for r in rs]


def tier_changes(settings: Any) -> list[dict[str, Any]]:
    parts = asyncio.run(read_topic(settings, settings.topic_tier_changes, idle_ms=800))
    return [orjson.loads(r.value) for rs in parts.values() for r in rs]


def scores(settings: Any) -> list[dict[str, Any]]:
    parts = asyncio.run(read_topic(settings, settings.topic_scores, idle_ms=800))
    return [orjson.loads(r.value) for rs in parts.values() for r in rs if r.key == CID.encode() and r.value]


def test_a_future_dated_event_is_dead_lettered_and_the_partition_goes_on(
        broker: EmbeddedBroker, tmp_path: Path) -> None:
    settings = isolated_settings(broker, tmp_path)
    worker = WorkerProcess(settings, tmp_path)
    try:
        worker.wait_ready()
        # Kafka timestamps: now, decades before 2099
        asyncio.run(produce_lines(settings, [ORDER]))
        poll("the order", lambda: worker.get(f"/customers/{CID}"), lambda r: r[0] == 200)
        asyncio.run(produce_lines(settings, CLICKS))

        dead = poll("dead letters", lambda: dead_letter_reasons(settings), lambda d: len(d) >= 1)
        assert len(dead) == 1
        assert (dead[0]["reason"], dead[0]["field"]) == ("invalid_field", "occurred_at")
        assert "after the message was received" in dead[0]["message"]
        assert dead[0]["source"]["topic"] == settings.topic_clicks and FUTURE in dead[0]["payload"]

        # the customer's record keeps flowing, at its clock from the valid events only
        record = poll("customer record", lambda: worker.get(f"/customers/{CID}"),
                      lambda r: r[0] == 200 and r[1]["events_total"] == 5)[1]
        assert record["as_of"] == "2024-06-20T08:00:00Z" and record["last_activity_at"] == "2024-06-20T08:00:00Z"

        # the checkout's timer fired when fd-4 moved the watermark past its deadline
        raised = poll("abandoned-cart alert", lambda: alerts(settings),
                      lambda a: any(x["type"] == "abandoned_cart" for x in a))
        cart = [a for a in raised if a["type"] == "abandoned_cart"]
        assert len(cart) == 1 and cart[0]["customer_id"] == CID
        assert cart[0]["at"] == "2024-06-01T11:00:00Z" and cart[0]["details"]["cart_id"] == "cart-9"

        # the daily sweeps ran: the silver customer's score decayed and a sweep demoted it
        changes = poll("the sweep's demotion", lambda: tier_changes(settings),
                       lambda c: any(x["reason"] == "sweep" for x in c))
        assert [(c["from_tier"], c["to_tier"], c["reason"]) for c in changes] == [
            (None, "silver", "event"), ("silver", "bronze", "sweep")]
        assert changes[1]["score"] < 0.8 * 20 and changes[1]["at"].endswith("T00:00:00Z")

        # the stream did exactly what the replay does with the rejected line left out ...
        valid = replay_lines([line for line in LINES if FUTURE.encode() not in line])
        assert sorted(a["alert_id"] for a in raised) == sorted(a["alert_id"] for a in valid["alerts"])
        assert changes == valid["tier_changes"]
        snapshots = poll("score snapshots", lambda: scores(settings),
                         lambda s: bool(s) and s[-1]["events_total"] == 5)
        assert snapshots[-1] == valid["customers"][CID]
        # ... which a replay line gets too when its wrapper carries the received time (SPEC §8) ...
        wrapped = [orjson.dumps({"topic": "clicks", "event": orjson.loads(line), "received_at": "2024-06-01T09:30:00Z"})
                   if FUTURE.encode() in line else line for line in LINES]
        checked = replay_lines(wrapped)
        assert [(d["line"], d["reason"], d["field"]) for d in checked["dead_letters"]] == [
            (3, "invalid_field", "occurred_at")]
        assert (checked["alerts"], checked["tier_changes"]) == (valid["alerts"], valid["tier_changes"])
        # ... and had the 2099 event been applied (a replay line has no received time), the
        # watermark would sit in 2099: every later event late, no timer fired, no alert at all
        applied = replay_lines(LINES)
        assert applied["alerts"] == [] and applied["counts"]["applied"] == 6
    finally:
        worker.stop()


def test_event_time_stamps_keep_a_fast_clock_valid(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """What the demo relies on: an event ten days ahead of the wall clock, sent with its event time
    as the Kafka timestamp (`produce_lines(event_timestamps=True)`), is within the future rule and
    applied; the same event sent with the send time as its timestamp is dead-lettered."""
    settings = isolated_settings(broker, tmp_path)
    ahead_ms = (int(time.time()) + 10 * 86_400) * 1000
    stamped = orjson.dumps({"event_id": "ts-1", "type": "page_view", "customer_id": "ts-stamped",
                            "occurred_at": ahead_ms})
    unstamped = orjson.dumps({"event_id": "ts-2", "type": "page_view", "customer_id": "ts-plain",
                              "occurred_at": ahead_ms})
    asyncio.run(produce_lines(settings, [stamped], event_timestamps=True))
    asyncio.run(produce_lines(settings, [unstamped]))
    sent = asyncio.run(read_topic(settings, settings.topic_clicks, idle_ms=800))
    stamps = {r.key: r.timestamp for rs in sent.values() for r in rs}
    assert stamps[b"ts-stamped"] == ahead_ms  # the broker keeps the producer's CreateTime
    assert stamps[b"ts-plain"] < ahead_ms - 9 * 86_400_000
    worker = WorkerProcess(settings, tmp_path)
    try:
        worker.wait_ready()
        poll("the stamped event", lambda: worker.get("/customers/ts-stamped"), lambda r: r[0] == 200)
        dead = poll("dead letters", lambda: dead_letter_reasons(settings), lambda d: len(d) >= 1)
        assert [(d["reason"], d["field"]) for d in dead] == [("invalid_field", "occurred_at")]
        assert b"ts-plain" in dead[0]["payload"].encode()
        assert worker.get("/customers/ts-plain")[0] == 404
    finally:
        worker.stop()
