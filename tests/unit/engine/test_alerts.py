"""engine/alerts.py: the three alert rules on a customer, and deterministic alert ids."""

from __future__ import annotations

from array import array

from stream_app.engine.alerts import (
    abandoned_cart,
    alert_id,
    checkout,
    churn_risk,
    negative_feedback,
)
from stream_app.engine.clock import DAY, HOUR, MINUTE, format_instant
from stream_app.engine.config import DEFAULT_CONFIG, GOLD, SILVER
from stream_app.engine.customer import CartTimer, Customer
from stream_app.engine.events import TOPIC_OF_TYPE, Event

T0 = 19_800 * DAY


def ev(eid: str, etype: str, t: int, **kw: object) -> Event:
    return Event(eid, etype, TOPIC_OF_TYPE[etype], "alice", t, **kw)  # type: ignore[arg-type]


def test_alert_ids_are_deterministic_and_tell_alerts_apart() -> None:
    assert alert_id("churn_risk", "a", "1") == alert_id("churn_risk", "a", "1")
    assert len({alert_id("churn_risk", "a", "1"), alert_id("churn_risk", "b", "1"),
                alert_id("churn_risk", "a", "2"), alert_id("negative_feedback", "a", "1")}) == 4


def test_negative_feedback_thresholds_and_cooldown() -> None:
    c = Customer("alice", T0)
    c.tier = GOLD
    assert negative_feedback(c, ev("r3", "review", T0, rating=3), DEFAULT_CONFIG) is None
    a = negative_feedback(c, ev("r2", "review", T0, rating=2), DEFAULT_CONFIG)
    assert a is not None and a["severity"] == "high" and a["details"] == {"event_id": "r2", "rating": 2}
    assert negative_feedback(c, ev("s6", "survey_response", T0 + 24 * HOUR - 1, nps=6), DEFAULT_CONFIG) is None
    a = negative_feedback(c, ev("s6b", "survey_response", T0 + 24 * HOUR, nps=6), DEFAULT_CONFIG)
    assert a is not None and a["at"] == format_instant(T0 + 24 * HOUR)
    assert negative_feedback(c, ev("s7", "survey_response", T0 + 9 * DAY, nps=7), DEFAULT_CONFIG) is None


def test_checkout_sets_a_timer_unless_an_order_already_completes_it() -> None:
    c = Customer("alice", T0)
    assert checkout(c, ev("co", "checkout_started", T0, cart_id="k"), HOUR) == CartTimer(
        T0 + HOUR, "co", "k", T0)
    assert checkout(c, ev("old", "checkout_started", T0 - 1), HOUR) is None   # older: nothing
    assert c.cart is not None and c.cart.checkout_event_id == "co"
    c.order_instants = array("q", [T0 - MINUTE, T0 + 2 * HOUR + 30 * MINUTE])
    assert checkout(c, ev("co2", "checkout_started", T0 + 2 * HOUR), HOUR) is None
    assert c.cart is None and list(c.order_instants) == [T0 + 2 * HOUR + 30 * MINUTE]


def test_abandoned_cart_fires_the_pending_timer_at_its_deadline() -> None:
    c = Customer("alice", T0)
    c.cart = CartTimer(T0 + HOUR, "co", None, T0)
    a = abandoned_cart(c)
    assert c.cart is None and a["at"] == format_instant(T0 + HOUR) and a["severity"] == "low"
    assert a["details"] == {"checkout_event_id": "co", "cart_id": None, "checkout_at": format_instant(T0)}


def test_churn_risk_once_per_spell_for_silver_and_up() -> None:
    c = Customer("alice", T0)
    c.last_activity = T0
    c.tier = SILVER
    assert churn_risk(c, T0 + 30 * DAY - 1, DEFAULT_CONFIG) is None
    a = churn_risk(c, T0 + 30 * DAY, DEFAULT_CONFIG)
    assert a is not None and a["severity"] == "medium" and a["details"]["days_inactive"] == 30
    assert churn_risk(c, T0 + 31 * DAY, DEFAULT_CONFIG) is None      # same spell
    bronze = Customer("bob", T0)
    bronze.tier = 0
    assert churn_risk(bronze, T0 + 90 * DAY, DEFAULT_CONFIG) is None
