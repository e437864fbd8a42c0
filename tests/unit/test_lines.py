"""Decoding lines and re-keyed messages (validation.decode_line / decode_rekeyed: the re-keyed
topic's compact form, formats.encode_rekeyed, and the wrapper form it still reads), the SPEC §8
replay wrapper with its `received_at`, and line splitting (stream_app/lines.py)."""

from __future__ import annotations

import io

import orjson
import pytest

from stream_app.engine.events import Event
from stream_app.engine.formats import REKEYED_INDEX, encode_rekeyed, wrap_event
from stream_app.lines import iter_lines
from stream_app.validation import Rejection, decode_line, decode_rekeyed, validate_bytes

ORDER = b'{"event_id":"e1","type":"order_placed","customer_id":"c1","occurred_at":"2011-05-01T10:00:00.5Z",' \
        b'"order_id":"o1","amount":12.5,"guest":true,"channel":"Web"}'


def test_a_validated_event_round_trips_exactly() -> None:
    ev = validate_bytes(ORDER, "orders")
    assert isinstance(ev, Event)
    assert decode_rekeyed(encode_rekeyed(ev)) == ev


def test_the_older_wrapper_form_still_decodes_to_the_same_event() -> None:
    assert decode_rekeyed(wrap_event("orders", ORDER)) == validate_bytes(ORDER, "orders")


@pytest.mark.parametrize("raw, reason", [
    (b"[1, 2, 3]", "not_an_object"),                                     # not our array: a line
    (orjson.dumps([1, "e1", "page_view", "orders", "c1", 1, None, 1, None, 0.0, False, None, None, None,
                   None]), "not_an_object"),                             # type of another topic
    (orjson.dumps([2, "e1", "page_view", "clicks", "c1", 1, None, 1, None, 0.0, False, None, None, None,
                   None]), "not_an_object"),                             # an unknown format version
    (b"[1, \"e1\"", "invalid_json"),
])
def test_anything_else_on_the_rekeyed_topic_is_a_rejection(raw: bytes, reason: str) -> None:
    got = decode_rekeyed(raw)
    assert isinstance(got, Rejection) and got.reason == reason


# ---------------------------------------------------------- SPEC §8 wrappers and line reading

PV = {"event_id": "p1", "type": "page_view", "customer_id": "c1", "occurred_at": "2024-05-01T10:00:00Z"}
ERASED = {"event_id": "x1", "type": "customer_erased", "customer_id": "c1", "occurred_at": "2024-05-01T10:00:00Z"}


def decoded(obj: object) -> Event | Rejection:
    return decode_line(orjson.dumps(obj))


def fault(result: object) -> tuple[str, str | None]:
    assert isinstance(result, Rejection), result
    assert result.message
    return result.reason, result.field


@pytest.mark.parametrize("name", ["privacy", "engagement.privacy"])
def test_a_wrapper_accepts_the_privacy_topic(name: str) -> None:
    ev = decoded({"topic": name, "event": ERASED})
    assert isinstance(ev, Event) and (ev.type, ev.topic) == ("customer_erased", "privacy")
    assert fault(decoded({"topic": name, "event": PV})) == ("wrong_topic", "type")
    assert fault(decoded({"topic": "clicks", "event": ERASED})) == ("wrong_topic", "type")
    ev = decoded({"topic": "engagement.clicks", "event": {**PV, "type": "sms_sent"}})
    assert isinstance(ev, Event) and ev.type == "sms_sent"


def test_received_at_applies_the_future_rule_at_the_boundary() -> None:
    # occurred 2024-05-01T10:00Z; the default tolerance is 24 hours
    assert isinstance(decoded({"topic": "clicks", "event": PV, "received_at": "2024-04-30T10:00:00Z"}), Event)
    assert fault(decoded({"topic": "clicks", "event": PV, "received_at": "2024-04-30T09:59:59.999999Z"})) == \
        ("invalid_field", "occurred_at")
    # same forms as occurred_at: offsets, lower case, epoch milliseconds
    assert isinstance(decoded({"topic": "clicks", "event": PV, "received_at": "2024-04-30t12:00:00+02:00"}), Event)
    assert fault(decoded({"topic": "clicks", "event": PV, "received_at": 1714471199999})) == \
        ("invalid_field", "occurred_at")
    assert isinstance(decoded({"topic": "clicks", "event": PV, "received_at": 1714471200000}), Event)
    # the configured tolerance
    raw = orjson.dumps({"topic": "clicks", "event": PV, "received_at": "2024-05-01T09:00:00Z"})
    assert isinstance(decode_line(raw, future_tolerance=3600 * 1_000_000), Event)
    assert fault(decode_line(raw, future_tolerance=3600 * 1_000_000 - 1)) == ("invalid_field", "occurred_at")


def test_lines_without_received_at_are_not_checked_against_the_future() -> None:
    future = {**PV, "occurred_at": "2099-12-31T23:00:00Z"}
    assert isinstance(decoded(future), Event)
    assert isinstance(decoded({"topic": "clicks", "event": future}), Event)
    assert isinstance(decoded({"topic": "clicks", "event": future, "received_at": None}), Event)
    # a plain event's own `received_at` is an unknown field: ignored
    assert isinstance(decoded({**future, "received_at": "2024-01-01T00:00:00Z"}), Event)
    assert isinstance(decoded({**future, "received_at": "garbage"}), Event)


@pytest.mark.parametrize("received_at", [
    "2024-05-01 10:00:00Z", "2024-05-01T10:00:00", "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
    "2024-02-30T00:00:00Z", 4102444800000, 1.5, True, "", [], {},
])
def test_an_invalid_received_at_is_a_wrapper_fault(received_at: object) -> None:
    assert fault(decoded({"topic": "clicks", "event": PV, "received_at": received_at})) == \
        ("invalid_field", "received_at")
    # a wrapper's own faults come before the event's
    bad_event = {**PV, "customer_id": None, "occurred_at": "nope"}
    assert fault(decoded({"topic": "clicks", "event": bad_event, "received_at": received_at})) == \
        ("invalid_field", "received_at")
    assert fault(decoded({"topic": "orders", "event": PV, "received_at": received_at})) == \
        ("invalid_field", "received_at")


def test_wrapper_faults_in_order_topic_event_received_at() -> None:
    assert fault(decoded({"topic": "nope", "event": [1], "received_at": "x"})) == ("invalid_field", "topic")
    assert fault(decoded({"topic": 7, "event": PV})) == ("invalid_field", "topic")
    assert fault(decoded({"topic": "clicks", "event": [1], "received_at": "x"})) == ("not_an_object", "event")
    assert fault(decoded({"topic": "clicks", "event": "x"})) == ("not_an_object", "event")


def test_a_wrapper_needs_non_null_topic_and_event_and_no_type() -> None:
    # not wrappers: validated as events (here: missing event_id)
    assert fault(decoded({"topic": None, "event": PV})) == ("missing_field", "event_id")
    assert fault(decoded({"topic": "clicks", "event": None})) == ("missing_field", "event_id")
    assert fault(decoded({"topic": "clicks"})) == ("missing_field", "event_id")
    # a null `type` counts as absent: still a wrapper
    ev = decoded({"topic": "clicks", "event": PV, "type": None})
    assert isinstance(ev, Event) and ev.event_id == "p1"
    # a non-null type makes it an event, whatever else it carries
    ev = decoded({**PV, "topic": "nope", "event": 1, "received_at": "bad"})
    assert isinstance(ev, Event)


@pytest.mark.parametrize("event", [
    {**ERASED},
    {**PV, "type": "email_sent", "channel": "email"},
    {**PV, "type": "push_sent"},
])
def test_the_new_types_round_trip_on_the_rekeyed_topic(event: dict[str, object]) -> None:
    raw = orjson.dumps(event)
    topic = "privacy" if event["type"] == "customer_erased" else "clicks"
    ev = validate_bytes(raw, topic)
    assert isinstance(ev, Event)
    encoded = encode_rekeyed(ev)
    assert decode_rekeyed(encoded) == ev
    assert orjson.loads(encoded)[REKEYED_INDEX["topic"]] == topic
    # the shape check ties the type to its topic: a privacy type claiming another topic is refused
    tampered = orjson.loads(encoded)
    tampered[REKEYED_INDEX["topic"]] = "social" if topic == "privacy" else "privacy"
    assert isinstance(decode_rekeyed(orjson.dumps(tampered)), Rejection)


def test_iter_lines_skips_blank_lines_and_keeps_physical_numbers() -> None:
    data = b"\xef\xbb\xbf\n" + b"a\r\n" + b"\n" + b"   \t\r\n" + b"\r\n" + b"b\n" + b" c \n" + b"d"
    assert list(iter_lines(io.BytesIO(data))) == [(2, b"a"), (6, b"b"), (7, b" c "), (8, b"d")]
    assert list(iter_lines(io.BytesIO(b"\xef\xbb\xbfx\r\n"))) == [(1, b"x")]
    # only LF splits lines: a lone CR inside a line stays (and makes that line invalid JSON)
    assert list(iter_lines(io.BytesIO(b"a\rb\n"))) == [(1, b"a\rb")]
