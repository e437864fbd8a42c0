"""The engine's output records, typed: what a unit hands its shell (`Outputs`, from `Unit.drain`)
and the records the shells publish or write.

The JSON Schemas in schemas/output/ stay the contract (docs/CONTRACT.md); these TypedDicts give
the same keys to the type checker (tests/unit/test_records_schema.py ties the two together). At run
time a TypedDict is a plain dict: key order, and so the published bytes, are the builders' own.
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict


class TierChange(TypedDict):
    """engagement.tier-changes (SPEC §5): schemas/output/tier_change.schema.json"""

    customer_id: str
    from_tier: str | None
    to_tier: str
    score: float
    at: str
    reason: str


class Alert(TypedDict):
    """engagement.alerts (SPEC §6): schemas/output/alert.schema.json"""

    alert_id: str
    type: str
    severity: str
    customer_id: str
    at: str
    details: dict[str, Any]


class EmailCounts(TypedDict):
    sent: int
    opened: int
    clicked: int


class PushCounts(TypedDict):
    sent: int
    opened: int


class SmsCounts(TypedDict):
    sent: int
    clicked: int


class Messages30d(TypedDict):
    email: EmailCounts
    push: PushCounts
    sms: SmsCounts


class CustomerRecord(TypedDict):
    """engagement.scores, the HTTP API and the replay (SPEC §4): customer_record.schema.json"""

    customer_id: str
    as_of: str
    score: float
    tier: str
    tier_since: str
    points: int
    orders_365d: int
    guest_orders_365d: int
    revenue_365d: float
    aov_365d: float | None
    orders_total: int
    revenue_total: float
    first_order_at: str | None
    last_order_at: str | None
    last_activity_at: str | None
    clicks_30d: int
    social_30d: int
    events_total: int
    channels_30d: list[str]
    messages_30d: Messages30d
    last_nps: int | None
    segments: list[str]
    clv: Clv | None


class Clv(TypedDict):
    """The record's `clv` (SPEC §11): clv.schema.json"""

    p_alive: float
    expected_orders: float
    expected_order_value: float
    predicted_clv: float
    horizon_days: int
    model_version: str


class Engagement30d(TypedDict):
    """The KPI document's `engagement_30d` (kpis.schema.json, $defs/engagement30d)."""

    window_days: int
    email_sent: int
    email_opened: int
    email_clicked: int
    push_sent: int
    push_opened: int
    sms_sent: int
    sms_clicked: int
    email_open_rate: float | None
    email_click_rate: float | None
    push_open_rate: float | None
    sms_click_rate: float | None
    active_customers: int
    customers_by_channel: dict[str, int]
    omnichannel_customers: int
    omnichannel_rate: float | None


class KpiDocument(TypedDict):
    """engagement.kpis, the HTTP API and the replay (SPEC §7): kpis.schema.json"""

    as_of: str | None
    window_days: int
    orders: int
    guest_orders: int
    identified_orders: int
    revenue: float
    customers: int
    repeat_customers: int
    guest_checkout_rate: float | None
    average_order_value: float | None
    purchase_frequency: float | None
    repeat_purchase_rate: float | None
    survey_responses: int
    promoters: int
    passives: int
    detractors: int
    nps: float | None
    reviews: int
    satisfied_reviews: int
    csat: float | None
    average_rating: float | None
    engagement_30d: Engagement30d
    segments: dict[str, int]


class SegmentChange(TypedDict):
    """engagement.segment-changes (SPEC §10): schemas/output/segment_change.schema.json"""

    customer_id: str
    segment: str
    change: str
    at: str
    reason: str


class Outputs(NamedTuple):
    """Everything a unit produced since the last `Unit.drain`, in the order produced."""

    tier_changes: list[TierChange]
    alerts: list[Alert]
    #: customers touched (their state and record changed); an erased one only if it came back
    changed: set[str]
    #: customer ids erased (SPEC §9), each applied customer_erased event once
    erased: list[str]
    #: the tiers the erased customers held (those the unit knew)
    erased_tiers: list[int]
    #: event ids remembered, (event_id, watermark after it), and forgotten, (event_id, None), in
    #: order; only after `Unit.log_ids` (empty otherwise)
    id_log: list[tuple[str, int | None]]
    #: segments entered and left (SPEC §10), in the order made
    segment_changes: list[SegmentChange]
