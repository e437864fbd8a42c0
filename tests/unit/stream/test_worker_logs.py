"""The worker's log lines: one format (ours) for every logger, Faust's included; the dead-letter
summary (one WARNING per interval, counts by reason); the one "ready" line and what it says."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from stream_app.config import Settings
from stream_app.logs import CountSummary, JsonFormatter, TextFormatter, configure, logging_config
from stream_app.stream.ingest import IngestLoop
from stream_app.stream.metrics import Metrics
from stream_app.stream.worker import ScorerApp, public_broker_url


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def summary(caplog: pytest.LogCaptureFixture) -> tuple[CountSummary, Clock]:
    clock = Clock()
    caplog.set_level(logging.WARNING, logger="test.summary")
    return CountSummary(logging.getLogger("test.summary"), "ingest: {n} events dead-lettered", 10.0, clock), clock


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.summary"]


def test_counts_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    s, clock = summary(caplog)
    s.tick()
    for reason in ("invalid_json", "missing_field", "invalid_json", "invalid_json"):
        s.add(reason)
        s.tick()
    clock.now += 9.9
    s.add("invalid_json", 2)
    s.tick()
    assert messages(caplog) == [], "nothing before the window is 10 s old"
    clock.now += 0.1
    s.tick()
    assert messages(caplog) == ["ingest: 6 events dead-lettered in the last 10s (invalid_json: 5, missing_field: 1)"]
    assert caplog.records[-1].levelno == logging.WARNING
    clock.now += 60
    s.tick()
    assert len(messages(caplog)) == 1, "a quiet interval logs nothing"


def test_a_new_window_opens_with_the_next_count_and_flush_logs_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    s, clock = summary(caplog)
    s.add("unknown_type")
    clock.now += 3.2
    s.flush()  # the worker stops
    s.flush()
    assert messages(caplog) == ["ingest: 1 events dead-lettered in the last 3s (unknown_type: 1)"]
    clock.now += 100
    s.add("invalid_field")
    clock.now += 10
    s.tick()
    assert messages(caplog)[-1] == "ingest: 1 events dead-lettered in the last 10s (invalid_field: 1)"


def test_ingest_counts_dead_letters_instead_of_warning_per_batch(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(broker="kafka://h:1", partitions=4)
    ingest = IngestLoop(s, Metrics())
    records = [SimpleNamespace(value=b"{", key=b"cust-secret-1", offset=i, timestamp=1704067200000) for i in range(3)]
    sent: list[Any] = []
    sender = SimpleNamespace(add=lambda *a: sent.append(a))
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            assert ingest.ingest_records("clicks", s.topic_clicks, 1, records, sender) == 3  # type: ignore[arg-type]
    assert len(sent) == 15
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], "no line per batch"
    assert dict(ingest.dead_letters.counts) == {"invalid_json": 15}
    with caplog.at_level(logging.WARNING):
        ingest.dead_letters.flush()
    (line,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("ingest: 15 events dead-lettered in the last ") and line.endswith("(invalid_json: 15)")
    assert "cust-secret" not in line


# -- one format ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt, formatter", [("text", TextFormatter), ("json", JsonFormatter)])
def test_one_config_for_faust_and_us(fmt: str, formatter: type) -> None:
    cfg = logging_config("warning", fmt)
    assert cfg["root"] == {"level": "WARNING", "handlers": ["stderr"]}
    assert cfg["formatters"]["default"]["()"] == f"stream_app.logs.{formatter.__name__}"
    assert cfg["handlers"]["stderr"]["stream"] == "ext://sys.stderr"


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_logger_goes_through_the_one_handler(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        configure("info", fmt)
        assert len(logging.root.handlers) == 1
        for name in ("stream_app.stream.worker", "faust.worker", "mode.services", "aiokafka.consumer.group_coordinator"):
            logging.getLogger(name).info("hello from %s", name)
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4
    for line in lines:
        if fmt == "json":
            doc = orjson.loads(line)
            assert set(doc) == {"ts", "level", "logger", "message"} and doc["level"] == "info"
        else:
            date, time_, level, logger, *rest = line.split(" ")
            assert level == "INFO" and rest[:2] == ["hello", "from"] and rest[-1] == logger


# -- the ready line -------------------------------------------------------------------------------

def ready_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready")]


def test_the_ready_line_says_broker_http_and_partitions(caplog: pytest.LogCaptureFixture) -> None:
    s = Settings(broker="kafka://127.0.0.1:9092", web_port=6123, sasl_username="u", sasl_password="hunter2-pw",
                 api_token="tok-abcdef-123456")
    scorer = ScorerApp(s)
    with caplog.at_level(logging.INFO, logger="stream_app.stream.worker"):
        scoring = scorer.scoring
        scoring.owned.processors = dict.fromkeys([3, 0, 1, 2])  # type: ignore[arg-type]
        scoring._announce()
        scoring._announce()  # the same partitions: nothing new
        scoring.owned.processors = dict.fromkeys([0, 2])  # type: ignore[arg-type]
        scoring._announce()
    assert ready_lines(caplog) == [
        "ready: broker kafka://127.0.0.1:9092, HTTP http://127.0.0.1:6123, partitions [0, 1, 2, 3] "
        "of engagement.events-by-customer",
        "ready (partitions changed): broker kafka://127.0.0.1:9092, HTTP http://127.0.0.1:6123, partitions [0, 2] "
        "of engagement.events-by-customer"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage().startswith("ready"))
    assert not [r for r in caplog.records if "hunter2" in r.getMessage() or "tok-abc" in r.getMessage()]


def test_the_ready_line_names_the_listen_address_when_it_differs() -> None:
    scorer = ScorerApp(Settings(broker="kafka://u:pw@b1:9092,kafka://b2:9092", web_host="worker-1", web_bind="0.0.0.0",
                             web_port=7000, api_token="t0k3n-abcdef0123"))
    assert scorer.where() == "broker kafka://b1:9092,kafka://b2:9092, HTTP http://worker-1:7000 " \
                             "(listening on 0.0.0.0:7000)"


def test_an_ingest_worker_is_ready_when_its_consumer_starts(caplog: pytest.LogCaptureFixture) -> None:
    scorer = ScorerApp(Settings(broker="kafka://h:1", role="ingest", web_port=6124))
    assert scorer.ingest.on_started is not None
    with caplog.at_level(logging.INFO, logger="stream_app.stream.worker"):
        scorer.ingest.on_started()
    assert ready_lines(caplog) == ["ready: broker kafka://h:1, HTTP http://127.0.0.1:6124, role ingest "
                                   "(no partitions scored)"]
    assert ScorerApp(Settings(broker="kafka://h:1")).ingest.on_started is None


@pytest.mark.parametrize("url, public", [("kafka://h:1", "kafka://h:1"), ("h:1,h:2", "h:1,h:2"),
                                         ("kafka://user:secret@h:1", "kafka://h:1"), ("user:s@h:1", "h:1"),
                                         ("kafka://u:p://x@h:1", "kafka://h:1")])
def test_the_broker_url_is_logged_without_credentials(url: str, public: str) -> None:
    assert public_broker_url(url) == public


def test_the_worker_logs_and_exports_the_clv_model_it_loaded(caplog: pytest.LogCaptureFixture) -> None:
    from pathlib import Path

    from prometheus_client import generate_latest

    model = Path(__file__).resolve().parents[3] / "data" / "clv-model-online-retail.json"
    version = orjson.loads(model.read_bytes())["version"]
    with caplog.at_level(logging.INFO, logger="stream_app.stream.worker"):
        scorer = ScorerApp(Settings(broker="kafka://h:1", web_port=6125, clv_model_file=str(model),
                                    clv_horizon_days=90))
    lines = [r for r in caplog.records if r.getMessage().startswith("clv:")]
    assert len(lines) == 1 and lines[0].levelno == logging.INFO
    assert version in lines[0].getMessage() and "horizon 90 days" in lines[0].getMessage()
    text = generate_latest(scorer.metrics.registry).decode()
    assert f'engagement_clv_model_info{{version="{version}"}} 1.0' in text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stream_app.stream.worker"):
        scorer = ScorerApp(Settings(broker="kafka://h:1", web_port=6126))
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("clv:")] == [
        "clv: no model (ENGAGEMENT_CLV_MODEL_FILE unset): every record's clv is null"]
    assert "engagement_clv_model_info{" not in generate_latest(scorer.metrics.registry).decode()
