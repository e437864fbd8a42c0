"""One settings object from `ENGAGEMENT_*` environment variables (the README's table lists them).

Production defaults; the embedded broker mode and the tests use short group timeouts because the
bundled broker answers JoinGroup only after half the session timeout (NOTES-broker.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from typing import Any

from stream_app.engine import EngineConfig


@dataclass(frozen=True)
class Settings:
    #: `kafka://host:port,...`; empty = start the bundled broker on loopback
    broker: str = ""
    security_protocol: str = "PLAINTEXT"  # PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL
    sasl_mechanism: str = ""              # PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    app_id: str = "engagement-scorer"
    partitions: int = 8
    replication: int = 1
    topic_orders: str = "engagement.orders"
    topic_clicks: str = "engagement.clicks"
    topic_social: str = "engagement.social"
    topic_events: str = "engagement.events-by-customer"  # the re-keyed stream (processing units)
    topic_scores: str = "engagement.scores"
    topic_tier_changes: str = "engagement.tier-changes"
    topic_alerts: str = "engagement.alerts"
    topic_kpis: str = "engagement.kpis"
    topic_dead_letter: str = "engagement.dead-letter"
    store: str = "memory://"              # or rocksdb:// (rocksdict) for production: state on disk
    data_dir: str = "/tmp/engagement-scorer"
    web_host: str = "127.0.0.1"           # advertised to other workers (HTTP routing by key owner)
    web_bind: str = ""                    # listen address; empty = web_host (containers: 0.0.0.0)
    web_port: int = 6066
    currency: str = "GBP"
    session_timeout_s: float = 60.0
    heartbeat_interval_s: float = 3.0
    kpi_interval_s: float = 10.0
    batch_size: int = 1000
    #: state records per changelog record batch (0: as many as fit); the chaos suite sets it low so
    #: one partition's batch state spans several record batches
    changelog_batch_records: int = 0
    #: how long a fetch may wait for data; the bundled broker holds every fetch this long even
    #: when data arrives (measured: p50 415 ms at 1500 ms), so embedded mode uses 50
    fetch_max_wait_ms: int = 500
    log_level: str = "info"
    log_format: str = "text"              # text | json

    def __post_init__(self) -> None:
        if not self.store.startswith(("memory://", "rocksdb://")):
            raise ValueError(f"ENGAGEMENT_STORE={self.store!r}: use memory:// or rocksdb://")
        if self.partitions < 1:
            raise ValueError("ENGAGEMENT_PARTITIONS must be at least 1")

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"ENGAGEMENT_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(f.default)
            values[f.name] = kind(raw) if kind in (int, float) else raw
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ENGAGEMENT_* variables that reproduce these settings in another process."""
        return {f"ENGAGEMENT_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    @property
    def input_topics(self) -> dict[str, str]:
        """Short topic name -> configured Kafka topic."""
        return {"orders": self.topic_orders, "clicks": self.topic_clicks, "social": self.topic_social}

    def engine_config(self) -> EngineConfig:
        return EngineConfig(currency=self.currency)

    @property
    def bootstrap(self) -> str:
        """`host:port,...` as aiokafka wants it."""
        return ",".join(u.split("://", 1)[-1] for u in self.broker.split(",") if u)


def env_table() -> list[tuple[str, str, str]]:
    """(variable, default, type) for every setting: the README table is generated from this."""
    return [(f"ENGAGEMENT_{f.name.upper()}", "" if f.name == "sasl_password" else str(f.default),
             type(f.default).__name__) for f in fields(Settings)]


__all__ = ["Settings", "env_table"]
