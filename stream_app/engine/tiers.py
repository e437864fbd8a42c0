"""Tiers (SPEC §5): `tier_of(S)` and the one promote/demote rule, with its thresholds precomputed.

Tiers are indices into `config.TIERS` (0 = bronze). Promotion happens as soon as S reaches the next
tier's lower bound; demotion only once S falls below `demotion_factor ×` the current tier's bound
(a hysteresis band, so a customer near a bound does not flap).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from stream_app.engine.clock import format_last
from stream_app.engine.config import BRONZE, TIERS
from stream_app.engine.records import TierChange


def tier_of(score: float, bounds: Sequence[float]) -> int:
    """The highest tier whose lower bound is ≤ score; bronze when score < 0."""
    tier = BRONZE
    for i in range(1, len(bounds)):
        if score >= bounds[i]:
            tier = i
    return tier


class TierRule:
    """Per tier: the score at or above which it promotes, and below which it demotes.

    `promote_at[top]` is +inf and `demote_at[bronze]` is −inf, so the test
    `s >= promote_at[tier] or s < demote_at[tier]` needs no special cases; hot paths read the two
    tuples directly.
    """

    __slots__ = ("bounds", "demote_at", "promote_at")

    def __init__(self, bounds: Sequence[float], demotion_factor: float) -> None:
        self.bounds: tuple[float, ...] = tuple(bounds)
        self.promote_at: tuple[float, ...] = self.bounds[1:] + (math.inf,)
        self.demote_at: tuple[float, ...] = (-math.inf,) + tuple(b * demotion_factor for b in self.bounds[1:])

    def first(self, score: float) -> int:
        """The tier a customer's first applied event gives it."""
        return tier_of(score, self.bounds)

    def change(self, tier: int, score: float) -> int | None:
        """The tier to move to from `tier` at `score`, or None to stay."""
        if score >= self.promote_at[tier] or score < self.demote_at[tier]:
            return tier_of(score, self.bounds)
        return None


def tier_change(customer_id: str, from_tier: int | None, to_tier: int, score: float, at: int,
                reason: str) -> TierChange:
    """The `engagement.tier-changes` record (SPEC §5); the published score is max(0, S)."""
    return {
        "customer_id": customer_id,
        "from_tier": None if from_tier is None else TIERS[from_tier],
        "to_tier": TIERS[to_tier],
        "score": max(0.0, score),
        "at": format_last(at),
        "reason": reason,
    }
