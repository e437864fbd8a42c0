"""The engine's parameters (SPEC defaults). Injected, never read from the environment here."""

from __future__ import annotations

from dataclasses import dataclass

from stream_app.engine.clock import DAY, HOUR, MINUTE

TIERS: tuple[str, ...] = ("bronze", "silver", "gold", "platinum")
BRONZE, SILVER, GOLD, PLATINUM = range(4)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    half_life: int = 30 * DAY
    #: lower bounds on S, index = tier (bronze, silver, gold, platinum)
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

    def __post_init__(self) -> None:
        if len(self.tier_bounds) != len(TIERS) or list(self.tier_bounds) != sorted(self.tier_bounds):
            raise ValueError("tier_bounds must give 4 ascending lower bounds")
        if self.half_life <= 0:
            raise ValueError("half_life must be positive")


DEFAULT_CONFIG = EngineConfig()
