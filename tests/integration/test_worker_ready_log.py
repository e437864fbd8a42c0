"""A worker's log, as a process writes it: every line in one format (ours, Faust's and aiokafka's
lines included; text and JSON), exactly one "ready" line with the broker, the HTTP address and the
partitions, dead letters summarised by reason instead of a warning per batch; and the HTTP API
answers unknown routes with JSON."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from stream_app.broker import EmbeddedBroker
from stream_app.produce import produce_lines
from tests.helpers.stream import WorkerProcess, dead_letter_reasons, isolated_settings

TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) (\S+) (.*)$")
SUMMARY = re.compile(r"^ingest: (\d+) events dead-lettered in the last \d+s \((.*)\)$")

BAD_LINES = [b"{", b"not json at all", orjson.dumps({"event_id": "e-bad-1", "type": "page_view"}),
             orjson.dumps({"event_id": "e-bad-2", "type": "no_such_type", "customer_id": "c-x"})]


def records(log: str, fmt: str) -> list[tuple[str, str, str]]:
    """(level, logger, message) of every line; fails on a line in another format."""
    out = []
    for line in log.splitlines():
        if fmt == "json":
            doc = orjson.loads(line)
            assert set(doc) >= {"ts", "level", "logger", "message"}, line
            out.append((doc["level"].upper(), doc["logger"], doc["message"]))
        else:
            m = TEXT_LINE.match(line)
            assert m, f"a line in another format: {line!r}"
            out.append((m[1], m[2], m[3]))
    return out


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_one_format_one_ready_line_and_a_dead_letter_summary(broker: EmbeddedBroker, tmp_path: Path,
                                                             fmt: str) -> None:
    settings = isolated_settings(broker, tmp_path, partitions=4, log_level="info")
    worker = WorkerProcess(settings, tmp_path, ENGAGEMENT_LOG_FORMAT=fmt)
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, BAD_LINES))
        deadline = time.monotonic() + 60
        reasons: list[dict[str, object]] = []
        while time.monotonic() < deadline and len(reasons) < len(BAD_LINES):
            reasons = dead_letter_reasons(settings)
        assert len(reasons) == len(BAD_LINES), worker.tail()
        status, body = worker.get("/no/such/route")
        assert (status, body) == (404, {"error": "not found: /no/such/route"})
    finally:
        worker.stop()
    assert worker.proc.returncode == 0, worker.tail()
    lines = records(worker.log_path.read_text(errors="replace"), fmt)
    loggers = {logger.split(".")[0] for _, logger, _ in lines}
    assert {"stream_app", "faust", "aiokafka"} <= loggers, f"every library's lines, in our format: {loggers}"
    ready = [(level, msg) for level, _, msg in lines if msg.startswith("ready")]
    assert ready == [("INFO", f"ready: broker {settings.broker}, HTTP http://127.0.0.1:{worker.port}, "
                              f"partitions [0, 1, 2, 3] of {settings.topic_events}")], ready
    # dead letters: a summary (here at the stop, or every 10 s), by reason, never a line per batch
    summaries = [(level, SUMMARY.match(msg)) for level, logger, msg in lines if "dead-lettered" in msg]
    assert summaries and all(level == "WARNING" and m for level, m in summaries), summaries
    assert sum(int(m[1]) for _, m in summaries if m) == len(BAD_LINES)
    logged: Counter[str] = Counter()
    for _, m in summaries:
        assert m
        for part in m[2].split(", "):
            reason, n = part.split(": ")
            logged[reason] += int(n)
    assert logged == Counter(str(r["reason"]) for r in reasons)
    assert not [msg for _, _, msg in lines if "e-bad-" in msg or "c-x" in msg], "no ids in the log"
