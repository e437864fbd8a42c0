"""Input lines: splitting, the SPEC §8 wrapper and decoding to Event | Rejection.

Shared by every shell that reads events (replay, produce, the stream's processor, audit), so
none of them imports another shell.
"""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

import orjson

from stream_app.engine.events import TOPIC_OF_TYPE, TOPICS, Event
from stream_app.validation import (
    DEFAULT_FUTURE_TOLERANCE,
    INVALID_FIELD,
    MAX_MESSAGE_BYTES,
    NOT_AN_OBJECT,
    Rejection,
    instant_field,
    load_message,
    validate_object,
)

DEFAULT_TOPIC_NAMES: dict[str, str] = {t: f"engagement.{t}" for t in TOPICS}


class InputError(Exception):
    """A problem with an input as a whole (not with one line): clear message, non-zero exit."""


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


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(physical line number from 1, line) for the lines that are not empty or white space only
    (SPEC §8); drops the newline, one trailing CR and a BOM on line 1. Splits on LF only."""
    for number, line in enumerate(stream, start=1):
        if line.endswith(b"\n"):
            line = line[:-1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if number == 1 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        if not line.strip():
            continue
        yield number, line


#: what reading an events file can raise partway through: a truncated or corrupt gzip stream
#: (EOFError, zlib.error, gzip.BadGzipFile) or an I/O error
READ_ERRORS = (OSError, EOFError, zlib.error)


def read_error(path: str, exc: BaseException, after_line: int) -> InputError:
    """The InputError for one of READ_ERRORS raised after `after_line` lines were read."""
    where = f"after line {after_line}" if after_line else "at the start"
    if isinstance(exc, (EOFError, zlib.error, gzip.BadGzipFile)):
        return InputError(f"{path}: truncated or corrupt gzip data ({where})")
    return InputError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc} ({where})")


def open_events(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gz else open(path, "rb")  # type: ignore[return-value]
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None


# -- the re-keyed topic ------------------------------------------------------------------------
#: A re-keyed message is the validated event itself, as a JSON array: the format version, then the
#: `Event` fields in order (occurred_at in integer microseconds). Ingest validated it already, so
#: scoring decodes it with one `orjson.loads` instead of validating the payload again. Messages in
#: the older `{"topic", "event"}` wrapper form (written by earlier versions, or by hand) still decode.
REKEYED_FORMAT = 1
_new_tuple = tuple.__new__
_EVENT_FIELDS = len(Event._fields)


def encode_rekeyed(ev: Event) -> bytes:
    return orjson.dumps((REKEYED_FORMAT, *ev))


def decode_rekeyed(raw: bytes, topic_names: dict[str, str] | None = None, currency: str = "GBP",
                   future_tolerance: int = DEFAULT_FUTURE_TOLERANCE) -> Event | Rejection:
    """A re-keyed message -> Event | Rejection (anything not in our array form is decoded as a line).

    The array form was validated at ingest (with its Kafka timestamp as received time), so only
    its shape is checked; its type and topic must agree (`TOPIC_OF_TYPE`, every topic included)."""
    if raw[:1] == b"[":
        try:
            v = orjson.loads(raw)
        except orjson.JSONDecodeError:
            v = None
        if (type(v) is list and len(v) == _EVENT_FIELDS + 1 and v[0] == REKEYED_FORMAT
                and type(v[1]) is str and TOPIC_OF_TYPE.get(v[2]) == v[3] and type(v[5]) is int
                and (v[4] is None or type(v[4]) is str) and type(v[9]) in (int, float)):
            return _new_tuple(Event, v[1:])  # tuple.__new__: skips the NamedTuple's Python-level __new__
    return decode_line(raw, topic_names, currency, future_tolerance)
