"""SPEC §8: the replay shell — line handling, wrappers, dead letters, as_of, the CLI."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from stream_app.cli import main
from stream_app.replay import ReplayError, replay_file, replay_lines

DATA = Path(__file__).resolve().parents[2] / "data" / "online-retail-orders.jsonl.gz"
PV = {"event_id": "p1", "type": "page_view", "customer_id": "c1", "occurred_at": "2024-01-01T10:00:00Z"}


def line(obj: Any) -> bytes:
    return orjson.dumps(obj)


def test_empty_input_gives_null_as_of_zero_counts_null_ratios() -> None:
    doc = replay_lines([b"", b"   "])
    assert doc["as_of"] is None and doc["customers"] == {} and doc["dead_letters"] == []
    k = doc["kpis"]
    assert k["orders"] == 0 and k["guest_checkout_rate"] is None and k["repeat_purchase_rate"] is None
    assert doc["counts"] == {"applied": 0, "duplicates": 0, "rejected": 0, "erased": 0}


def test_bom_crlf_and_blank_lines(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"\xef\xbb\xbf" + line(PV) + b"\r\n\r\n" + line({**PV, "event_id": "p2"}) + b"\r\n")
    doc = replay_file(str(p))
    assert doc["counts"] == {"applied": 2, "duplicates": 0, "rejected": 0, "erased": 0}


def test_dead_letters_carry_line_reason_field_message() -> None:
    lines = [line(PV), b"{oops", b"", line({**PV, "event_id": "p3", "type": "review"}), line([1])]
    doc = replay_lines(lines)
    assert [(d["line"], d["reason"], d["field"]) for d in doc["dead_letters"]] == [
        (2, "invalid_json", None), (4, "missing_field", "rating"), (5, "not_an_object", None)]
    assert all(d["message"] and set(d) == {"line", "reason", "field", "message"} for d in doc["dead_letters"])
    assert doc["counts"]["rejected"] == 3


def test_line_size_limit_applies_to_the_whole_line() -> None:
    big = {"topic": "clicks", "event": {**PV, "pad": "x" * 65_500}}
    doc = replay_lines([line(big)])
    assert doc["dead_letters"][0]["reason"] == "too_large"


def test_wrappers_full_and_short_names_unknown_topic_and_wrong_topic() -> None:
    lines = [
        line({"topic": "engagement.clicks", "event": PV}),
        line({"topic": "clicks", "event": {**PV, "event_id": "p2"}}),
        line({"topic": "engagement.nope", "event": {**PV, "event_id": "p3"}}),
        line({"topic": "orders", "event": {**PV, "event_id": "p4"}}),
        line({"topic": "social", "event": [1]}),
        # an object with a `type` is an event, even with `topic`/`event` keys (forward compatible)
        line({**PV, "event_id": "p5", "topic": "whatever", "event": 1}),
    ]
    doc = replay_lines(lines)
    assert [(d["line"], d["reason"], d["field"]) for d in doc["dead_letters"]] == [
        (3, "invalid_field", "topic"), (4, "wrong_topic", "type"), (5, "not_an_object", "event")]
    assert doc["counts"]["applied"] == 3


def test_as_of_before_the_final_watermark_is_an_error() -> None:
    with pytest.raises(ReplayError, match="before the file's final watermark"):
        replay_lines([line(PV)], as_of="2024-01-01T09:59:59Z")
    with pytest.raises(ReplayError, match="RFC 3339"):
        replay_lines([line(PV)], as_of="yesterday")


def test_as_of_advances_due_work_and_reads_scores_there() -> None:
    order = {"event_id": "o1", "type": "order_placed", "customer_id": "c1", "occurred_at": "2024-01-01T00:00:00Z",
             "order_id": "o1", "amount": 2000}
    doc = replay_lines([line(order)], as_of="2024-03-01T00:00:00Z")
    assert doc["as_of"] == "2024-03-01T00:00:00Z"
    assert [a["type"] for a in doc["alerts"]] == ["churn_risk"]
    rec = doc["customers"]["c1"]
    assert rec["score"] == pytest.approx(50 * 2 ** (-60 / 30))
    assert rec["as_of"] == "2024-03-01T00:00:00Z"
    same = replay_lines([line(order)], as_of="2024-01-01T00:00:00Z")   # equal: no advance
    assert same["alerts"] == []


def test_cli_errors_exit_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    p = tmp_path / "e.jsonl"
    p.write_bytes(line(PV) + b"\n")
    assert main(["replay", str(p), "--as-of", "2023-01-01T00:00:00Z"]) == 2
    assert "before the file's final watermark" in capsys.readouterr().err


def test_cli_writes_out_file_gzip_and_stdin(tmp_path: Path) -> None:
    gz = tmp_path / "e.jsonl.gz"
    with gzip.open(gz, "wb") as f:
        f.write(line(PV) + b"\n")
    out = tmp_path / "doc.json"
    assert main(["replay", str(gz), "--out", str(out)]) == 0
    assert orjson.loads(out.read_bytes())["counts"]["applied"] == 1
    proc = subprocess.run([sys.executable, "-m", "stream_app", "replay", "-"], input=line(PV) + b"\n",
                          capture_output=True, check=True)
    assert orjson.loads(proc.stdout)["customers"]["c1"]["events_total"] == 1


def _independent_kpis(path: Path) -> dict[str, Any]:
    """Plain grouping over the raw lines, with the stdlib only (no project code)."""
    rows = [json.loads(raw) for raw in gzip.open(path, "rt", encoding="utf-8")]
    when = [datetime.fromisoformat(r["occurred_at"].replace("Z", "+00:00")) for r in rows]
    as_of = max(when)
    first_day = as_of.date() - timedelta(days=364)
    inside = [r for r, w in zip(rows, when, strict=True) if w.date() >= first_day]
    placed = [r for r in inside if r["type"] == "order_placed"]
    per_customer = Counter(r["customer_id"] for r in placed if r.get("customer_id"))
    revenue = sum(r["amount"] for r in placed) - sum(r["amount"] for r in inside if r["type"] == "order_refunded")
    return {"as_of": as_of, "orders": len(placed), "guest_orders": sum(1 for r in placed if r.get("guest")),
            "identified_orders": sum(per_customer.values()), "revenue": revenue,
            "customers": len(per_customer), "repeat_customers": sum(1 for n in per_customer.values() if n >= 2)}


def test_online_retail_kpis_match_an_independent_computation() -> None:
    doc = replay_file(str(DATA))
    want = _independent_kpis(DATA)
    k = doc["kpis"]
    assert doc["as_of"] == want["as_of"].strftime("%Y-%m-%dT%H:%M:%SZ")
    for field in ("orders", "guest_orders", "identified_orders", "customers", "repeat_customers"):
        assert k[field] == want[field], field
    assert k["revenue"] == pytest.approx(want["revenue"], rel=1e-12)
    assert k["guest_checkout_rate"] == pytest.approx(want["guest_orders"] / want["orders"])
    assert k["average_order_value"] == pytest.approx(want["revenue"] / want["orders"])
    assert k["purchase_frequency"] == pytest.approx(want["identified_orders"] / want["customers"])
    assert k["repeat_purchase_rate"] == pytest.approx(want["repeat_customers"] / want["customers"])
    assert doc["counts"] == {"applied": 23_795, "duplicates": 0, "rejected": 0, "erased": 0}


def test_summary_table_prints_kpis_and_tiers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(DATA), "--summary"]) == 0
    out = capsys.readouterr().out
    assert "guest checkout rate" in out and "platinum" in out and "repeat purchase rate" in out


def test_replay_reads_stdin_through_main(monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(line(PV) + b"\n")))
    assert main(["replay", "-"]) == 0
    assert orjson.loads(capsysbinary.readouterr().out)["counts"]["applied"] == 1


@pytest.mark.parametrize("command", [["produce", "x.jsonl"], ["simulate"], ["audit"]])
def test_kafka_commands_need_a_broker(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("ENGAGEMENT_BROKER", raising=False)
    assert main(command) == 2
    assert "set ENGAGEMENT_BROKER" in capsys.readouterr().err


def test_summary_into_a_closed_pipe_exits_quietly() -> None:
    proc = subprocess.run(f"{sys.executable} -m stream_app replay {DATA} --summary | head -1",
                          shell=True, capture_output=True)
    assert proc.stdout.startswith(b"Store KPIs") and b"Traceback" not in proc.stderr


# ------------------------------------------- line reading: blank lines, received_at, --as-of


def test_blank_lines_are_skipped_and_line_numbers_stay_physical(tmp_path: Path) -> None:
    p = tmp_path / "e.jsonl"
    p.write_bytes(b"\xef\xbb\xbf\r\n" + b"\n" + b" \t \n" + line(PV) + b"\r\n" + b"\r\n" + b"{oops\n"
                  + b"   \n" + line({**PV, "event_id": "p2", "type": "review"}) + b"\n" + b"\t")
    doc = replay_file(str(p))
    assert [(d["line"], d["reason"], d["field"]) for d in doc["dead_letters"]] == [
        (6, "invalid_json", None), (8, "missing_field", "rating")]
    assert doc["counts"]["applied"] == 1 and doc["counts"]["rejected"] == 2


def test_received_at_on_a_wrapper_line_rejects_a_future_dated_event() -> None:
    future = {**PV, "event_id": "p2", "occurred_at": "2099-12-31T23:00:00Z"}
    lines = [
        line({"topic": "clicks", "event": PV, "received_at": "2024-01-01T10:00:00Z"}),
        line({"topic": "engagement.clicks", "event": future, "received_at": "2024-01-01T10:00:00Z"}),
        line({"topic": "clicks", "event": {**PV, "event_id": "p3"}, "received_at": "2024-01-01 10:00"}),
        line({"topic": "engagement.clicks", "event": {**PV, "event_id": "p4", "type": "email_sent"},
              "received_at": 1704103200000}),
        line({**future, "event_id": "p5"}),             # a plain line has no received time: applied
    ]
    doc = replay_lines(lines)
    assert [(d["line"], d["reason"], d["field"]) for d in doc["dead_letters"]] == [
        (2, "invalid_field", "occurred_at"), (3, "invalid_field", "received_at")]
    assert doc["counts"]["applied"] == 3


def test_the_fast_path_and_decode_line_agree() -> None:
    """Replay.feed decodes plain event lines without the wrapper logic; both routes must give the
    same result for every shape, wrappers and near-wrappers included."""
    from stream_app.replay import Replay
    from stream_app.validation import decode_line

    lines = [
        line(PV), line({**PV, "type": None, "topic": "clicks", "event": PV}),
        line({"type": None, "topic": "clicks", "event": {**PV, "event_id": "w"}, "received_at": "bad"}),
        line({**PV, "topic": "nope", "event": 1}), line({"topic": None, "event": PV}), line([PV]),
        line({**PV, "type": "customer_erased", "customer_id": None}), b"{oops", line({**PV, "type": "review"}),
    ]
    replay = Replay()
    replay.feed(enumerate(lines, start=1))
    dead = {d["line"]: (d["reason"], d["field"], d["message"]) for d in replay.dead_letters}
    for number, raw in enumerate(lines, start=1):
        want = decode_line(raw)
        got = dead.get(number)
        assert got == (tuple(want) if got is not None else None), (number, want)
    assert dead[3][:2] == ("invalid_field", "received_at")


@pytest.mark.parametrize("text,want", [
    ("2024-03-01T00:00:00Z", "2024-03-01T00:00:00Z"),
    ("2024-03-01t00:00:00z", "2024-03-01T00:00:00Z"),
    ("2024-03-01T01:30:00+01:30", "2024-03-01T00:00:00Z"),
    ("2024-02-29T19:00:00-05:00", "2024-03-01T00:00:00Z"),
    ("2024-03-01T00:00:00.1234567Z", "2024-03-01T00:00:00.123456Z"),
    ("2024-03-01T00:00:00.5Z", "2024-03-01T00:00:00.500Z"),
])
def test_as_of_takes_the_occurred_at_string_forms(text: str, want: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert replay_lines([line(PV)], as_of=text)["as_of"] == want
    p = tmp_path / "e.jsonl"
    p.write_bytes(line(PV) + b"\n")
    assert main(["replay", str(p), "--as-of", text]) == 0
    assert orjson.loads(capsys.readouterr().out)["as_of"] == want


@pytest.mark.parametrize("text", ["1709251200000", "2024-03-01 00:00:00Z", "2024-03-01T00:00:00",
                                  "2024-03-01T00:00Z", "2024-02-30T00:00:00Z", "2100-01-01T00:00:00Z"])
def test_as_of_refuses_other_forms(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ReplayError, match="as-of"):
        replay_lines([line(PV)], as_of=text)
    p = tmp_path / "e.jsonl"
    p.write_bytes(line(PV) + b"\n")
    assert main(["replay", str(p), "--as-of", text]) == 2
    assert "--as-of" in capsys.readouterr().err
