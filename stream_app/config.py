"""One settings object from `ENGAGEMENT_*` environment variables (the README's table lists them).

Production defaults; the embedded broker mode and the tests use short group timeouts because the
bundled broker answers JoinGroup only after half the session timeout (docs/BROKER.md).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args

from stream_app.engine import TIERS, EngineConfig, InvalidConfig
from stream_app.engine.clock import DAY, HOUR, MINUTE
from stream_app.engine.clv import ClvModel, ModelError, load_model
from stream_app.engine.segment_defs import SegmentError, parse_segments

#: the enumerated settings: `__post_init__` refuses any other value (the security protocol is
#: checked where the Kafka clients are configured, `kafka_io.client_options`)
Role = Literal["all", "ingest", "score"]
Store = Literal["memory://", "rocksdb://"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
LogFormat = Literal["text", "json"]
ROLES: tuple[Role, ...] = get_args(Role)
STORES: tuple[Store, ...] = get_args(Store)
#: ENGAGEMENT_LOG_LEVEL (any case; `warn` means `warning`) and ENGAGEMENT_LOG_FORMAT (any case)
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)


class SettingsError(ValueError):
    """An ENGAGEMENT_* variable with a value the scorer cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    #: `kafka://host:port,...`; empty = start the bundled broker on loopback
    broker: str = ""
    security_protocol: SecurityProtocol = "PLAINTEXT"
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
    topic_privacy: str = "engagement.privacy"  # erasure requests (SPEC §9)
    topic_events: str = "engagement.events-by-customer"  # the re-keyed stream (processing units)
    topic_scores: str = "engagement.scores"
    topic_tier_changes: str = "engagement.tier-changes"
    topic_alerts: str = "engagement.alerts"
    topic_kpis: str = "engagement.kpis"
    topic_segment_changes: str = "engagement.segment-changes"  # segments entered and left (SPEC §10)
    topic_dead_letter: str = "engagement.dead-letter"
    store: Store = "memory://"            # or rocksdb:// (rocksdict) for production: state on disk
    data_dir: str = "/tmp/engagement-scorer"
    web_host: str = "127.0.0.1"           # advertised to other workers (HTTP routing by key owner)
    web_bind: str = ""                    # listen address; empty = web_host (containers: 0.0.0.0)
    web_port: int = 6066
    #: bearer token that /customers/* and /kpis require (docs/SECURITY.md); empty = the API is open
    api_token: str = field(default="", repr=False)
    #: a file holding the token instead (a mounted Kubernetes Secret); set one of the two
    api_token_file: str = ""
    currency: str = "GBP"
    # -- the engine's numbers (SPEC defaults; `engine_config()` turns them into an EngineConfig) --
    half_life_days: float = 30.0          # score half-life H (SPEC §3)
    tier_bounds: str = "silver=20,gold=60,platinum=150"  # lower bounds on S; bronze is 0 (SPEC §5)
    demotion_factor: float = 0.8          # demote only below this × the current tier's bound
    order_window_days: int = 365          # orders_365d, revenue_365d and the store KPIs (§4, §7)
    activity_window_days: int = 30        # clicks_30d, social_30d (§4)
    cart_timeout_minutes: float = 60.0    # abandoned-cart timeout after a checkout (§6)
    churn_inactivity_days: float = 30.0   # churn_risk after this long without activity (§6)
    feedback_cooldown_hours: float = 24.0  # at most one negative_feedback alert per this (§6)
    dedupe_horizon_days: float = 7.0      # how long an applied event id is remembered (§2)
    future_tolerance_hours: float = 24.0  # an event dated further after its Kafka timestamp is invalid (§1)
    channels: str = "web,app,store,email,sms,push,social"  # other channels count as `other` (§1, §7)
    #: a segment definitions file (SPEC §10, schemas/input/segments_file.schema.json); empty = the
    #: built-in segments; a file `{"segments": []}` turns segments off
    segments_file: str = ""
    #: a lifetime-value model file (SPEC §11, schemas/input/clv_model.schema.json; `engagement fit`
    #: writes one); empty = no model: every record's `clv` is null
    clv_model_file: str = ""
    clv_horizon_days: int = 365           # H, the predicted CLV's horizon in days (§11)
    session_timeout_s: float = 60.0
    heartbeat_interval_s: float = 3.0
    kpi_interval_s: float = 10.0
    #: how often at most a worker publishes each changed partition's KPI partial (for the leader)
    kpi_partial_interval_ms: int = 250
    #: what this process runs: `all` (ingest + scoring + KPIs + HTTP), `ingest` (validation and
    #: re-keying only) or `score` (everything but ingest); two processes use both cores
    role: Role = "all"
    batch_size: int = 1000
    #: state records per changelog record batch (0: as many as fit); the chaos suite sets it low so
    #: one partition's batch state spans several record batches
    changelog_batch_records: int = 0
    #: how long a fetch may wait for data; the bundled broker holds every fetch this long even
    #: when data arrives (measured: p50 415 ms at 1500 ms), so embedded mode uses 50
    fetch_max_wait_ms: int = 500
    log_level: str = "info"
    log_format: LogFormat = "text"

    def __post_init__(self) -> None:
        store = next((kind for kind in STORES if self.store.startswith(kind)), None)
        if store is None:
            raise SettingsError(f"ENGAGEMENT_STORE={self.store!r}: use memory:// or rocksdb://")
        object.__setattr__(self, "store", store)  # one spelling: nothing after `//` is read
        if self.partitions < 1:
            raise SettingsError("ENGAGEMENT_PARTITIONS must be at least 1")
        if self.role not in ROLES:
            raise SettingsError(f"ENGAGEMENT_ROLE={self.role!r}: use one of {', '.join(ROLES)}")
        level = self.log_level.lower()
        if level not in LOG_LEVELS:
            raise SettingsError(f"ENGAGEMENT_LOG_LEVEL={self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        object.__setattr__(self, "log_level", "warning" if level == "warn" else level)  # one spelling
        if self.log_format.lower() not in LOG_FORMATS:
            raise SettingsError(f"ENGAGEMENT_LOG_FORMAT={self.log_format!r}: use one of {', '.join(LOG_FORMATS)}")
        object.__setattr__(self, "log_format", self.log_format.lower())
        object.__setattr__(self, "_segments_text", self._read_segments_file())  # read once, at start
        object.__setattr__(self, "_clv_model", self._load_clv_model())  # read once, at start
        self.engine_config()  # an invalid engine number or segment definition fails here, at start

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = os.environ.get(f"ENGAGEMENT_{f.name.upper()}")
            if raw is None:
                continue
            kind = type(f.default)
            try:
                values[f.name] = kind(raw) if kind in (int, float) else raw
            except ValueError:
                raise SettingsError(f"ENGAGEMENT_{f.name.upper()}={raw!r}: expected "
                                 f"{'an integer' if kind is int else 'a number'}") from None
        values.update(overrides)
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        """The ENGAGEMENT_* variables that reproduce these settings in another process."""
        return {f"ENGAGEMENT_{f.name.upper()}": str(getattr(self, f.name)) for f in fields(self)}

    def read_api_token(self) -> str | None:
        """The HTTP API's bearer token (from ENGAGEMENT_API_TOKEN or the file), None when unset.

        Read at worker start, so a missing or empty Secret file fails there, naming the variable.
        """
        if self.api_token and self.api_token_file:
            raise SettingsError("set ENGAGEMENT_API_TOKEN or ENGAGEMENT_API_TOKEN_FILE, not both")
        token, name = self.api_token, "ENGAGEMENT_API_TOKEN"
        if self.api_token_file:
            name = f"ENGAGEMENT_API_TOKEN_FILE={self.api_token_file!r}"
            try:
                with open(self.api_token_file, encoding="utf-8") as f:
                    token = f.read().strip()  # Secret files and `echo` leave a trailing newline
            except (OSError, UnicodeDecodeError) as exc:
                raise SettingsError(f"{name}: cannot read the token: {exc.__class__.__name__}") from None
            if not token:
                raise SettingsError(f"{name}: the file is empty")
        if not token:
            return None
        # an HTTP header value: printable ASCII without spaces (RFC 6750 b64token and more)
        if not all(33 <= ord(c) <= 126 for c in token):
            raise SettingsError(f"{name}: the token must be printable ASCII without spaces")
        return token

    @property
    def input_topics(self) -> dict[str, str]:
        """Short topic name -> configured Kafka topic."""
        return {"orders": self.topic_orders, "clicks": self.topic_clicks, "social": self.topic_social,
                "privacy": self.topic_privacy}

    def _read_segments_file(self) -> str | None:
        path = self.segments_file
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as exc:
            raise SettingsError(f"ENGAGEMENT_SEGMENTS_FILE={path!r}: cannot read it: "
                                f"{exc.strerror or exc.__class__.__name__}") from None
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SettingsError(f"ENGAGEMENT_SEGMENTS_FILE={path!r}: not UTF-8 text "
                                f"({exc.reason} at byte {exc.start})") from None

    def _load_clv_model(self) -> ClvModel | None:
        path = self.clv_model_file
        if not path:
            return None
        try:
            return load_model(path)
        except ModelError as exc:  # the message names the field (or the file)
            raise SettingsError(f"ENGAGEMENT_CLV_MODEL_FILE={path!r}: {exc}") from None

    @property
    def clv_model(self) -> ClvModel | None:
        """The lifetime-value model read at start (None: ENGAGEMENT_CLV_MODEL_FILE unset)."""
        model: ClvModel | None = getattr(self, "_clv_model", None)
        return model

    def engine_config(self) -> EngineConfig:
        """The engine's parameters; a ValueError naming the variable when one is invalid."""
        text: str | None = getattr(self, "_segments_text", None)
        channels = tuple(c.strip() for c in self.channels.split(","))
        try:
            config = EngineConfig(
                half_life=_micros("half_life_days", self.half_life_days, DAY),
                tier_bounds=parse_tier_bounds(self.tier_bounds),
                demotion_factor=self.demotion_factor,
                order_window_days=self.order_window_days,
                activity_window_days=self.activity_window_days,
                cart_timeout=_micros("cart_timeout_minutes", self.cart_timeout_minutes, MINUTE),
                churn_after=_micros("churn_inactivity_days", self.churn_inactivity_days, DAY),
                feedback_cooldown=_micros("feedback_cooldown_hours", self.feedback_cooldown_hours, HOUR),
                dedupe_horizon=_micros("dedupe_horizon_days", self.dedupe_horizon_days, DAY),
                currency=self.currency,
                future_tolerance=_micros("future_tolerance_hours", self.future_tolerance_hours, HOUR),
                channels=channels,
                segments=text,
                clv_model=self.clv_model,
                clv_horizon_days=self.clv_horizon_days,
            )
        except InvalidConfig as exc:
            name = _SETTING_OF_ENGINE_FIELD[exc.field]
            raise SettingsError(f"ENGAGEMENT_{name.upper()}={getattr(self, name)!r}: {exc.problem}") from None
        if text is not None:
            try:
                parse_segments(text, channels)
            except SegmentError as exc:
                raise SettingsError(f"ENGAGEMENT_SEGMENTS_FILE={self.segments_file!r}: {exc}") from None
        return config

    @property
    def bootstrap(self) -> str:
        """`host:port,...` as aiokafka wants it."""
        return ",".join(u.split("://", 1)[-1] for u in self.broker.split(",") if u)


#: EngineConfig field -> the setting it comes from (to name the variable in an error)
_SETTING_OF_ENGINE_FIELD = {
    "half_life": "half_life_days", "tier_bounds": "tier_bounds", "demotion_factor": "demotion_factor",
    "order_window_days": "order_window_days", "activity_window_days": "activity_window_days",
    "cart_timeout": "cart_timeout_minutes", "churn_after": "churn_inactivity_days",
    "feedback_cooldown": "feedback_cooldown_hours", "dedupe_horizon": "dedupe_horizon_days",
    "currency": "currency", "future_tolerance": "future_tolerance_hours", "channels": "channels",
    "segments": "segments_file", "clv_model": "clv_model_file", "clv_horizon_days": "clv_horizon_days",
}


def _micros(name: str, value: float, unit: int) -> int:
    """A duration setting in `unit`s -> engine microseconds; NaN and infinity are refused here."""
    if not math.isfinite(value):
        raise SettingsError(f"ENGAGEMENT_{name.upper()}={value!r}: must be a finite number")
    return round(value * unit)


def parse_tier_bounds(text: str) -> tuple[float, ...]:
    """`silver=20,gold=60,platinum=150` (any order, each tier once) -> (0, 20, 60, 150)."""
    named: dict[str, float] = {}
    for part in text.split(","):
        name, sep, number = part.partition("=")
        name = name.strip().lower()
        try:
            value = float(number) if sep else None
        except ValueError:
            value = None
        if value is None or name not in TIERS[1:] or name in named:
            break
        named[name] = value
    else:
        if len(named) == len(TIERS) - 1:
            return (0.0, *(named[t] for t in TIERS[1:]))
    raise SettingsError(f"ENGAGEMENT_TIER_BOUNDS={text!r}: expected silver=N,gold=N,platinum=N "
                     "(bronze is 0)")


def env_table() -> list[tuple[str, str, str]]:
    """(variable, default, type) for every setting: the README table is generated from this."""
    return [(f"ENGAGEMENT_{f.name.upper()}", "" if not f.repr else str(f.default),  # secrets: no default shown
             type(f.default).__name__) for f in fields(Settings)]


#: ENGAGEMENT_* variables read elsewhere, not settings: the engine's import (compiled.PURE_ENV),
#: the chaos suite's crash points (stream/failpoints.py) and the demo test's process marker
OTHER_VARIABLES = ("ENGAGEMENT_PURE_PYTHON", "ENGAGEMENT_FAILPOINT", "ENGAGEMENT_DEMO_TEST_MARKER")


def known_variables() -> tuple[str, ...]:
    return (*(name for name, _, _ in env_table()), *OTHER_VARIABLES)


def unknown_variable_warnings(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per ENGAGEMENT_* variable that nothing reads (a misspelling), with the nearest name."""
    env = os.environ if environ is None else environ
    known = known_variables()
    lines = []
    for name in sorted(env):
        if name.startswith("ENGAGEMENT_") and name not in known:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            lines.append(f"unknown setting {name}{hint}")
    return lines


# -- which settings a command reads (its --help lists them, with their defaults) ----------------
#: the connection to Kafka (stream/kafka_io.py: client_options)
KAFKA_SETTINGS = ("broker", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
                  "ssl_cafile")
#: the engine's numbers (`Settings.engine_config`)
ENGINE_SETTINGS = tuple(dict.fromkeys(_SETTING_OF_ENGINE_FIELD.values()))
#: the topics `produce` and `simulate` write to (`Settings.input_topics`)
INPUT_TOPIC_SETTINGS = ("topic_orders", "topic_clicks", "topic_social", "topic_privacy")
#: the topics `audit` reads back (and compares with a replay of topic_events)
OUTPUT_TOPIC_SETTINGS = ("topic_events", "topic_scores", "topic_tier_changes", "topic_alerts", "topic_kpis",
                         "topic_segment_changes")
ALL_SETTINGS = tuple(f.name for f in fields(Settings))


__all__ = ["Settings", "env_table", "parse_tier_bounds", "unknown_variable_warnings"]

#: The bundled broker's profile: it answers JoinGroup only after half the session timeout and
#: holds every fetch for its full wait (docs/BROKER.md), so the embedded mode, the demo, the tests
#: and the bench all use these. Apply with `dataclasses.replace(settings, **EMBEDDED_PROFILE)`.
EMBEDDED_PROFILE: dict[str, Any] = {"session_timeout_s": 2.0, "heartbeat_interval_s": 0.5, "fetch_max_wait_ms": 50}
