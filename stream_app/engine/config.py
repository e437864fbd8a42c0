"""The engine's parameters (SPEC defaults). Injected, never read from the environment here.

Durations are integer microseconds like every engine instant (`clock`); windows are whole UTC days
(SPEC §2). `stream_app.config.Settings.engine_config()` builds one from `ENGAGEMENT_*` variables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from typing import Final

from stream_app.engine.clock import DAY, HOUR, MINUTE
from stream_app.engine.clv import ClvModel
from stream_app.engine.events import DEFAULT_CHANNELS, OTHER_CHANNEL

TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
BRONZE: Final = 0  # Final: constants in the compiled engine, not module-dict lookups
SILVER: Final = 1
GOLD: Final = 2
PLATINUM: Final = 3


class InvalidConfig(ValueError):
    """A parameter outside its domain; `field` names the EngineConfig field so that a shell can
    name its own setting (an environment variable) in the message."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class EngineConfig:
    half_life: int = 30 * DAY
    #: lower bounds on S, index = tier (bronze, silver, gold, platinum); bronze is always 0
    tier_bounds: tuple[float, ...] = (0.0, 20.0, 60.0, 150.0)
    demotion_factor: float = 0.8
    dedupe_horizon: int = 7 * DAY
    cart_timeout: int = 60 * MINUTE
    churn_after: int = 30 * DAY
    feedback_cooldown: int = 24 * HOUR
    negative_rating_max: int = 2
    negative_nps_max: int = 6
    order_window_days: int = 365
    activity_window_days: int = 30
    currency: str = "GBP"
    #: an event dated more than this after it was received is invalid (SPEC §1)
    future_tolerance: int = 24 * HOUR
    #: the configured channels (SPEC §1); any other channel counts as `other`
    channels: tuple[str, ...] = DEFAULT_CHANNELS
    #: the segment definitions (SPEC §10): a definitions file's text, None for the built-in ones;
    #: checked by the shell at start (`segment_defs.parse_segments`), compiled by `segments.segment_set`
    segments: str | None = None
    #: the predicted-lifetime-value model (SPEC §11), loaded and checked by the shell at start
    #: (`clv.load_model`); None: every record's `clv` is null
    clv_model: ClvModel | None = None
    #: H, the prediction's horizon in days (SPEC §11)
    clv_horizon_days: int = 365

    def __post_init__(self) -> None:
        b = self.tier_bounds
        if (len(b) != len(TIERS) or b[0] != 0 or not all(math.isfinite(x) for x in b)
                or any(lo >= hi for lo, hi in pairwise(b))):
            raise InvalidConfig("tier_bounds", f"must increase: bronze 0 < silver < gold < platinum, got {b}")
        for name in ("half_life", "dedupe_horizon", "cart_timeout", "churn_after"):
            if getattr(self, name) <= 0:
                raise InvalidConfig(name, "must be positive")
        if self.feedback_cooldown < 0:
            raise InvalidConfig("feedback_cooldown", "must not be negative")
        if not 0 < self.demotion_factor <= 1:
            raise InvalidConfig("demotion_factor", f"must lie in (0, 1], got {self.demotion_factor}")
        for name in ("order_window_days", "activity_window_days", "clv_horizon_days"):
            if getattr(self, name) < 1:
                raise InvalidConfig(name, "must be at least 1 day")
        if self.future_tolerance < 0:
            raise InvalidConfig("future_tolerance", "must not be negative")
        ch = self.channels
        if (not ch or len(set(ch)) != len(ch) or OTHER_CHANNEL in ch
                or any(not c or c != c.lower() or len(c) > 32 for c in ch)):
            raise InvalidConfig("channels", f"must be distinct, non-empty, lower-case names other than "
                                f"'{OTHER_CHANNEL}', at most 32 characters, got {ch}")
        cur = self.currency
        if len(cur) != 3 or not cur.isascii() or not cur.isalpha() or not cur.isupper():
            raise InvalidConfig("currency", f"must be a 3-letter upper-case currency code, got {cur!r}")


DEFAULT_CONFIG = EngineConfig()
