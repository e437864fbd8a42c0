"""Settings: ENGAGEMENT_* parsing, validation, and the README's table listing every variable."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stream_app.config import Settings, env_table

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
        Settings(store="redis://")
    assert Settings(store="rocksdb://").store == "rocksdb://"
    with pytest.raises(ValueError, match="PARTITIONS"):
        Settings(partitions=0)


def test_password_is_not_in_repr() -> None:
    assert "s3cret" not in repr(Settings(sasl_password="s3cret"))


def test_readme_lists_every_variable() -> None:
    documented = set(re.findall(r"^\| `(ENGAGEMENT_[A-Z_]+)` \|", README.read_text(), re.M))
    assert documented == {name for name, _, _ in env_table()}
