"""Issue 19: every bad segment definitions file stops every command at start, with exit 2, one
line naming the file (and the segment and predicate where there is one), and nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from stream_app.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "segments_file"
INVALID = sorted(p for p in (EXAMPLES / "invalid").glob("*.json") if not p.name.endswith(".expect.json"))


@pytest.fixture
def events(tmp_path: Path) -> Path:
    p = tmp_path / "events.jsonl"
    p.write_bytes(orjson.dumps({"event_id": "e1", "type": "survey_response", "customer_id": "c1",
                                "occurred_at": "2024-01-01T00:00:00Z", "nps": 10}) + b"\n")
    return p


def test_there_are_invalid_examples_for_every_rule() -> None:
    assert len(INVALID) >= 30


@pytest.mark.parametrize("bad", INVALID, ids=[p.stem for p in INVALID])
def test_a_bad_definitions_file_stops_the_replay_before_anything_is_written(
        bad: Path, events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    expect = json.loads(bad.with_name(bad.stem + ".expect.json").read_text())
    monkeypatch.setenv("ENGAGEMENT_SEGMENTS_FILE", str(bad))
    out = tmp_path / "doc.json"
    assert main(["replay", str(events), "--out", str(out)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line]
    assert len(err) == 1, err
    assert str(bad) in err[0] and "ENGAGEMENT_SEGMENTS_FILE" in err[0], err
    assert expect["message_contains"] in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("content, says", [
    (None, "cannot read it"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b'\xef\xbb\xbf{"segments": []}', "not JSON"),
    (b"", "not JSON"),
])
def test_unreadable_or_not_json(content: bytes | None, says: str, events: Path, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "segments.json"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv("ENGAGEMENT_SEGMENTS_FILE", str(path))
    assert main(["replay", str(events)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert says in captured.err and str(path) in captured.err


@pytest.mark.parametrize("command", [["worker"], ["audit"], ["erase", "someone"]])
def test_every_command_refuses_a_bad_file_at_start(command: list[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "segments.json"
    bad.write_text('{"segments": [{"name": "x", "when": [["score", ">=", true]]}]}')
    monkeypatch.setenv("ENGAGEMENT_SEGMENTS_FILE", str(bad))
    monkeypatch.setenv("ENGAGEMENT_BROKER", "kafka://127.0.0.1:1")  # never reached
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "segment 'x', predicate #1" in err and str(bad) in err


def test_a_good_file_and_segments_off(events: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "segments.json"
    good.write_text('{"segments": [{"name": "fans", "when": [["last_nps", ">=", 9]]}]}')
    monkeypatch.setenv("ENGAGEMENT_SEGMENTS_FILE", str(good))
    assert main(["replay", str(events)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kpis"]["segments"] == {"fans": 1} and doc["customers"]["c1"]["segments"] == ["fans"]
    assert [c["segment"] for c in doc["segment_changes"]] == ["fans"]
    good.write_text('{"segments": []}')
    assert main(["replay", str(events)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["kpis"]["segments"] == {} and doc["segment_changes"] == []


def test_the_summary_lists_each_segment_with_members_entered_and_left(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = Path(__file__).resolve().parents[2] / "data" / "online-retail-orders.jsonl.gz"
    assert main(["replay", str(data), "--out", str(tmp_path / "doc.json")]) == 0
    doc = json.loads((tmp_path / "doc.json").read_text())
    capsys.readouterr()
    assert main(["replay", str(data), "--summary"]) == 0
    out = capsys.readouterr().out
    section = out.split("Segments (members, entered, left)\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert [line.split()[0] for line in section] == list(doc["kpis"]["segments"])
    for line in section:
        name, members, entered, left = line.split()
        moves = [c["change"] for c in doc["segment_changes"] if c["segment"] == name]
        assert int(members.replace(",", "")) == doc["kpis"]["segments"][name]
        assert (int(entered.replace(",", "")), int(left.replace(",", ""))) == (moves.count("entered"), moves.count("left"))
        assert int(members.replace(",", "")) == moves.count("entered") - moves.count("left")
