"""JSON log lines: one object per line, level and logger, exceptions included."""

from __future__ import annotations

import logging

import orjson

from stream_app.logs import JsonFormatter, logging_config


def test_json_formatter_writes_one_object_per_record() -> None:
    rec = logging.LogRecord("stream_app.stream.worker", logging.INFO, __file__, 1, "recovered %d partitions", (4,), None)
    doc = orjson.loads(JsonFormatter().format(rec))
    assert doc["level"] == "info" and doc["logger"] == "stream_app.stream.worker"
    assert doc["message"] == "recovered 4 partitions" and doc["ts"].endswith("+00:00")


def test_json_formatter_includes_exceptions() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in orjson.loads(JsonFormatter().format(rec))["exc"]


def test_both_formats_replace_faust_logging_with_ours() -> None:
    # text too: Faust's own setup would otherwise print a second format (tests/unit/stream/test_worker_logs.py)
    assert logging_config("info", "text")["formatters"]["default"]["()"] == "stream_app.logs.TextFormatter"
    cfg = logging_config("warning", "json")
    assert cfg["root"]["level"] == "WARNING"
    assert cfg["formatters"]["default"]["()"] == "stream_app.logs.JsonFormatter"
