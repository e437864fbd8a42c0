"""Alerts (SPEC §6): negative feedback, abandoned cart, churn risk, and their deterministic ids.

Each rule reads and updates the alert state kept on the customer (`feedback_at`, `cart`,
`latest_checkout_at`, `order_instants`, `churn_alerted`) and returns the alert record to publish,
or None. The unit decides when a rule runs (on an event, a timer, a sweep) and collects the records.
"""

from __future__ import annotations

import hashlib
from array import array
from typing import Any

from stream_app.engine.clock import DAY, format_instant
from stream_app.engine.config import GOLD, SILVER, TIERS, EngineConfig
from stream_app.engine.customer import CartTimer, Customer
from stream_app.engine.events import REVIEW, Event
from stream_app.engine.records import Alert

NEGATIVE_FEEDBACK = "negative_feedback"
ABANDONED_CART = "abandoned_cart"
CHURN_RISK = "churn_risk"


def alert_id(kind: str, customer_id: str, key: str) -> str:
    """Deterministic: the same input gives the same id, so consumers can de-duplicate."""
    digest = hashlib.blake2b(f"{kind}\x1f{customer_id}\x1f{key}".encode(), digest_size=16)
    return digest.hexdigest()


def alert(kind: str, severity: str, customer_id: str, at: int, details: dict[str, Any],
          key: str) -> Alert:
    """The `engagement.alerts` record; `key` and `at` tell apart alerts of one kind and customer."""
    return {
        "alert_id": alert_id(kind, customer_id, f"{key}\x1f{at}"),
        "type": kind,
        "severity": severity,
        "customer_id": customer_id,
        "at": format_instant(at),
        "details": details,
    }


def negative_feedback(c: Customer, ev: Event, cfg: EngineConfig) -> Alert | None:
    """A low review or survey score, unless the last one raised is within the cooldown.
    Runs after the event's tier evaluation: the severity uses the tier after the event."""
    if ev.type == REVIEW:
        if ev.rating > cfg.negative_rating_max:  # type: ignore[operator]
            return None
        detail: dict[str, Any] = {"event_id": ev.event_id, "rating": ev.rating}
    else:
        if ev.nps > cfg.negative_nps_max:  # type: ignore[operator]
            return None
        detail = {"event_id": ev.event_id, "nps": ev.nps}
    t = ev.occurred_at
    if c.feedback_at is not None and c.feedback_at > t - cfg.feedback_cooldown:
        return None  # exactly the cooldown apart is raised
    c.feedback_at = t
    severity = "high" if c.tier >= GOLD else "medium"
    return alert(NEGATIVE_FEEDBACK, severity, c.customer_id, t, detail, ev.event_id)


def checkout(c: Customer, ev: Event, timeout: int) -> CartTimer | None:
    """Apply a checkout_started to the customer's cart timer; return the timer to schedule."""
    t = ev.occurred_at
    latest = c.latest_checkout_at
    if latest is not None and t < latest:
        return None  # older than a checkout already applied: does nothing
    c.latest_checkout_at = t
    deadline = t + timeout
    instants = c.order_instants
    if instants and min(instants) < t:
        # orders before the latest checkout can never complete a later one
        c.order_instants = instants = array("q", [x for x in instants if x >= t])
    c.cart = None
    for x in instants:
        if x <= deadline:
            return None  # an already applied order lies in [t, t + timeout]
    c.cart = CartTimer(deadline, ev.event_id, ev.cart_id, t)
    return c.cart


def abandoned_cart(c: Customer) -> Alert:
    """Fire the customer's pending cart timer (its deadline has passed with no order)."""
    cart: CartTimer = c.cart  # type: ignore[assignment]
    c.cart = None
    return alert(ABANDONED_CART, "low", c.customer_id, cart.deadline, {
        "checkout_event_id": cart.checkout_event_id, "cart_id": cart.cart_id,
        "checkout_at": format_instant(cart.checkout_at),
    }, cart.checkout_event_id)


def churn_risk(c: Customer, midnight: int, cfg: EngineConfig) -> Alert | None:
    """At a sweep: silver or higher and inactive for the churn period, once per inactivity spell."""
    last = c.last_activity
    if c.tier < SILVER or c.churn_alerted or last is None or last > midnight - cfg.churn_after:
        return None
    c.churn_alerted = True
    return alert(CHURN_RISK, "high" if c.tier >= GOLD else "medium", c.customer_id, midnight, {
        "last_activity_at": format_instant(last),
        "days_inactive": (midnight - last) // DAY,
        "tier": TIERS[c.tier],
    }, str(midnight))
