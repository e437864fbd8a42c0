"""engine/apply.py and channels.py: the rule table (one rule per applicable type, by kind) and the fast paths that
replaced hand copies in the unit (today's activity bucket, the tier test)."""

from __future__ import annotations

from stream_app.engine import DEFAULT_CONFIG
from stream_app.engine.apply import Checkout, Click, Order, Refund, Review, Social, Survey, TypeRule, type_rules
from stream_app.engine.channels import Channels
from stream_app.engine.clock import DAY
from stream_app.engine.customer import Customer, add_activity_bucket, add_to_buckets
from stream_app.engine.events import (
    CLICKS,
    CUSTOMER_ERASED,
    MESSAGE_COUNTS,
    SENT_TYPES,
    SOCIAL,
    TOPIC_OF_TYPE,
)
from stream_app.engine.kpis import MESSAGE_FIELDS
from stream_app.engine.tiers import TierRule, tier_of


def test_every_applicable_type_has_the_rule_of_its_kind() -> None:
    channels = Channels(DEFAULT_CONFIG.channels)
    rules = type_rules(DEFAULT_CONFIG, channels)
    assert set(rules) == set(TOPIC_OF_TYPE) - {CUSTOMER_ERASED}
    kinds = {t: type(r) for t, r in rules.items()}
    assert kinds["order_placed"] is Order and kinds["order_refunded"] is Refund
    assert kinds["checkout_started"] is Checkout and kinds["review"] is Review
    assert kinds["survey_response"] is Survey
    for t, topic in TOPIC_OF_TYPE.items():
        if t in SENT_TYPES:
            assert kinds[t] is TypeRule and not rules[t].activity
        elif topic == CLICKS and t != "checkout_started":
            assert kinds[t] is Click and rules[t].activity
        elif topic == SOCIAL and t not in ("review", "survey_response"):
            assert kinds[t] is Social
    for t, (medium, count) in MESSAGE_COUNTS.items():
        assert MESSAGE_FIELDS[rules[t].message] == f"{medium}_{count}"
    assert rules["like"].channel == "social" and rules["page_view"].channel is None
    assert rules["like"].channel is channels.canonical["social"]


def test_channels_lower_case_known_names_and_map_the_rest_to_other() -> None:
    ch = Channels(("web", "app"))
    assert ch.of("WEB") == "web" and ch.of("fax") == "other" and ch.of("web") is ch.canonical["web"]
    assert ch.seen["WEB"] == "web"


def test_todays_activity_bucket_fast_path_matches_the_general_rule() -> None:
    day = 20_000
    for clicks, social in ((1, 0), (0, 1)):
        c = Customer("a", day * DAY)
        c.activity_buckets = [day - 1, 2, 3, day, 4, 5]
        add_activity_bucket(c, day, clicks, social, 30)
        b = [day - 1, 2, 3, day, 4, 5]
        add_to_buckets(b, day, (clicks, social), day - 29)
        assert c.activity_buckets == b


def test_tier_rule_change_is_the_threshold_test() -> None:
    rule = TierRule(DEFAULT_CONFIG.tier_bounds, DEFAULT_CONFIG.demotion_factor)
    for tier in range(4):
        for s in (-1.0, 0.0, 15.9, 16.0, 19.9, 20.0, 47.9, 48.0, 60.0, 119.9, 120.0, 150.0, 1e6):
            moves = s >= rule.promote_at[tier] or s < rule.demote_at[tier]
            assert rule.change(tier, s) == (tier_of(s, rule.bounds) if moves else None)
