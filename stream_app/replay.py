"""`engagement replay`: a file of events -> the engine (one unit) -> one JSON document (SPEC §8)."""

from __future__ import annotations

import gzip
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import orjson

from stream_app.engine import DEFAULT_CONFIG, EngineConfig, Unit
from stream_app.engine.clock import MAX_INSTANT, MIN_INSTANT, format_instant, format_optional, parse_rfc3339
from stream_app.engine.events import TOPICS
from stream_app.validation import (
    INVALID_FIELD, MAX_MESSAGE_BYTES, NOT_AN_OBJECT, Rejection, load_message, validate_object,
)

DEFAULT_TOPIC_NAMES: dict[str, str] = {t: f"engagement.{t}" for t in TOPICS}


class ReplayError(Exception):
    """A problem with the replay as a whole (not with one line): clear message, non-zero exit."""


def parse_as_of(text: str) -> int:
    us = parse_rfc3339(text)
    if us is None:
        raise ReplayError(f"--as-of must be an RFC 3339 date-time like 2011-12-31T00:00:00Z, got {text!r}")
    if not MIN_INSTANT <= us < MAX_INSTANT:
        raise ReplayError("--as-of must lie in [2000-01-01T00:00Z, 2100-01-01T00:00Z)")
    return us


def is_wrapper(obj: Any) -> bool:
    """SPEC §8: an object with both `topic` and `event` and no `type`."""
    return isinstance(obj, dict) and "topic" in obj and "event" in obj and "type" not in obj


def wrapper_topic(name: Any, topic_names: dict[str, str] | None = None) -> str | None:
    """The short topic a wrapper's full (`engagement.orders`) or short (`orders`) name means."""
    names = topic_names or DEFAULT_TOPIC_NAMES
    if type(name) is not str:
        return None
    return next((short for short, full in names.items() if name in (short, full)), None)


def decode_line(
    raw: bytes, topic_names: dict[str, str] | None = None, currency: str = "GBP"
) -> Any:
    """One line (already split, without newline) -> Event | Rejection, with the §8 wrapper rule."""
    obj, bad = load_message(raw, MAX_MESSAGE_BYTES)
    if bad is not None:
        return bad
    topic = None
    if is_wrapper(obj):
        topic = wrapper_topic(obj["topic"], topic_names)
        if topic is None:
            names = topic_names or DEFAULT_TOPIC_NAMES
            return Rejection(INVALID_FIELD, "topic", f"unknown topic {str(obj['topic'])[:64]!r}; expected one of "
                             + ", ".join(sorted(names.values())))
        obj = obj["event"]
        if not isinstance(obj, dict):
            return Rejection(NOT_AN_OBJECT, "event", "the wrapper's 'event' must be a JSON object")
    return validate_object(obj, topic, currency)


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(line number, line) for non-blank lines; strips a trailing CR and a BOM on line 1."""
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


def open_events(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        with open(path, "rb") as probe:
            gz = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if gz else open(path, "rb")  # type: ignore[return-value]
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror or exc}") from None


class Replay:
    """The replay shell: feeds numbered lines to one Unit, collects every output."""

    def __init__(self, config: EngineConfig = DEFAULT_CONFIG,
                 topic_names: dict[str, str] | None = None) -> None:
        self.config = config
        self.topic_names = topic_names
        self.unit = Unit(config)
        self.dead_letters: list[dict[str, Any]] = []

    def feed(self, numbered: Iterable[tuple[int, bytes]]) -> None:
        unit, cfg, names = self.unit, self.config, self.topic_names
        dead = self.dead_letters
        loads, currency = orjson.loads, cfg.currency
        for number, raw in numbered:
            # Fast path for the common line (a plain event object); anything else takes the full
            # decode_line route, which gives the same result.
            ev = None
            if len(raw) <= MAX_MESSAGE_BYTES:
                try:
                    obj = loads(raw)
                except orjson.JSONDecodeError:
                    obj = None
                if type(obj) is dict and "type" in obj:
                    ev = validate_object(obj, None, currency)
            if ev is None:
                ev = decode_line(raw, names, currency)
            if type(ev) is Rejection:
                dead.append({"line": number, "reason": ev.reason, "field": ev.field, "message": ev.message})
            else:
                unit.offer(ev)

    def document(self, as_of: int | None = None) -> dict[str, Any]:
        unit = self.unit
        wm = unit.watermark
        if as_of is not None and wm is not None and as_of < wm:
            raise ReplayError(
                f"--as-of {format_instant(as_of)} is before the file's final watermark {format_instant(wm)}")
        if as_of is None:
            as_of = wm
        elif wm is not None and as_of > wm:
            unit.advance(as_of)
        customers = {cid: unit.customers[cid].record(as_of, self.config)  # type: ignore[arg-type]
                     for cid in sorted(unit.customers)}
        return {
            "as_of": format_optional(as_of),
            "kpis": unit.kpis.document(as_of),
            "customers": customers,
            "tier_changes": unit.tier_changes,
            "alerts": unit.alerts,
            "counts": {"applied": unit.applied, "duplicates": unit.duplicates,
                       "rejected": len(self.dead_letters)},
            "dead_letters": self.dead_letters,
        }


def replay_lines(lines: Iterable[bytes], as_of: str | None = None,
                 config: EngineConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    """Replay raw lines (no newline splitting beyond what `iter_lines` does) into a document."""
    r = Replay(config)
    r.feed(iter_lines(iter(lines)))  # type: ignore[arg-type]
    return r.document(parse_as_of(as_of) if as_of is not None else None)


def replay_file(path: str, as_of: str | None = None,
                config: EngineConfig = DEFAULT_CONFIG) -> dict[str, Any]:
    as_of_us = parse_as_of(as_of) if as_of is not None else None
    stream = open_events(path)
    r = Replay(config)
    try:
        r.feed(iter_lines(stream))
    except OSError as exc:  # e.g. a truncated gzip file
        raise ReplayError(f"cannot read {path}: {exc}") from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return r.document(as_of_us)
