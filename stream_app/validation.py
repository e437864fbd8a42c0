"""bytes -> Event | Rejection, exactly per SPEC §1, and the SPEC §8 wrapper around an event.

Over 300 lines: the event's checks and the wrapper's (which come first) are one decoding rule.

Checks run in the order of the SPEC's tables (size, JSON, object, then the envelope fields, then
the type's own fields) and stop at the first fault, so each bad message yields one dead letter
with one reason code; `wrong_topic` comes last, once the event is otherwise valid. Errors are
values (`Rejection`), never exceptions.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple, final

import orjson

from stream_app.engine.clock import HOUR, MAX_INSTANT, MIN_INSTANT, MS, format_instant, parse_rfc3339
from stream_app.engine.config import DEFAULT_CONFIG
from stream_app.engine.events import (
    CLICKS,
    ORDER_REFUNDED,
    ORDERS,
    REVIEW,
    SENT_TYPES,
    SOCIAL,
    SURVEY_RESPONSE,
    TOPIC_OF_TYPE,
    TOPICS,
    Event,
)
from stream_app.engine.formats import decode_rekeyed as decode_rekeyed_array

MAX_MESSAGE_BYTES = 64 * 1024
#: SPEC §1 default: how far after its received time an event may be dated (µs)
DEFAULT_FUTURE_TOLERANCE = DEFAULT_CONFIG.future_tolerance

INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
TOO_LARGE = "too_large"
UNKNOWN_TYPE = "unknown_type"
MISSING_FIELD = "missing_field"
INVALID_FIELD = "invalid_field"
WRONG_TOPIC = "wrong_topic"
DEFAULT_TOPIC_NAMES: dict[str, str] = {t: f"engagement.{t}" for t in TOPICS}
REASONS: tuple[str, ...] = (
    INVALID_JSON, NOT_AN_OBJECT, TOO_LARGE, UNKNOWN_TYPE, MISSING_FIELD, INVALID_FIELD, WRONG_TOPIC,
)


_new_tuple = tuple.__new__


@final  # so `type(x) is Rejection` narrows `Event | Rejection` on both branches (for mypy)
class Rejection(NamedTuple):
    reason: str
    field: str | None
    message: str


class _Fault(Exception):
    """Internal control flow only: carries the first fault out of the field checks."""

    def __init__(self, rejection: Rejection) -> None:
        self.rejection = rejection


def _missing(field: str) -> _Fault:
    return _Fault(Rejection(MISSING_FIELD, field, f"required field '{field}' is missing or null"))


def _invalid(field: str, why: str) -> _Fault:
    return _Fault(Rejection(INVALID_FIELD, field, f"field '{field}' {why}"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(data: bytes) -> tuple[Any, Rejection | None]:
    """Decode one JSON value; (None, Rejection) when the bytes are not JSON."""
    try:
        return orjson.loads(data), None
    except orjson.JSONDecodeError as exc:
        orjson_error = str(exc)
    # orjson refuses some valid JSON (numbers beyond a double, e.g. 1e400): give the stdlib a
    # second look. It must still refuse NaN/Infinity, which JSON does not have, and strings with
    # a lone surrogate escape ("\ud800"): no UTF-8 text holds one, and one in a customer_id
    # could not be encoded as a Kafka key or re-keyed message further on.
    try:
        value = json.loads(data, parse_constant=_reject_constant)
        json.dumps(value, ensure_ascii=False).encode()  # raises on a lone surrogate
        return value, None
    except (ValueError, UnicodeError, RecursionError):
        return None, Rejection(INVALID_JSON, None, f"payload is not valid UTF-8 JSON: {orjson_error}")


def _text(obj: dict[str, Any], field: str, lo: int, hi: int, required: bool) -> str | None:
    v = obj.get(field)
    if v is None:
        if required:
            raise _missing(field)
        return None
    if type(v) is not str:
        raise _invalid(field, f"must be a string, got {_json_type(v)}")
    if not lo <= len(v) <= hi:
        raise _invalid(field, f"must be {lo}–{hi} characters long, got {len(v)}")
    return v


def _integer(obj: dict[str, Any], field: str, lo: int, hi: int | None, required: bool) -> int | None:
    v = obj.get(field)
    if v is None:
        if required:
            raise _missing(field)
        return None
    # JSON Schema's notion of an integer: a number with no fractional part (5.0 counts).
    if type(v) is float and v.is_integer():
        v = int(v)
    if type(v) is not int:
        raise _invalid(field, f"must be an integer, got {_json_type(v)}")
    if v < lo or (hi is not None and v > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise _invalid(field, f"must be {bound}, got {v}")
    return v


def _json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return "null"


def _instant(obj: dict[str, Any], field: str) -> int:
    """An `occurred_at`-form field (SPEC §1): RFC 3339 string or integer epoch ms, in range."""
    v = obj.get(field)
    if type(v) is str:
        us = parse_rfc3339(v)
        if us is not None and MIN_INSTANT <= us < MAX_INSTANT:
            return us
        if us is None:
            raise _invalid(
                field,
                "must be an RFC 3339 date-time YYYY-MM-DDTHH:MM:SS[.fraction] with Z or ±HH:MM, "
                f"got {v[:64]!r}",
            )
    else:
        if v is None:
            raise _missing(field)
        if type(v) is float and v.is_integer():
            v = int(v)
        if type(v) is not int:
            raise _invalid(field, f"must be an RFC 3339 string or integer epoch milliseconds, got {_json_type(v)}")
        us = v * MS
    if not MIN_INSTANT <= us < MAX_INSTANT:
        raise _invalid(field, "must lie in [2000-01-01T00:00Z, 2100-01-01T00:00Z)")
    return us


def instant_field(obj: dict[str, Any], field: str) -> int | None | Rejection:
    """An optional field in `occurred_at`'s forms (a replay wrapper's `received_at`, SPEC §8):
    None when absent or null, else its instant in µs, or the Rejection for a bad value."""
    if obj.get(field) is None:
        return None
    try:
        return _instant(obj, field)
    except _Fault as fault:
        return fault.rejection


def _too_far_ahead(occurred_at: int, received_at: int, future_tolerance: int) -> _Fault:
    return _invalid(
        "occurred_at",
        f"is {format_instant(occurred_at)}, more than {future_tolerance / HOUR:g} hours after the message "
        f"was received ({format_instant(received_at)})",
    )


def _amount(obj: dict[str, Any], strictly_positive: bool) -> float:
    v = obj.get("amount")
    if v is None:
        raise _missing("amount")
    if type(v) not in (int, float):
        raise _invalid("amount", f"must be a number, got {_json_type(v)}")
    try:
        a = float(v)
    except OverflowError:
        raise _invalid("amount", "is too large") from None
    if not math.isfinite(a):  # 1e400 is a JSON number, but not a double (stdlib JSON gives inf)
        raise _invalid("amount", "is too large")
    if strictly_positive and not a > 0:
        raise _invalid("amount", f"must be greater than 0, got {v}")
    if a < 0:
        raise _invalid("amount", f"must be at least 0, got {v}")
    return a


def validate_object(
    obj: Any, topic: str | None = None, currency: str = "GBP", received_at: int | None = None,
    future_tolerance: int = DEFAULT_FUTURE_TOLERANCE,
) -> Event | Rejection:
    """Validate a decoded JSON value; `topic` is the short topic name or None to infer it.

    `received_at` (µs) is when the message was received (its Kafka timestamp, or a replay
    wrapper's `received_at`); None skips the SPEC §1 future-dated check.
    """
    if not isinstance(obj, dict):
        return Rejection(NOT_AN_OBJECT, None, f"payload must be a JSON object, got {_json_type(obj)}")
    try:
        ev = _validate(obj, currency, received_at, future_tolerance)
    except _Fault as fault:
        return fault.rejection
    # SPEC §1: wrong_topic is checked last, once the event is otherwise valid.
    if topic is not None and ev.topic != topic:
        return Rejection(WRONG_TOPIC, "type", f"type {ev.type!r} belongs on the {ev.topic} topic, not {topic}")
    return ev


def _validate(obj: dict[str, Any], currency: str, received_at: int | None, future_tolerance: int) -> Event:
    # Hot path: the common valid shapes are checked inline; `_text` & co. explain any fault.
    event_id = obj.get("event_id")
    if type(event_id) is not str or not 0 < len(event_id) <= 128:
        event_id = _text(obj, "event_id", 1, 128, True)
    etype = obj.get("type")
    if etype is None:
        raise _missing("type")
    if type(etype) is not str:
        raise _invalid("type", f"must be a string, got {_json_type(etype)}")
    etopic = TOPIC_OF_TYPE.get(etype)
    if etopic is None:
        raise _Fault(Rejection(UNKNOWN_TYPE, "type", f"unknown event type {etype[:64]!r}"))
    is_order = etopic == ORDERS
    customer_id = obj.get("customer_id")
    if type(customer_id) is not str or not 0 < len(customer_id) <= 128:
        # only order events have the guest exception (not customer_erased: SPEC §1)
        guest = obj.get("guest") is True if is_order else False
        customer_id = _text(obj, "customer_id", 1, 128, not guest)
    ts = obj.get("occurred_at")
    occurred_at = parse_rfc3339(ts) if type(ts) is str else None
    if occurred_at is None or not MIN_INSTANT <= occurred_at < MAX_INSTANT:
        occurred_at = _instant(obj, "occurred_at")
    # SPEC §1: not more than future_tolerance after it was received (exactly at it is accepted)
    if received_at is not None and occurred_at > received_at + future_tolerance:
        raise _too_far_ahead(occurred_at, received_at, future_tolerance)
    channel = obj.get("channel")
    if channel is not None and (type(channel) is not str or len(channel) > 32):
        channel = _text(obj, "channel", 0, 32, False)
    schema_version = 1 if obj.get("schema_version") is None else _integer(obj, "schema_version", 1, None, False)

    if is_order:
        order_id = _text(obj, "order_id", 1, 128, True)
        amount = _amount(obj, strictly_positive=etype == ORDER_REFUNDED)
        cur = obj.get("currency")
        if cur is not None:
            if type(cur) is not str or len(cur) != 3 or not cur.isalpha():
                raise _invalid("currency", "must be a 3-letter currency code")
            if cur != currency:
                raise _invalid("currency", f"must be the reporting currency {currency}, got {cur}")
        g = obj.get("guest")
        if g is not None and type(g) is not bool:
            raise _invalid("guest", f"must be a boolean, got {_json_type(g)}")
        return Event(event_id, etype, ORDERS, customer_id, occurred_at, channel, schema_version,  # type: ignore[arg-type]
                     order_id=order_id, amount=amount, guest=g is True)
    if etopic == CLICKS:
        cart_id = obj.get("cart_id")
        if cart_id is not None:
            if etype in SENT_TYPES:
                cart_id = None  # `*_sent` have no extra fields: a cart_id is an unknown field, ignored
            elif type(cart_id) is not str or len(cart_id) > 128:
                cart_id = _text(obj, "cart_id", 0, 128, False)
        # tuple.__new__ skips the NamedTuple's Python-level __new__ on the hottest path
        return _new_tuple(Event, (event_id, etype, CLICKS, customer_id, occurred_at, channel,
                                  schema_version, None, 0.0, False, cart_id, None, None, None))
    if etopic != SOCIAL:  # the privacy topic: customer_erased has no fields of its own
        return Event(event_id, etype, etopic, customer_id, occurred_at, channel, schema_version)  # type: ignore[arg-type]
    rating = nps = referred = None
    if etype == REVIEW:
        rating = _integer(obj, "rating", 1, 5, True)
    elif etype == SURVEY_RESPONSE:
        nps = _integer(obj, "nps", 0, 10, True)
    elif etype == "referral":
        referred = _text(obj, "referred_customer_id", 1, 128, False)
    return Event(event_id, etype, SOCIAL, customer_id, occurred_at, channel, schema_version,  # type: ignore[arg-type]
                 rating=rating, nps=nps, referred_customer_id=referred)


def check_size(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Rejection | None:
    if len(data) > max_bytes:
        return Rejection(TOO_LARGE, None, f"payload is {len(data)} bytes; the limit is {max_bytes}")
    return None


def load_message(data: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[Any, Rejection | None]:
    """The size limit, then JSON decoding: (value, None) or (None, Rejection)."""
    too_large = check_size(data, max_bytes)
    if too_large is not None:
        return None, too_large
    return parse_json(data)


def validate_bytes(
    data: bytes, topic: str | None = None, currency: str = "GBP", max_bytes: int = MAX_MESSAGE_BYTES,
    received_at: int | None = None, future_tolerance: int = DEFAULT_FUTURE_TOLERANCE,
) -> Event | Rejection:
    """The whole SPEC §1 pipeline for one message value (`received_at`: see `validate_object`)."""
    obj, bad = load_message(data, max_bytes)
    if bad is not None:
        return bad
    return validate_object(obj, topic, currency, received_at, future_tolerance)


# -- SPEC §8: the wrapper, lines, and the re-keyed topic -------------------------------------
def is_wrapper(obj: Any) -> bool:
    """SPEC §8: an object with non-null `topic` and `event` and no `type` (null counts as absent)."""
    return (isinstance(obj, dict) and obj.get("topic") is not None and obj.get("event") is not None
            and obj.get("type") is None)


def wrapper_topic(name: Any, topic_names: dict[str, str] | None = None) -> str | None:
    """The short topic a wrapper's full (`engagement.orders`) or short (`orders`) name means."""
    names = topic_names or DEFAULT_TOPIC_NAMES
    if type(name) is not str:
        return None
    return next((short for short, full in names.items() if name in (short, full)), None)


class Unwrapped(NamedTuple):
    topic: str  # short name
    event: dict[str, Any]
    received_at: int | None  # µs; None when the wrapper has none


def unwrap(obj: dict[str, Any], topic_names: dict[str, str] | None = None) -> Unwrapped | Rejection:
    """A wrapper's topic, event and received time, or the Rejection for its own first fault
    (SPEC §8: they come before the event's), in the order topic, event, received_at."""
    topic = wrapper_topic(obj["topic"], topic_names)
    if topic is None:
        names = topic_names or DEFAULT_TOPIC_NAMES
        return Rejection(INVALID_FIELD, "topic", f"unknown topic {str(obj['topic'])[:64]!r}; expected one of "
                         + ", ".join(sorted(names.values())))
    event = obj["event"]
    if not isinstance(event, dict):
        return Rejection(NOT_AN_OBJECT, "event", "the wrapper's 'event' must be a JSON object")
    received_at = instant_field(obj, "received_at")
    if isinstance(received_at, Rejection):
        return received_at
    return Unwrapped(topic, event, received_at)


def decode_line(
    raw: bytes, topic_names: dict[str, str] | None = None, currency: str = "GBP",
    future_tolerance: int = DEFAULT_FUTURE_TOLERANCE,
) -> Event | Rejection:
    """One line (already split, without newline) -> Event | Rejection, with the §8 wrapper rule.

    A plain event line is not checked against the future (it has no received time); a wrapper's
    `received_at`, when present, is (SPEC §1)."""
    obj, bad = load_message(raw, MAX_MESSAGE_BYTES)
    if bad is not None:
        return bad
    if is_wrapper(obj):
        unwrapped = unwrap(obj, topic_names)
        if isinstance(unwrapped, Rejection):
            return unwrapped
        return validate_object(unwrapped.event, unwrapped.topic, currency, unwrapped.received_at, future_tolerance)
    return validate_object(obj, None, currency)


def decode_rekeyed(raw: bytes, topic_names: dict[str, str] | None = None, currency: str = "GBP",
                   future_tolerance: int = DEFAULT_FUTURE_TOLERANCE) -> Event | Rejection:
    """A re-keyed message -> Event | Rejection: the validated array form (`formats.decode_rekeyed`),
    else a line (format 0, the wrapper form, is validated as one; anything else is rejected)."""
    ev = decode_rekeyed_array(raw)
    return ev if ev is not None else decode_line(raw, topic_names, currency, future_tolerance)
