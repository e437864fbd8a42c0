"""Validated input events and the SPEC §1/§3 tables: which types each topic carries, weights, points."""

from __future__ import annotations

import math
from typing import Final, NamedTuple

# Final: the compiled engine uses them as constants (a plain module global is a dict lookup, and
# `ev.type == CUSTOMER_ERASED` runs for every event)
ORDERS: Final = "orders"
CLICKS: Final = "clicks"
SOCIAL: Final = "social"
PRIVACY: Final = "privacy"
TOPICS: tuple[str, ...] = (ORDERS, CLICKS, SOCIAL, PRIVACY)

ORDER_PLACED: Final = "order_placed"
ORDER_REFUNDED: Final = "order_refunded"
CHECKOUT_STARTED: Final = "checkout_started"
REVIEW: Final = "review"
SURVEY_RESPONSE: Final = "survey_response"
EMAIL_SENT: Final = "email_sent"
PUSH_SENT: Final = "push_sent"
SMS_SENT: Final = "sms_sent"
EMAIL_OPEN: Final = "email_open"
EMAIL_CLICK: Final = "email_click"
PUSH_OPEN: Final = "push_open"
SMS_CLICK: Final = "sms_click"
CUSTOMER_ERASED: Final = "customer_erased"

TYPES_BY_TOPIC: dict[str, tuple[str, ...]] = {
    ORDERS: (ORDER_PLACED, ORDER_REFUNDED),
    CLICKS: (
        "page_view", "product_view", "search", "add_to_cart", CHECKOUT_STARTED,
        EMAIL_OPEN, EMAIL_CLICK, PUSH_OPEN, SMS_CLICK, EMAIL_SENT, PUSH_SENT, SMS_SENT,
    ),
    SOCIAL: ("follow", "like", "share", "comment", REVIEW, "referral", SURVEY_RESPONSE),
    PRIVACY: (CUSTOMER_ERASED,),
}
TOPIC_OF_TYPE: dict[str, str] = {t: topic for topic, ts in TYPES_BY_TOPIC.items() for t in ts}

#: SPEC §3 fixed weights and points (orders depend on the amount: see `weight` and `points`).
FIXED_WEIGHTS: dict[str, float] = {
    "page_view": 0.1, "product_view": 0.2, "search": 0.2, "add_to_cart": 1.0,
    CHECKOUT_STARTED: 2.0, "email_open": 0.5, "email_click": 1.0, "push_open": 0.5,
    "sms_click": 1.0, "follow": 3.0, "like": 0.5, "share": 2.0, "comment": 1.5, REVIEW: 4.0,
    "referral": 8.0, SURVEY_RESPONSE: 2.0, EMAIL_SENT: 0.0, PUSH_SENT: 0.0, SMS_SENT: 0.0,
}
FIXED_POINTS: dict[str, int] = {
    REVIEW: 50, "referral": 200, "follow": 20, "share": 10, SURVEY_RESPONSE: 10,
}
#: outbound messages (SPEC §1): applied, but not the customer's activity
SENT_TYPES: frozenset[str] = frozenset((EMAIL_SENT, PUSH_SENT, SMS_SENT))
#: types that never move last_activity_at nor count in clicks_30d / channels_30d (SPEC §1)
NOT_ACTIVITY: frozenset[str] = SENT_TYPES | {CUSTOMER_ERASED}
#: the SPEC §4 `messages_30d` / §7 message counts: type -> (medium, count name)
MESSAGE_COUNTS: dict[str, tuple[str, str]] = {
    EMAIL_SENT: ("email", "sent"), EMAIL_OPEN: ("email", "opened"), EMAIL_CLICK: ("email", "clicked"),
    PUSH_SENT: ("push", "sent"), PUSH_OPEN: ("push", "opened"),
    SMS_SENT: ("sms", "sent"), SMS_CLICK: ("sms", "clicked"),
}
#: the configured channels' default (SPEC §1); anything else counts as OTHER_CHANNEL
DEFAULT_CHANNELS: tuple[str, ...] = ("web", "app", "store", "email", "sms", "push", "social")
OTHER_CHANNEL = "other"
_TYPE_CHANNEL: dict[str, str] = {
    **{t: "email" for t in (EMAIL_SENT, EMAIL_OPEN, EMAIL_CLICK)},
    **{t: "push" for t in (PUSH_SENT, PUSH_OPEN)},
    **{t: "sms" for t in (SMS_SENT, SMS_CLICK)},
    **{t: "social" for t in TYPES_BY_TOPIC[SOCIAL]},
}


def channel_of(ev_type: str, channel: str | None, channels: frozenset[str] | tuple[str, ...]) -> str | None:
    """SPEC §1 channel of an event: its `channel` lower-cased when present and not empty, else the
    type's own, else None; outside the configured `channels` it is `other`."""
    ch = channel.lower() if channel else _TYPE_CHANNEL.get(ev_type)
    if ch is None:
        return None
    return ch if ch in channels else OTHER_CHANNEL


#: an order's weight counts its amount only up to this (SPEC §3)
ORDER_AMOUNT_CAP: Final = 400.0


class Event(NamedTuple):
    """One accepted event. `occurred_at` is in microseconds (see `clock`); `topic` is short."""

    event_id: str
    type: str
    topic: str
    customer_id: str | None
    occurred_at: int
    channel: str | None = None
    schema_version: int = 1
    order_id: str | None = None
    amount: float = 0.0
    guest: bool = False
    cart_id: str | None = None
    rating: int | None = None
    nps: int | None = None
    referred_customer_id: str | None = None

    @property
    def unit_key(self) -> str:
        """The re-keying key (SPEC §2): customer_id, or order_id for anonymous guest orders."""
        return self.customer_id if self.customer_id is not None else self.order_id  # type: ignore[return-value]


def weight(ev: Event) -> float:
    """SPEC §3 weight `w` of an applied event in the decayed score."""
    etype = ev.type
    if etype == ORDER_PLACED:
        return 10.0 + min(ev.amount, ORDER_AMOUNT_CAP) / 10.0
    if etype == ORDER_REFUNDED:
        return -min(ev.amount, ORDER_AMOUNT_CAP) / 10.0
    return FIXED_WEIGHTS[etype]


def points(ev: Event) -> int:
    """SPEC §3 loyalty points an applied event adds (negative for a refund)."""
    etype = ev.type
    if etype == ORDER_PLACED:
        return math.floor(ev.amount)
    if etype == ORDER_REFUNDED:
        return -math.floor(ev.amount)
    return FIXED_POINTS.get(etype, 0)
