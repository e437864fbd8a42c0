"""The simulator: deterministic, valid, with campaigns, channels and erasures as documented."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import orjson

from stream_app.config import Settings
from stream_app.engine.clock import parse_rfc3339
from stream_app.engine.events import DEFAULT_CHANNELS, SENT_TYPES, Event, channel_of
from stream_app.produce import route
from stream_app.simulate import Simulator, live_lines
from stream_app.validation import validate_bytes

RESPONSE_MEDIUM = {"email_open": "email", "email_click": "email", "push_open": "push", "sms_click": "sms"}


def _events(n: int = 20_000, **kw: Any) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in Simulator(customers=500, seed=3, days=120, **kw).lines(n)]


def test_deterministic_per_seed() -> None:
    a = list(Simulator(customers=200, seed=5, bad_rate=0.02).lines(3000))
    assert a == list(Simulator(customers=200, seed=5, bad_rate=0.02).lines(3000))
    assert a != list(Simulator(customers=200, seed=6, bad_rate=0.02).lines(3000))


def test_every_event_is_valid_and_routed_to_its_topic() -> None:
    settings = Settings()
    lines = list(Simulator(customers=300, seed=8, days=90).lines(8000))
    topics = Counter()
    for line in lines:
        ev = validate_bytes(line)
        assert isinstance(ev, Event), (line, ev)
        topic, _, _ = route(line, settings)
        assert topic == settings.input_topics[ev.topic]
        topics[ev.topic] += 1
    assert set(topics) == {"orders", "clicks", "social", "privacy"}


def test_mix_of_new_types_stays_small() -> None:
    # bench/engine_bench.py uses this mix: the new types must not swamp the old figures
    types = Counter(e["type"] for e in _events())
    n = sum(types.values())
    sent = sum(types[t] for t in SENT_TYPES) / n
    responses = sum(types[t] for t in RESPONSE_MEDIUM) / n
    assert all(types[t] for t in (*SENT_TYPES, *RESPONSE_MEDIUM, "review", "survey_response", "customer_erased"))
    assert 0.02 < sent < 0.10, sent
    assert 0.005 < responses < 0.03, responses
    assert types["customer_erased"] / n < 0.002


def test_sessions_use_several_channels_some_spelt_oddly() -> None:
    events = _events()
    raw = Counter(e.get("channel") for e in events)
    assert {"Kiosk", "APP"} <= set(raw)
    counted = Counter(channel_of(e["type"], e.get("channel"), DEFAULT_CHANNELS) for e in events)
    assert set(DEFAULT_CHANNELS) | {"other"} <= set(counted)
    # channel omitted on some campaign events and social events: the type's own applies
    assert any(e["type"] in SENT_TYPES and "channel" not in e for e in events)
    assert any(e["type"] == "like" and "channel" not in e for e in events)


def test_campaign_responses_follow_a_send_to_the_same_customer() -> None:
    first_sent: dict[tuple[str, str], int] = {}
    first_open: dict[str, int] = {}
    events = sorted(_events(), key=lambda e: parse_rfc3339(e["occurred_at"]) or 0)
    responses = 0
    for e in events:
        at = parse_rfc3339(e["occurred_at"]) or 0
        cid = e.get("customer_id")
        if e["type"] in SENT_TYPES:
            first_sent.setdefault((e["type"].removesuffix("_sent"), cid), at)
        elif e["type"] in RESPONSE_MEDIUM:
            responses += 1
            sent_at = first_sent.get((RESPONSE_MEDIUM[e["type"]], cid))
            assert sent_at is not None and sent_at < at, e
            if e["type"] == "email_open":
                first_open.setdefault(cid, at)
            if e["type"] == "email_click":
                assert first_open.get(cid, at + 1) < at, e  # a click follows an open
    assert responses > 50


def test_erasures_are_rare_and_can_be_switched_off() -> None:
    erased = [e for e in _events() if e["type"] == "customer_erased"]
    assert 0 < len(erased) < 40
    assert all(set(e) == {"event_id", "type", "customer_id", "occurred_at"} for e in erased)
    assert not any(e["type"] == "customer_erased" for e in _events(erase_rate=0.0))
    assert not any(e["type"] in SENT_TYPES for e in _events(campaign_rate=0.0))


def test_live_lines_carry_campaigns_too() -> None:
    sim = Simulator(customers=50, seed=2, campaign_rate=0.5)
    lines = list(itertools.islice(live_lines(sim, speed=3600), 3000))
    types = Counter(orjson.loads(line)["type"] for line in lines)
    assert types["email_sent"] + types["push_sent"] + types["sms_sent"] > 0
    assert all(isinstance(validate_bytes(line), Event) for line in lines)


def test_event_time_ms_reads_occurred_at_in_both_forms_and_wrappers() -> None:
    from stream_app.produce import event_time_ms

    assert event_time_ms(b'{"type": "page_view", "occurred_at": "2024-01-01T00:00:01.5Z"}') == 1704067201500
    assert event_time_ms(b'{"type": "page_view", "occurred_at": 1704067201500}') == 1704067201500
    assert event_time_ms(b'{"topic": "clicks", "event": {"occurred_at": "2024-01-01T01:00:00+01:00"}}') \
        == 1704067200000
    # no readable instant, or one the scorer rejects anyway: the broker's time, as for any record
    for raw in (b"{", b"[1]", b'{"occurred_at": "yesterday"}', b'{"occurred_at": true}',
                b'{"occurred_at": 99999999999999999}', b'{"occurred_at": "1999-12-31T23:59:59Z"}', b"{}"):
        assert event_time_ms(raw) is None, raw
