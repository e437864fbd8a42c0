"""The worker's log lines: one format for every line, Faust's and aiokafka's included.

`ENGAGEMENT_LOG_FORMAT=text` (the default) writes `<time> <LEVEL> <logger> <message>`; `json`
writes one JSON object per line. Both go to stderr through the one handler `configure` installs
and `logging_config` hands to Faust's worker (which otherwise sets up its own format on stdout).

Log lines never carry customer ids or payloads at INFO: only counts, partitions and durations.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["TEXT_FORMAT", "CountSummary", "JsonFormatter", "TextFormatter", "configure", "logging_config"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class TextFormatter(logging.Formatter):
    """`2024-03-01 10:00:00,123 INFO stream_app.worker message`."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(doc).decode()


_FORMATTERS = {"text": "stream_app.logs.TextFormatter", "json": "stream_app.logs.JsonFormatter"}


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A dictConfig (for Faust's worker and `configure`): one stderr handler, our formatter."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": _FORMATTERS.get(fmt, _FORMATTERS["text"])}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["stderr"]},
    }


def configure(level: str, fmt: str) -> None:
    """Set up the root logger as the worker's Faust `Worker` will again (same config)."""
    import logging.config

    logging.root.handlers.clear()
    logging.config.dictConfig(logging_config(level, fmt))


class CountSummary:
    """Counts by reason, logged as one WARNING per `interval_s` at most (a summary, not a line per
    event): `ingest: 4 events dead-lettered in the last 10s (invalid_json: 3, missing_field: 1)`.

    The first count opens a window; `tick()` logs and resets once the window is `interval_s` old,
    `flush()` at once (on stop). Only reasons and counts: never ids or payloads.
    """

    def __init__(self, logger: logging.Logger, what: str, interval_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.what = what
        self.interval_s = interval_s
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.since: float | None = None

    def add(self, reason: str, n: int = 1) -> None:
        if self.since is None:
            self.since = self.clock()
        self.counts[reason] += n

    def tick(self) -> None:
        """Log the window's counts if it is `interval_s` old (cheap when nothing was counted)."""
        if self.since is not None and self.clock() - self.since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if self.since is None:
            return
        elapsed = self.clock() - self.since
        counts, self.counts, self.since = self.counts, Counter(), None
        total = sum(counts.values())
        reasons = ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
        self.logger.warning("%s in the last %ds (%s)", self.what.format(n=total), max(1, round(elapsed)), reasons)
