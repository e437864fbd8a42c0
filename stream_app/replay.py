"""`engagement replay`: a file of events -> the engine (one unit) -> one JSON document (SPEC §8)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import orjson

from stream_app.engine import DEFAULT_CONFIG, EngineConfig, Unit
from stream_app.engine.clock import MAX_INSTANT, MIN_INSTANT, format_instant, format_optional, parse_rfc3339
from stream_app.engine.records import Alert, SegmentChange, TierChange
from stream_app.lines import READ_ERRORS, InputError, iter_lines, open_events, read_error
from stream_app.validation import MAX_MESSAGE_BYTES, Rejection, decode_line, validate_object

ReplayError = InputError  # the name the CLI and users know


def parse_as_of(text: str) -> int:
    us = parse_rfc3339(text)
    if us is None:
        raise ReplayError(f"--as-of must be an RFC 3339 date-time like 2011-12-31T00:00:00Z, got {text!r}")
    if not MIN_INSTANT <= us < MAX_INSTANT:
        raise ReplayError("--as-of must lie in [2000-01-01T00:00Z, 2100-01-01T00:00Z)")
    return us


class Replay:
    """The replay shell: feeds numbered lines to one Unit, collects every output."""

    def __init__(self, config: EngineConfig = DEFAULT_CONFIG,
                 topic_names: dict[str, str] | None = None) -> None:
        self.config = config
        self.topic_names = topic_names
        self.unit = Unit(config)
        self.dead_letters: list[dict[str, Any]] = []
        self.tier_changes: list[TierChange] = []
        self.alerts: list[Alert] = []
        self.segment_changes: list[SegmentChange] = []
        self.last_line = 0

    def feed(self, numbered: Iterable[tuple[int, bytes]]) -> None:
        unit, cfg, names = self.unit, self.config, self.topic_names
        dead = self.dead_letters
        loads, currency, tolerance = orjson.loads, cfg.currency, cfg.future_tolerance
        number = 0
        try:
            for number, raw in numbered:
                # Fast path for the common line (a plain event object: non-null `type`, so never a
                # wrapper, and no received time to check); anything else takes the full decode_line
                # route (wrappers and their `received_at`), which gives the same result.
                ev: Any = None
                if len(raw) <= MAX_MESSAGE_BYTES:
                    try:
                        obj = loads(raw)
                    except orjson.JSONDecodeError:
                        obj = None
                    if type(obj) is dict and obj.get("type") is not None:
                        ev = validate_object(obj, None, currency)
                if ev is None:
                    ev = decode_line(raw, names, currency, tolerance)
                if type(ev) is Rejection:
                    dead.append({"line": number, "reason": ev.reason, "field": ev.field, "message": ev.message})
                else:
                    unit.offer(ev)  # an Event: every other outcome is a Rejection
        finally:
            self.last_line = number  # the last line read: where a truncated file stopped

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
        out = unit.drain()
        self.tier_changes += out.tier_changes
        self.alerts += out.alerts
        self.segment_changes += out.segment_changes
        # as_of ≥ the final watermark ≥ every customer's clock, so `record` never refuses here
        customers = {cid: unit.record(cid, as_of) for cid in sorted(unit.customers)}
        return {
            "as_of": format_optional(as_of),
            "kpis": unit.kpis.document(as_of),
            "customers": customers,
            "tier_changes": self.tier_changes,
            "alerts": self.alerts,
            "segment_changes": self.segment_changes,
            "counts": {"applied": unit.applied, "duplicates": unit.duplicates,
                       "rejected": len(self.dead_letters), "erased": unit.erasures},
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
    except READ_ERRORS as exc:  # e.g. a truncated gzip file
        raise read_error(path, exc, r.last_line) from None
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    return r.document(as_of_us)
