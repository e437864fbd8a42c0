"""Issue 17: every bad input gets one clear line and exit 2 (3 for a replay that applied nothing),
and every command's --help lists its options with defaults and the settings it reads."""

from __future__ import annotations

import gzip
import socket
from dataclasses import fields
from pathlib import Path

import orjson
import pytest

from stream_app import cli
from stream_app.cli import COMMAND_SETTINGS, build_parser, main
from stream_app.config import (
    ENGINE_SETTINGS,
    KAFKA_SETTINGS,
    Settings,
    SettingsError,
    env_table,
    unknown_variable_warnings,
)


def event(i: int, **extra: object) -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "type": "page_view", "customer_id": f"c{i % 7}",
                         "occurred_at": f"2024-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z", "channel": "web",
                         **extra})


@pytest.fixture
def events(tmp_path: Path) -> Path:
    p = tmp_path / "events.jsonl"
    p.write_bytes(b"".join(event(i) + b"\n" for i in range(20)))
    return p


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line]


# -- ENGAGEMENT_LOG_LEVEL / ENGAGEMENT_LOG_FORMAT: refused at start by every command -----------------


def test_log_level_is_checked_and_normalised() -> None:
    assert Settings(log_level="WARN").log_level == "warning"
    assert Settings(log_level="Debug").log_level == "debug"
    assert Settings(log_format="JSON").log_format == "json"
    with pytest.raises(SettingsError, match="ENGAGEMENT_LOG_LEVEL='loud': use one of debug, info, warning"):
        Settings(log_level="loud")
    with pytest.raises(SettingsError, match="ENGAGEMENT_LOG_FORMAT='xml': use one of text, json"):
        Settings(log_format="xml")


@pytest.mark.parametrize("command", [["worker"], ["replay", "-"], ["audit"], ["simulate"]])
def test_a_bad_log_level_stops_every_command_with_one_line(command: list[str], monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGAGEMENT_LOG_LEVEL", "loud")
    monkeypatch.setenv("ENGAGEMENT_BROKER", "kafka://127.0.0.1:1")  # never reached
    assert main(command) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"engagement {command[0]}: error: ENGAGEMENT_LOG_LEVEL='loud'")
    assert "debug, info, warning, warn, error, critical" in err[0]


def test_a_bad_log_format_stops_the_worker(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGAGEMENT_LOG_FORMAT", "xml")
    assert main(["worker"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        "engagement worker: error: ENGAGEMENT_LOG_FORMAT='xml': use one of text, json"]


# -- unknown ENGAGEMENT_* variables ------------------------------------------------------------------


def test_unknown_variables_are_named_with_the_nearest_known_one() -> None:
    env = {"ENGAGEMENT_LOG_LEVLE": "debug", "ENGAGEMENT_LOG_LEVEL": "info", "ENGAGEMENT_BROKERS": "x",
           "ENGAGEMENT_ZZZZZZZZZZZZZZZZ": "1", "PATH": "/bin",
           # read outside Settings, so known: the engine's import, the chaos suite, the demo test
           "ENGAGEMENT_PURE_PYTHON": "1", "ENGAGEMENT_FAILPOINT": "x:1", "ENGAGEMENT_DEMO_TEST_MARKER": "m"}
    assert unknown_variable_warnings(env) == [
        "unknown setting ENGAGEMENT_BROKERS (did you mean ENGAGEMENT_BROKER?)",
        "unknown setting ENGAGEMENT_LOG_LEVLE (did you mean ENGAGEMENT_LOG_LEVEL?)",
        "unknown setting ENGAGEMENT_ZZZZZZZZZZZZZZZZ",
    ]
    assert unknown_variable_warnings({k: "" for k in Settings().to_env()}) == []


def test_every_command_warns_once_about_a_misspelt_variable(events: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ENGAGEMENT_HALF_LIFE_DAY", "10")
    assert main(["replay", str(events), "--summary"]) == 0
    err = error_lines(capsys.readouterr().err)
    assert err == ["engagement: warning: unknown setting ENGAGEMENT_HALF_LIFE_DAY "
                   "(did you mean ENGAGEMENT_HALF_LIFE_DAYS?)"]


# -- replay: unreadable input, --out, a file where nothing applies ---------------------------------


def test_a_truncated_gzip_file_is_one_line_naming_the_last_line_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                                                     ) -> None:
    data = gzip.compress(b"".join(event(i) + b"\n" for i in range(20_000)))
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(data[: len(data) // 2])
    assert main(["replay", str(cut)]) == 2
    out = capsys.readouterr()
    err = error_lines(out.err)
    assert out.out == "" and len(err) == 1
    assert err[0].startswith(f"engagement replay: error: {cut}: truncated or corrupt gzip data (after line ")
    assert int(err[0].rsplit(" ", 1)[1].rstrip(")")) > 1000


def test_corrupt_gzip_data_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = gzip.compress(b"".join(event(i) + b"\n" for i in range(2_000)))
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(data[:12] + b"\xff" * 64 + data[76:])
    assert main(["replay", str(bad)]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"engagement replay: error: {bad}: truncated or corrupt gzip data (at the start)"]


def _no_replay(*args: object, **kwargs: object) -> None:
    raise AssertionError("the replay ran before --out was checked")


@pytest.mark.parametrize("where", ["missing-folder", "a-directory", "under-a-file"])
def test_out_is_checked_before_the_replay_runs(where: str, events: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = {"missing-folder": tmp_path / "no" / "such" / "doc.json", "a-directory": tmp_path,
           "under-a-file": events / "doc.json"}[where]
    monkeypatch.setattr("stream_app.replay.replay_file", _no_replay)
    assert main(["replay", str(events), "--out", str(out)]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith(f"engagement replay: error: --out {out}: ")
    assert err[0].endswith({"missing-folder": "does not exist", "a-directory": "is a directory",
                            "under-a-file": "is not a folder"}[where])


def test_summary_with_out_writes_the_document_and_prints_the_table(events: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "doc.json"
    assert main(["replay", str(events), "--summary", "--out", str(doc)]) == 0
    assert orjson.loads(doc.read_bytes())["counts"]["applied"] == 20
    out = capsys.readouterr().out
    assert out.startswith("Store KPIs") and "20 applied" in out


def test_a_file_that_is_not_events_exits_3_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# A title\n\nSome prose, not JSON.\n\n- a list\n")
    assert main(["replay", str(readme)]) == cli.EXIT_NOTHING_APPLIED == 3
    out = capsys.readouterr()
    assert orjson.loads(out.out)["counts"] == {"applied": 0, "duplicates": 0, "rejected": 3, "erased": 0}
    assert error_lines(out.err) == [
        f"engagement replay: error: {readme}: no event applied, 3 line(s) rejected (3 invalid_json); "
        "is it a JSON-lines events file?"]


def test_some_rejected_lines_among_applied_ones_still_exit_0(events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with events.open("ab") as f:
        f.write(b"not json\n")
    assert main(["replay", str(events)]) == 0
    assert capsys.readouterr().err == ""


def test_summary_lists_rejections_by_reason(events: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with events.open("ab") as f:
        f.write(b"not json\n[1]\n" + event(98, type="nope") + b"\n" + event(99, event_id=None) + b"\nnot json\n")
    assert main(["replay", str(events), "--summary"]) == 0
    out = capsys.readouterr().out
    section = out.split("Rejected lines by reason")[1].splitlines()[1:]
    reasons = [line.split()[0] for line in section if line.strip()]
    assert reasons[0] == "invalid_json" and set(reasons) == {"invalid_json", "not_an_object", "unknown_type",
                                                            "missing_field"}
    assert "       2  line 21: " in section[0]  # the count, then the first such line
    assert "5 rejected" in out


def test_the_summary_has_no_rejection_section_when_nothing_was_rejected(events: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(events), "--summary"]) == 0
    assert "Rejected lines" not in capsys.readouterr().out


# -- numbers on the command line -------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["demo", "--rate", "-1"], ["demo", "--rate", "0"], ["demo", "--customers", "0"], ["demo", "--duration", "-5"],
    ["simulate", "--rate", "-1"], ["simulate", "--customers", "-3"], ["simulate", "--customers", "2.5"],
    ["simulate", "--duration", "0"], ["simulate", "--bad-rate", "1.5"], ["simulate", "--bad-rate", "-0.1"],
    ["simulate", "--speed", "0"], ["simulate", "--rate", "nan"], ["produce", "x.jsonl", "--rate", "-1"],
])
def test_bad_numbers_are_argparse_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"engagement {argv[0]}: error: argument {argv[-2]}: expected " in err and "Traceback" not in err


def test_good_numbers_pass() -> None:
    args = build_parser().parse_args(["simulate", "--rate", "0.5", "--bad-rate", "0", "--customers", "3"])
    assert (args.rate, args.bad_rate, args.customers) == (0.5, 0.0, 3)


# -- --version and --help --------------------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"engagement {version('engagement-scorer')}\n"


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_worker_help_lists_every_setting_with_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("worker", capsys)
    listed = dict(line.split(None, 1) for line in text.split("settings (")[1].splitlines()[1:] if line.strip())
    for name, default, _ in env_table():
        assert listed[name] == (default or "(empty)"), name
    assert len(listed) == len(fields(Settings))


def test_replay_help_lists_options_defaults_and_the_engine_settings(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("replay", capsys)
    for option in ("--as-of", "--out", "--summary"):
        assert option in text
    assert "ENGAGEMENT_HALF_LIFE_DAYS" in text and "30.0" in text and "ENGAGEMENT_TIER_BOUNDS" in text
    assert "ENGAGEMENT_BROKER" not in text  # replay never talks to Kafka
    assert "3 no event applied" in " ".join(text.split())


def test_audit_and_simulate_help_list_the_kafka_settings(capsys: pytest.CaptureFixture[str]) -> None:
    audit = help_of("audit", capsys)
    assert all(f"ENGAGEMENT_{name.upper()}" in audit for name in (*KAFKA_SETTINGS, *ENGINE_SETTINGS))
    simulate = " ".join(help_of("simulate", capsys).split())
    assert "--rate RATE events per second (default: 200.0)" in simulate
    assert "(default: 1000)" in simulate and "(default: 0.01)" in simulate and "ENGAGEMENT_TOPIC_ORDERS" in simulate


def test_every_command_lists_the_settings_it_reads() -> None:
    settings = {f.name for f in fields(Settings)}
    for names in COMMAND_SETTINGS.values():
        assert set(names) <= settings
    sub = next(a for a in build_parser()._actions if a.choices and "worker" in a.choices)  # the subparsers
    for name, parser in sub.choices.items():  # type: ignore[union-attr]
        assert name in COMMAND_SETTINGS, f"add {name!r} to cli.COMMAND_SETTINGS"
        assert parser.epilog == cli.settings_epilog(name), f"{name}: build it with command(...)"


# -- the worker's HTTP port ------------------------------------------------------------------------


def test_a_port_in_use_is_found_before_the_worker_starts(monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from stream_app.stream.run import port_taken

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert port_taken("127.0.0.1", port) and port_taken("0.0.0.0", port)
        monkeypatch.setenv("ENGAGEMENT_WEB_PORT", str(port))
        monkeypatch.setenv("ENGAGEMENT_BROKER", "kafka://127.0.0.1:1")
        assert main(["worker"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"engagement worker: error: port {port} on 127.0.0.1 is already in use (another worker?); "
        "set ENGAGEMENT_WEB_PORT to a free port"]
    assert not port_taken("127.0.0.1", port)  # closed now
