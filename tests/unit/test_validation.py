"""SPEC §1: every rejection reason, the field at fault, first-fault order, accepted forms."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.engine.clock import MS, SECOND, parse_rfc3339
from stream_app.engine.events import TOPIC_OF_TYPE, TOPICS, Event
from stream_app.validation import (
    INVALID_FIELD,
    INVALID_JSON,
    MISSING_FIELD,
    NOT_AN_OBJECT,
    REASONS,
    TOO_LARGE,
    UNKNOWN_TYPE,
    WRONG_TOPIC,
    Rejection,
    validate_bytes,
    validate_object,
)
from tests.strategies import event_streams

BASE = {"event_id": "e1", "type": "page_view", "customer_id": "c1", "occurred_at": "2024-05-01T10:00:00Z"}
ORDER = {**BASE, "type": "order_placed", "order_id": "o1", "amount": 12.5}


def check(obj: Any, topic: str | None = None) -> Event | Rejection:
    return validate_bytes(orjson.dumps(obj), topic)


def rejected(result: Event | Rejection, reason: str, field: str | None) -> None:
    assert isinstance(result, Rejection), result
    assert (result.reason, result.field) == (reason, field), result
    assert result.message


def test_accepts_minimal_click_and_ignores_unknown_fields() -> None:
    ev = check({**BASE, "extra": {"nested": [1, 2]}, "channel": "web"}, "clicks")
    assert isinstance(ev, Event)
    assert ev.occurred_at == parse_rfc3339("2024-05-01T10:00:00Z")
    assert ev.channel == "web" and ev.schema_version == 1 and ev.topic == "clicks"


@pytest.mark.parametrize("text,expected", [
    ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00+00:00"),
    ("2024-05-01t10:00:00z", "2024-05-01T10:00:00+00:00"),
    ("2024-05-01T12:30:00+02:30", "2024-05-01T10:00:00+00:00"),
    ("2024-05-01T05:00:00-05:00", "2024-05-01T10:00:00+00:00"),
    ("2024-05-01T10:00:00.123456789Z", "2024-05-01T10:00:00.123456+00:00"),
    ("2024-02-29T10:00:00Z", "2024-02-29T10:00:00+00:00"),
])
def test_timestamp_forms(text: str, expected: str) -> None:
    from datetime import datetime

    ev = check({**BASE, "occurred_at": text})
    assert isinstance(ev, Event)
    want = datetime.fromisoformat(expected)
    assert ev.occurred_at == int(want.timestamp()) * SECOND + want.microsecond


def test_epoch_milliseconds() -> None:
    ev = check({**BASE, "occurred_at": 1714557600123})
    assert isinstance(ev, Event) and ev.occurred_at == 1714557600123 * MS


@pytest.mark.parametrize("value", [
    "2024-05-01 10:00:00Z", "2024-05-01T10:00Z", "2024-05-01T10:00:00", "2024-13-01T10:00:00Z",
    "2023-02-29T10:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01T10:00:00+0200", "1999-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z", "2099-12-31T23:30:00-01:00", 946684799999, 4102444800000, True, 1.5e12 + 0.5,
    "", "2024-05-01T10:00:00.Z",
])
def test_bad_timestamps_are_invalid(value: Any) -> None:
    rejected(check({**BASE, "occurred_at": value}), INVALID_FIELD, "occurred_at")


def test_instant_bounds_are_half_open() -> None:
    assert isinstance(check({**BASE, "occurred_at": "2000-01-01T00:00:00Z"}), Event)
    assert isinstance(check({**BASE, "occurred_at": "2100-01-01T00:30:00+01:00"}), Event)


def test_invalid_json_including_nan_and_bad_utf8() -> None:
    rejected(validate_bytes(b'{"event_id": '), INVALID_JSON, None)
    rejected(validate_bytes(b'{"amount": NaN}'), INVALID_JSON, None)
    rejected(validate_bytes(b'{"amount": Infinity}'), INVALID_JSON, None)
    rejected(validate_bytes(b'{"x": "\xff"}'), INVALID_JSON, None)


def test_big_integers_are_json_not_invalid_json() -> None:
    data = orjson.dumps({**ORDER, "order_id": "o"}).replace(b'"amount":12.5', b'"amount":' + b"9" * 30)
    assert isinstance(validate_bytes(data, "orders"), Event)


def test_not_an_object() -> None:
    for payload in (b"[1,2]", b'"x"', b"42", b"null"):
        rejected(validate_bytes(payload), NOT_AN_OBJECT, None)


def test_too_large_counts_bytes_not_characters() -> None:
    pad = "é" * 33_000  # 66,000 bytes in UTF-8, only 33,000 characters
    rejected(check({**BASE, "note": pad}), TOO_LARGE, None)
    ok = {**BASE, "note": "a" * 100}
    data = orjson.dumps(ok)
    fitting = data[:-1] + b',"pad":"' + b"a" * (65536 - len(data) - 9) + b'"}'
    assert len(fitting) == 65536 and isinstance(validate_bytes(fitting), Event)
    rejected(validate_bytes(fitting[:-2] + b'a"}'), TOO_LARGE, None)


def test_unknown_type_and_wrong_topic() -> None:
    rejected(check({**BASE, "type": "teleport"}), UNKNOWN_TYPE, "type")
    rejected(check({**BASE, "type": "review", "rating": 5}, "clicks"), WRONG_TOPIC, "type")
    rejected(check({**BASE, "type": 7}), INVALID_FIELD, "type")


@pytest.mark.parametrize("field", ["event_id", "type", "customer_id", "occurred_at"])
def test_missing_envelope_fields_absent_or_null(field: str) -> None:
    obj = dict(BASE)
    del obj[field]
    rejected(check(obj), MISSING_FIELD, field)
    rejected(check({**BASE, field: None}), MISSING_FIELD, field)


@pytest.mark.parametrize("field,value", [
    ("event_id", ""), ("event_id", "x" * 129), ("event_id", 5), ("customer_id", ""),
    ("customer_id", ["c"]), ("channel", "c" * 33), ("channel", 3), ("schema_version", 0),
    ("schema_version", "1"), ("schema_version", 1.5), ("schema_version", True),
])
def test_invalid_envelope_fields(field: str, value: Any) -> None:
    rejected(check({**BASE, field: value}), INVALID_FIELD, field)


def test_lengths_count_code_points() -> None:
    assert isinstance(check({**BASE, "event_id": "😀" * 128}), Event)
    rejected(check({**BASE, "event_id": "😀" * 129}), INVALID_FIELD, "event_id")


def test_first_fault_wins_envelope_first() -> None:
    obj = {"type": "order_placed", "occurred_at": "bad", "amount": -1}
    rejected(check(obj), MISSING_FIELD, "event_id")
    rejected(check({**obj, "event_id": "e"}), MISSING_FIELD, "customer_id")
    rejected(check({**obj, "event_id": "e", "customer_id": "c"}), INVALID_FIELD, "occurred_at")
    rejected(check({**ORDER, "amount": -1, "currency": "EUR"}), INVALID_FIELD, "amount")
    rejected(check({**ORDER, "order_id": None, "amount": -1}), MISSING_FIELD, "order_id")


def test_guest_orders_may_omit_customer_id() -> None:
    g = {k: v for k, v in ORDER.items() if k != "customer_id"}
    ev = check({**g, "guest": True}, "orders")
    assert isinstance(ev, Event) and ev.customer_id is None and ev.guest and ev.unit_key == "o1"
    assert isinstance(check({**g, "guest": True, "customer_id": None}), Event)
    ref = {**g, "type": "order_refunded", "guest": True}
    assert isinstance(check(ref), Event)
    rejected(check(g), MISSING_FIELD, "customer_id")
    rejected(check({**g, "guest": "yes"}), MISSING_FIELD, "customer_id")
    rejected(check({**BASE, "guest": True, "customer_id": None}), MISSING_FIELD, "customer_id")
    carried = check({**ORDER, "guest": True})
    assert isinstance(carried, Event) and carried.customer_id == "c1" and carried.guest


@pytest.mark.parametrize("patch,field,reason", [
    ({"amount": None}, "amount", MISSING_FIELD),
    ({"amount": "12"}, "amount", INVALID_FIELD),
    ({"amount": True}, "amount", INVALID_FIELD),
    ({"amount": -0.01}, "amount", INVALID_FIELD),
    ({"currency": "EUR"}, "currency", INVALID_FIELD),
    ({"currency": "GB"}, "currency", INVALID_FIELD),
    ({"currency": 826}, "currency", INVALID_FIELD),
    ({"guest": 1}, "guest", INVALID_FIELD),
    ({"order_id": ""}, "order_id", INVALID_FIELD),
])
def test_order_fields(patch: dict[str, Any], field: str, reason: str) -> None:
    rejected(check({**ORDER, **patch}), reason, field)


def test_order_amount_zero_allowed_but_refund_must_be_positive() -> None:
    assert isinstance(check({**ORDER, "amount": 0}), Event)
    rejected(check({**ORDER, "type": "order_refunded", "amount": 0}), INVALID_FIELD, "amount")
    ev = check({**ORDER, "type": "order_refunded", "amount": 3, "currency": "GBP"})
    assert isinstance(ev, Event) and ev.amount == 3.0


def test_configured_currency() -> None:
    ev = validate_bytes(orjson.dumps({**ORDER, "currency": "EUR"}), "orders", currency="EUR")
    assert isinstance(ev, Event)


@pytest.mark.parametrize("obj,reason,field", [
    ({**BASE, "type": "review"}, MISSING_FIELD, "rating"),
    ({**BASE, "type": "review", "rating": 0}, INVALID_FIELD, "rating"),
    ({**BASE, "type": "review", "rating": 6}, INVALID_FIELD, "rating"),
    ({**BASE, "type": "review", "rating": 4.5}, INVALID_FIELD, "rating"),
    ({**BASE, "type": "survey_response"}, MISSING_FIELD, "nps"),
    ({**BASE, "type": "survey_response", "nps": 11}, INVALID_FIELD, "nps"),
    ({**BASE, "type": "survey_response", "nps": -1}, INVALID_FIELD, "nps"),
    ({**BASE, "type": "referral", "referred_customer_id": ""}, INVALID_FIELD, "referred_customer_id"),
    ({**BASE, "type": "add_to_cart", "cart_id": "k" * 129}, INVALID_FIELD, "cart_id"),
    ({**BASE, "type": "add_to_cart", "cart_id": 12}, INVALID_FIELD, "cart_id"),
])
def test_type_specific_fields(obj: dict[str, Any], reason: str, field: str) -> None:
    rejected(check(obj), reason, field)


def test_integral_floats_count_as_integers() -> None:
    ev = check({**BASE, "type": "review", "rating": 5.0, "schema_version": 2.0})
    assert isinstance(ev, Event) and ev.rating == 5 and ev.schema_version == 2


def test_every_reason_code_is_exercised() -> None:
    # The parametrized tests above cover each code; this guards the list itself.
    assert set(REASONS) == {INVALID_JSON, NOT_AN_OBJECT, TOO_LARGE, UNKNOWN_TYPE, MISSING_FIELD,
                            INVALID_FIELD, WRONG_TOPIC}


# ------------------------------------------------- SPEC §1 additions: new types, future, order

SENT = {**BASE, "type": "email_sent"}
ERASED = {"event_id": "x1", "type": "customer_erased", "customer_id": "c1", "occurred_at": "2024-05-01T10:00:00Z"}
T0 = parse_rfc3339("2024-05-01T10:00:00Z")


@pytest.mark.parametrize("etype", ["email_sent", "push_sent", "sms_sent"])
def test_sent_types_are_clicks_events_without_fields_of_their_own(etype: str) -> None:
    ev = check({**BASE, "type": etype, "channel": "email"}, "clicks")
    assert isinstance(ev, Event) and (ev.type, ev.topic, ev.customer_id) == (etype, "clicks", "c1")
    # no extra fields: a cart_id, even one a click would reject, is an unknown field and ignored
    ev = check({**BASE, "type": etype, "cart_id": 12}, "clicks")
    assert isinstance(ev, Event) and ev.cart_id is None
    rejected(check({**BASE, "type": etype, "customer_id": None}), MISSING_FIELD, "customer_id")
    rejected(check({**BASE, "type": etype}, "social"), WRONG_TOPIC, "type")


def test_customer_erased_is_a_privacy_event_with_a_required_customer_id() -> None:
    ev = check({**ERASED, "reason": "gdpr request"}, "privacy")
    assert isinstance(ev, Event) and (ev.type, ev.topic, ev.customer_id) == ("customer_erased", "privacy", "c1")
    assert ev.unit_key == "c1"
    no_customer = {k: v for k, v in ERASED.items() if k != "customer_id"}
    rejected(check(no_customer, "privacy"), MISSING_FIELD, "customer_id")
    # the guest exception is for order events only
    rejected(check({**no_customer, "guest": True, "order_id": "o1"}, "privacy"), MISSING_FIELD, "customer_id")
    rejected(check({**ERASED, "customer_id": ""}, "privacy"), INVALID_FIELD, "customer_id")
    rejected(check(ERASED, "social"), WRONG_TOPIC, "type")
    rejected(check({**BASE, "type": "follow"}, "privacy"), WRONG_TOPIC, "type")


def test_future_dated_rule_at_the_boundary() -> None:
    """SPEC §1: occurred_at may be at most future_tolerance (default 24 h) after received_at."""
    day = 24 * 3600 * SECOND
    data = orjson.dumps(BASE)
    assert isinstance(validate_bytes(data, received_at=T0 - day), Event)         # exactly at: accepted
    late = validate_bytes(data, received_at=T0 - day - 1)                         # 1 µs beyond: rejected
    rejected(late, INVALID_FIELD, "occurred_at")
    assert "24 hours after the message was received" in late.message  # type: ignore[union-attr]
    assert "2024-05-01T10:00:00Z" in late.message  # type: ignore[union-attr]
    assert isinstance(validate_bytes(data), Event)                                # no received time: unchecked
    assert isinstance(validate_bytes(data, received_at=T0 + day), Event)          # the past is fine
    # the configured tolerance, and the epoch-millisecond form
    ms = orjson.dumps({**BASE, "occurred_at": T0 // MS})
    assert isinstance(validate_bytes(ms, received_at=T0 - 3600 * SECOND, future_tolerance=3600 * SECOND), Event)
    rejected(validate_bytes(ms, received_at=T0 - 3600 * SECOND - 1, future_tolerance=3600 * SECOND),
             INVALID_FIELD, "occurred_at")
    rejected(validate_bytes(data, received_at=T0 - 1, future_tolerance=0), INVALID_FIELD, "occurred_at")


def test_a_mistyped_year_is_rejected_against_the_received_time() -> None:
    received = parse_rfc3339("2024-05-01T10:00:00Z")
    rejected(validate_object({**BASE, "occurred_at": "2099-12-31T23:00:00Z"}, "clicks", received_at=received),
             INVALID_FIELD, "occurred_at")


def test_future_fault_is_an_occurred_at_fault_in_envelope_order() -> None:
    day = 24 * 3600 * SECOND
    ahead = {**BASE, "occurred_at": "2024-05-03T10:00:00Z", "channel": 5}
    rejected(validate_object(ahead, None, received_at=T0), INVALID_FIELD, "occurred_at")   # before channel
    rejected(validate_object({**ahead, "customer_id": None}, None, received_at=T0), MISSING_FIELD, "customer_id")
    # an out-of-range instant is reported as such, not as future-dated
    r = validate_object({**BASE, "occurred_at": "2100-01-01T00:00:00Z"}, None, received_at=T0)
    rejected(r, INVALID_FIELD, "occurred_at")
    assert "2100-01-01T00:00Z)" in r.message  # type: ignore[union-attr]
    assert isinstance(validate_object({**BASE, "occurred_at": "2024-05-02T10:00:00Z"}, None, received_at=T0), Event)
    assert T0 + day == parse_rfc3339("2024-05-02T10:00:00Z")


@pytest.mark.parametrize("obj,topic,reason,field", [
    # wrong topic and another fault: the other fault (SPEC §1: wrong_topic is checked last)
    ({**BASE, "type": "review"}, "clicks", MISSING_FIELD, "rating"),
    ({**BASE, "type": "review", "rating": 9}, "orders", INVALID_FIELD, "rating"),
    ({**BASE, "channel": "c" * 33}, "orders", INVALID_FIELD, "channel"),
    ({**BASE, "occurred_at": "2024-05-01 10:00:00Z"}, "social", INVALID_FIELD, "occurred_at"),
    ({**ORDER, "amount": -1}, "clicks", INVALID_FIELD, "amount"),
    ({**ORDER, "currency": "EUR"}, "social", INVALID_FIELD, "currency"),
    ({**BASE, "type": "add_to_cart", "cart_id": 7}, "orders", INVALID_FIELD, "cart_id"),
    ({**ERASED, "customer_id": None}, "clicks", MISSING_FIELD, "customer_id"),
    ({**BASE, "type": "teleport"}, "clicks", UNKNOWN_TYPE, "type"),
    # otherwise valid: wrong_topic
    ({**BASE, "type": "review", "rating": 1}, "clicks", WRONG_TOPIC, "type"),
    ({k: v for k, v in ORDER.items() if k != "customer_id"} | {"guest": True}, "clicks", WRONG_TOPIC, "type"),
])
def test_wrong_topic_is_checked_last(obj: dict[str, Any], topic: str, reason: str, field: str) -> None:
    rejected(check(obj, topic), reason, field)


def test_future_fault_beats_wrong_topic() -> None:
    obj = {**BASE, "occurred_at": "2099-12-31T23:00:00Z"}
    rejected(validate_object(obj, "orders", received_at=T0), INVALID_FIELD, "occurred_at")


def test_duplicated_keys_the_last_one_counts() -> None:
    head = b'{"event_id":"e1","type":"review","customer_id":"c1","occurred_at":"2024-05-01T10:00:00Z",'
    ev = validate_bytes(head + b'"rating":9,"rating":4}')
    assert isinstance(ev, Event) and ev.rating == 4
    rejected(validate_bytes(head + b'"rating":4,"rating":9}'), INVALID_FIELD, "rating")
    rejected(validate_bytes(head + b'"rating":4,"rating":null}'), MISSING_FIELD, "rating")
    ev = validate_bytes(b'{"customer_id":"first",' + head[1:] + b'"rating":4}')
    assert isinstance(ev, Event) and ev.customer_id == "c1"


def test_duplicated_keys_also_in_the_stdlib_fallback() -> None:
    # 1e400 is JSON that orjson refuses (beyond a double), so this payload takes the stdlib path
    head = b'{"big":1e400,"event_id":"e1","type":"review","customer_id":"c1","occurred_at":"2024-05-01T10:00:00Z",'
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(head + b'"rating":4}')
    ev = validate_bytes(head + b'"rating":9,"rating":4}')
    assert isinstance(ev, Event) and ev.rating == 4
    rejected(validate_bytes(head + b'"rating":4,"rating":9}'), INVALID_FIELD, "rating")


def test_numbers_beyond_a_double_and_lone_surrogates() -> None:
    # 1e400 parses (stdlib) to inf: an amount that is "too large", not an infinite revenue
    rejected(validate_bytes(orjson.dumps(ORDER).replace(b'"amount":12.5', b'"amount":1e400')),
             INVALID_FIELD, "amount")
    rejected(validate_bytes(orjson.dumps(BASE).replace(b'"occurred_at":"2024-05-01T10:00:00Z"',
                                                       b'"occurred_at":1e400')), INVALID_FIELD, "occurred_at")
    # a lone surrogate escape is no UTF-8 text: it would not even encode as a Kafka key
    rejected(validate_bytes(orjson.dumps(BASE).replace(b'"c1"', b'"c\\ud800"')), INVALID_JSON, None)
    rejected(validate_bytes(b'{"\\udfff":1}'), INVALID_JSON, None)
    ev = validate_bytes(orjson.dumps(BASE).replace(b'"c1"', b'"c\\ud83d\\ude00"'))   # a proper pair
    assert isinstance(ev, Event) and ev.customer_id == "c😀"


@pytest.mark.parametrize("text,micros", [
    ("2024-05-01T10:00:00.1234569Z", 123_456),             # truncated, not rounded up
    ("2024-05-01T10:00:00.9999999999Z", 999_999),
    ("2024-05-01t12:00:00.0000009+02:00", 0),
    ("2024-05-01T05:00:00.5000001-05:00", 500_000),
])
def test_sub_microsecond_fractions_are_truncated(text: str, micros: int) -> None:
    ev = check({**BASE, "occurred_at": text})
    assert isinstance(ev, Event) and ev.occurred_at == T0 + micros


def test_truncation_does_not_round_into_range() -> None:
    rejected(check({**BASE, "occurred_at": "1999-12-31T23:59:59.9999999Z"}), INVALID_FIELD, "occurred_at")
    ev = check({**BASE, "occurred_at": "2099-12-31T23:59:59.9999999Z"})
    assert isinstance(ev, Event) and ev.occurred_at == parse_rfc3339("2100-01-01T00:00:00Z") - 1


class _Sender:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None]] = []

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self.records.append((topic, value))


def test_ingest_checks_each_record_against_its_kafka_timestamp() -> None:
    from types import SimpleNamespace

    from stream_app.config import Settings
    from stream_app.stream.ingest import IngestLoop
    from stream_app.stream.metrics import Metrics

    s = Settings(broker="kafka://h:1", partitions=4, future_tolerance_hours=1.0)
    value = orjson.dumps(BASE)                     # occurred 2024-05-01T10:00:00Z
    ms = T0 // MS
    records = [
        SimpleNamespace(value=value, key=b"c1", offset=0, timestamp=ms - 3_600_000),       # exactly 1 h: kept
        SimpleNamespace(value=value, key=b"c1", offset=1, timestamp=ms - 3_600_001),       # 1 ms more: rejected
        SimpleNamespace(value=value, key=b"c1", offset=2, timestamp=-1),                   # no timestamp
        SimpleNamespace(value=orjson.dumps(ERASED), key=b"c1", offset=3, timestamp=ms),     # privacy topic
    ]
    sender = _Sender()
    ingest = IngestLoop(s, Metrics())
    assert ingest.ingest_records("clicks", s.topic_clicks, 0, records[:3], sender) == 1  # type: ignore[arg-type]
    assert ingest.ingest_records("privacy", s.topic_privacy, 0, records[3:], sender) == 0  # type: ignore[arg-type]
    dead = [orjson.loads(v or b"") for t, v in sender.records if t == s.topic_dead_letter]
    assert [(d["reason"], d["field"], d["source"]["offset"]) for d in dead] == [("invalid_field", "occurred_at", 1)]
    assert sum(t == s.topic_events for t, _ in sender.records) == 3


@settings(max_examples=60, deadline=None)
@given(event_streams(max_episodes=6, duplicates=False), st.data())
def test_generated_events_wrong_topic_last_and_the_future_boundary(events: list[dict[str, Any]],
                                                                   data: st.DataObject) -> None:
    """Every generated valid event (new types included once the strategies make them): on its own
    topic it validates; on another it is wrong_topic, unless it has another fault; and it is
    accepted exactly at the future tolerance and rejected 1 µs beyond, whatever the tolerance."""
    for obj in events:
        topic = TOPIC_OF_TYPE[obj["type"]]
        ev = validate_object(obj, topic)
        assert isinstance(ev, Event) and ev.topic == topic
        other = data.draw(st.sampled_from([t for t in TOPICS if t != topic]))
        rejected(validate_object(obj, other), WRONG_TOPIC, "type")
        rejected(validate_object({**obj, "event_id": ""}, other), INVALID_FIELD, "event_id")
        tol = data.draw(st.integers(0, 48 * 3600 * SECOND))
        assert validate_object(obj, topic, received_at=ev.occurred_at - tol, future_tolerance=tol) == ev
        rejected(validate_object(obj, other, received_at=ev.occurred_at - tol - 1, future_tolerance=tol),
                 INVALID_FIELD, "occurred_at")
