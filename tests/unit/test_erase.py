"""`engagement erase`: the customer_erased event it builds, and its refusals (no broker needed)."""

from __future__ import annotations

import time

import orjson
import pytest

from stream_app.cli import main
from stream_app.engine.clock import SECOND, parse_rfc3339
from stream_app.engine.events import Event
from stream_app.erase import MAX_ID_CHARS, erasure_event
from stream_app.validation import validate_bytes


def test_event_is_a_valid_customer_erased_on_the_privacy_topic() -> None:
    before = time.time_ns() // 1_000
    ev = erasure_event("cust-42")
    after = time.time_ns() // 1_000
    assert set(ev) == {"event_id", "type", "customer_id", "occurred_at"}
    parsed = validate_bytes(orjson.dumps(ev), topic="privacy")
    assert isinstance(parsed, Event), parsed
    assert (parsed.type, parsed.topic, parsed.customer_id, parsed.event_id) == \
        ("customer_erased", "privacy", "cust-42", ev["event_id"])
    # occurred_at is now, in the RFC 3339 UTC form (format_instant keeps microseconds)
    assert ev["occurred_at"].endswith("Z")
    assert before <= parsed.occurred_at <= after
    assert parse_rfc3339(ev["occurred_at"]) == parsed.occurred_at


def test_each_request_gets_a_fresh_event_id() -> None:
    # a repeated request must be applied again, not dropped as a duplicate (SPEC §2)
    ids = {erasure_event("c", now_us=1_704_067_200 * SECOND)["event_id"] for _ in range(100)}
    assert len(ids) == 100
    assert erasure_event("c", now_us=1_704_067_200 * SECOND)["occurred_at"] == "2024-01-01T00:00:00Z"


def test_id_limits_count_code_points() -> None:
    longest = "é" * MAX_ID_CHARS  # 256 bytes in UTF-8, 128 code points: valid
    assert isinstance(validate_bytes(orjson.dumps(erasure_event(longest)), topic="privacy"), Event)
    with pytest.raises(ValueError, match="at most 128"):
        erasure_event("x" * (MAX_ID_CHARS + 1))
    with pytest.raises(ValueError, match="empty"):
        erasure_event("")


@pytest.mark.parametrize("bad", ["", "x" * 129])
def test_cli_refuses_bad_ids_before_contacting_a_broker(bad: str, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # port 9 (discard) on loopback: nothing answers, so reaching it would fail with exit 1, not 2
    monkeypatch.setenv("ENGAGEMENT_BROKER", "kafka://127.0.0.1:9")
    assert main(["erase", "good-id", bad]) == 2
    out = capsys.readouterr()
    assert out.out == ""  # nothing sent, not even the good id
    assert out.err.startswith("engagement erase: error: ")


def test_cli_needs_a_broker(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ENGAGEMENT_BROKER", raising=False)
    assert main(["erase", "cust-1"]) == 2
    assert "ENGAGEMENT_BROKER" in capsys.readouterr().err


def test_cli_requires_an_id(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["erase"])
    assert exc.value.code == 2


def test_produce_routes_erasures_to_the_privacy_topic() -> None:
    # `engagement produce` and the simulator send customer_erased lines through route()
    from stream_app.config import Settings
    from stream_app.produce import route

    settings = Settings(topic_privacy="my.privacy")
    raw = orjson.dumps(erasure_event("cust-7"))
    assert route(raw, settings) == ("my.privacy", b"cust-7", raw)
