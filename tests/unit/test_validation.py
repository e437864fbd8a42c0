"""SPEC §1: every rejection reason, the field at fault, first-fault order, accepted forms."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from stream_app.engine.clock import MS, SECOND, parse_rfc3339
from stream_app.engine.events import Event
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
)

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
