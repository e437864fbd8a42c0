"""Settings: ENGAGEMENT_* parsing, validation, and the README's table listing every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_app.config import LOG_FORMATS, ROLES, STORES, LogFormat, Role, SecurityProtocol, Settings, Store, env_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_from_env_parses_types(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGAGEMENT_PARTITIONS", "12")
    monkeypatch.setenv("ENGAGEMENT_SESSION_TIMEOUT_S", "2.5")
    monkeypatch.setenv("ENGAGEMENT_BROKER", "kafka://a:9092,kafka://b:9092")
    s = Settings.from_env()
    assert (s.partitions, s.session_timeout_s) == (12, 2.5)
    assert s.bootstrap == "a:9092,b:9092"


def test_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(broker="kafka://x:1", partitions=3, topic_alerts="a.b", fetch_max_wait_ms=50)
    for k, v in s.to_env().items():
        monkeypatch.setenv(k, v)
    assert Settings.from_env() == s


def test_unsupported_store_is_refused() -> None:
    with pytest.raises(ValueError, match="ENGAGEMENT_STORE"):
        Settings(store="redis://")  # type: ignore[arg-type]
    assert Settings(store="rocksdb://").store == "rocksdb://"
    with pytest.raises(ValueError, match="PARTITIONS"):
        Settings(partitions=0)


def test_the_enumerated_settings_are_their_literal_types() -> None:
    from typing import get_args

    from stream_app.stream.kafka_io import SECURITY_PROTOCOLS

    assert (ROLES, STORES, LOG_FORMATS) == (get_args(Role), get_args(Store), get_args(LogFormat))
    assert get_args(SecurityProtocol) == SECURITY_PROTOCOLS  # where the Kafka clients check it
    # validation as before: anything else is refused; a store URL and a log format have one spelling
    with pytest.raises(ValueError, match="ENGAGEMENT_ROLE"):
        Settings(role="scorer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ENGAGEMENT_LOG_FORMAT"):
        Settings(log_format="xml")  # type: ignore[arg-type]
    assert Settings(log_format="JSON").log_format == "json"  # type: ignore[arg-type]
    assert Settings(store="rocksdb:///var/state").store == "rocksdb://"  # type: ignore[arg-type]
    assert Settings(store="memory://x").store == "memory://"  # type: ignore[arg-type]


def test_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(Settings(sasl_password="s3cret"))


def test_readme_lists_every_variable() -> None:
    documented = set(re.findall(r"^\| `(ENGAGEMENT_[A-Z_]+)` \|", README.read_text(), re.M))
    assert documented == {name for name, _, _ in env_table()}


# -- the engine's numbers ----------------------------------------------------------------------


def test_engine_defaults_are_the_spec_numbers() -> None:
    from stream_app.engine import DEFAULT_CONFIG
    from stream_app.engine.clock import DAY, HOUR, MINUTE

    cfg = Settings().engine_config()
    assert cfg == DEFAULT_CONFIG
    assert (cfg.half_life, cfg.tier_bounds, cfg.demotion_factor) == (30 * DAY, (0.0, 20.0, 60.0, 150.0), 0.8)
    assert (cfg.order_window_days, cfg.activity_window_days) == (365, 30)
    assert (cfg.cart_timeout, cfg.churn_after, cfg.feedback_cooldown, cfg.dedupe_horizon) == (
        60 * MINUTE, 30 * DAY, 24 * HOUR, 7 * DAY)
    assert cfg.currency == "GBP"


def test_engine_numbers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_app.engine.clock import DAY, HOUR, MINUTE

    for name, value in {
        "HALF_LIFE_DAYS": "14.5", "TIER_BOUNDS": " platinum=300, silver=10 ,gold=50",
        "DEMOTION_FACTOR": "1", "ORDER_WINDOW_DAYS": "90", "ACTIVITY_WINDOW_DAYS": "7",
        "CART_TIMEOUT_MINUTES": "15", "CHURN_INACTIVITY_DAYS": "45", "FEEDBACK_COOLDOWN_HOURS": "0",
        "DEDUPE_HORIZON_DAYS": "2", "CURRENCY": "EUR",
    }.items():
        monkeypatch.setenv(f"ENGAGEMENT_{name}", value)
    s = Settings.from_env()
    cfg = s.engine_config()
    assert cfg.half_life == 14.5 * DAY and cfg.tier_bounds == (0.0, 10.0, 50.0, 300.0)
    assert (cfg.demotion_factor, cfg.order_window_days, cfg.activity_window_days) == (1.0, 90, 7)
    assert (cfg.cart_timeout, cfg.churn_after, cfg.feedback_cooldown, cfg.dedupe_horizon) == (
        15 * MINUTE, 45 * DAY, 0 * HOUR, 2 * DAY)
    assert cfg.currency == "EUR"
    for k, v in s.to_env().items():   # and back through the environment
        monkeypatch.setenv(k, v)
    assert Settings.from_env().engine_config() == cfg


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("HALF_LIFE_DAYS", "0", "must be positive"),
    ("HALF_LIFE_DAYS", "-3", "must be positive"),
    ("HALF_LIFE_DAYS", "nan", "finite"),
    ("HALF_LIFE_DAYS", "thirty", "expected a number"),
    ("TIER_BOUNDS", "silver=20,gold=60", "expected silver=N,gold=N,platinum=N"),
    ("TIER_BOUNDS", "silver=20,gold=60,platinum=150,diamond=500", "expected silver=N"),
    ("TIER_BOUNDS", "silver=20,silver=30,platinum=150", "expected silver=N"),
    ("TIER_BOUNDS", "silver=x,gold=60,platinum=150", "expected silver=N"),
    ("TIER_BOUNDS", "silver=60,gold=20,platinum=150", "must increase"),
    ("TIER_BOUNDS", "silver=0,gold=60,platinum=150", "must increase"),
    ("TIER_BOUNDS", "silver=20,gold=60,platinum=inf", "must increase"),
    ("DEMOTION_FACTOR", "0", r"\(0, 1\]"),
    ("DEMOTION_FACTOR", "1.01", r"\(0, 1\]"),
    ("ORDER_WINDOW_DAYS", "0", "at least 1 day"),
    ("ORDER_WINDOW_DAYS", "30.5", "expected an integer"),
    ("ACTIVITY_WINDOW_DAYS", "0", "at least 1 day"),
    ("CART_TIMEOUT_MINUTES", "0", "must be positive"),
    ("CHURN_INACTIVITY_DAYS", "-1", "must be positive"),
    ("FEEDBACK_COOLDOWN_HOURS", "-1", "must not be negative"),
    ("DEDUPE_HORIZON_DAYS", "0", "must be positive"),
    ("CURRENCY", "gbp", "3-letter"),
])
def test_invalid_engine_numbers_fail_at_start_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str) -> None:
    monkeypatch.setenv(f"ENGAGEMENT_{variable}", value)
    with pytest.raises(ValueError, match=f"ENGAGEMENT_{variable}=") as info:
        Settings.from_env()
    assert info.match(message)


def test_replay_command_uses_the_configured_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import orjson

    from stream_app.cli import main

    events = tmp_path / "events.jsonl"
    events.write_bytes(orjson.dumps({"event_id": "1", "type": "order_placed", "customer_id": "a",
                                     "occurred_at": "2024-03-01T00:00:00Z", "order_id": "o",
                                     "amount": 100}) + b"\n")
    as_of = ["--as-of", "2024-03-11T00:00:00Z"]
    assert main(["replay", str(events), *as_of]) == 0
    assert orjson.loads(capsys.readouterr().out)["customers"]["a"]["score"] == pytest.approx(20 * 2 ** (-10 / 30))
    monkeypatch.setenv("ENGAGEMENT_HALF_LIFE_DAYS", "10")
    assert main(["replay", str(events), *as_of]) == 0
    assert orjson.loads(capsys.readouterr().out)["customers"]["a"]["score"] == pytest.approx(10.0)
    monkeypatch.setenv("ENGAGEMENT_HALF_LIFE_DAYS", "0")
    assert main(["replay", str(events)]) == 2
    assert "ENGAGEMENT_HALF_LIFE_DAYS" in capsys.readouterr().err


def test_a_worker_with_a_bad_setting_exits_2_naming_the_variable(monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    from stream_app.cli import main

    monkeypatch.setenv("ENGAGEMENT_TIER_BOUNDS", "silver=60,gold=20,platinum=150")
    assert main(["worker"]) == 2
    assert "ENGAGEMENT_TIER_BOUNDS" in capsys.readouterr().err
