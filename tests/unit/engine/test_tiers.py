"""engine/tiers.py: tier_of and the one promote/demote rule (SPEC §5)."""

from __future__ import annotations

import math

import pytest

from stream_app.engine.config import BRONZE, DEFAULT_CONFIG, GOLD, PLATINUM, SILVER
from stream_app.engine.tiers import TierRule, tier_change, tier_of

BOUNDS = DEFAULT_CONFIG.tier_bounds
RULE = TierRule(BOUNDS, DEFAULT_CONFIG.demotion_factor)


@pytest.mark.parametrize(("score", "tier"), [
    (-5.0, BRONZE), (0.0, BRONZE), (19.999, BRONZE), (20.0, SILVER), (59.9, SILVER),
    (60.0, GOLD), (149.9, GOLD), (150.0, PLATINUM), (1e9, PLATINUM),
])
def test_tier_of_is_the_highest_bound_reached(score: float, tier: int) -> None:
    assert tier_of(score, BOUNDS) == tier


def test_promotion_as_soon_as_the_next_bound_is_reached_and_may_skip_tiers() -> None:
    assert RULE.change(BRONZE, 19.99) is None
    assert RULE.change(BRONZE, 20.0) == SILVER
    assert RULE.change(BRONZE, 200.0) == PLATINUM
    assert RULE.change(PLATINUM, 1e12) is None   # nothing above the top tier


def test_demotion_only_below_the_factor_times_the_current_bound() -> None:
    assert RULE.change(GOLD, 48.0) is None        # 0.8 × 60 = 48: not below
    assert RULE.change(GOLD, 47.99) == SILVER
    assert RULE.change(GOLD, 10.0) == BRONZE       # to tier_of(S), not one step
    assert RULE.change(SILVER, 16.0) is None and RULE.change(SILVER, 15.99) == BRONZE
    assert RULE.change(BRONZE, -100.0) is None    # nothing below bronze


def test_thresholds_need_no_special_cases() -> None:
    assert RULE.promote_at == (20.0, 60.0, 150.0, math.inf)
    assert RULE.demote_at == (-math.inf, 16.0, 48.0, 120.0)


def test_custom_bounds_and_factor() -> None:
    rule = TierRule((0.0, 5.0, 10.0, 15.0), 1.0)
    assert rule.first(12.0) == GOLD
    assert rule.change(GOLD, 9.99) == SILVER       # factor 1: no hysteresis band


def test_tier_change_record_publishes_max_zero_score() -> None:
    assert tier_change("a", None, BRONZE, -3.0, 0, "event") == {
        "customer_id": "a", "from_tier": None, "to_tier": "bronze", "score": 0.0,
        "at": "1970-01-01T00:00:00Z", "reason": "event"}
