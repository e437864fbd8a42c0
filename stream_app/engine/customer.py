"""Per-customer state: compact, O(1) score, window buckets bounded by the windows."""

from __future__ import annotations

import math
from array import array
from typing import Any, Final, NamedTuple

from stream_app.engine.clock import SharedInt, day_of, format_instant, format_instant_cached, format_optional_cached
from stream_app.engine.clv import predict
from stream_app.engine.config import TIERS, EngineConfig
from stream_app.engine.kpis import MESSAGE_FIELDS, NO_ORDER_DAYS, TopOrderDays
from stream_app.engine.records import Clv, CustomerRecord

LN2: Final = math.log(2.0)


class CartTimer(NamedTuple):
    """A pending abandoned-cart timer (SPEC §6), for the customer's latest checkout."""

    deadline: int
    checkout_event_id: str
    cart_id: str | None
    checkout_at: int


class AsOfBeforeClock(ValueError):
    """A record was asked for before the customer's clock: history before it is not kept (the
    score and the windows are folded into the clock), so that record cannot be computed."""

    def __init__(self, as_of: int, clock: int) -> None:
        super().__init__(f"as_of {format_instant(as_of)} is before the customer's clock "
                         f"{format_instant(clock)}")
        self.as_of = as_of
        self.clock = clock


class Customer:
    """State of one customer. Instants are microseconds; `t_ref` is the customer's clock.

    The score is kept as `(s_ref, t_ref)`: S(T) = s_ref · 2^(−(T − t_ref)/H) for T ≥ t_ref, where
    t_ref is the largest occurred_at applied, so decay factors are always ≤ 1 (DESIGN.md).
    """

    # in the order of the state record (formats.CUSTOMER_FIELDS; grouped by meaning, not sorted)
    __slots__ = (  # noqa: RUF023
        "customer_id", "s_ref", "t_ref", "points", "events_total", "orders_total", "revenue_total",
        "first_order_at", "last_order_at", "order_buckets", "activity_buckets", "tier",
        "tier_since", "top_order_days", "cart", "latest_checkout_at", "order_instants",
        "feedback_at", "churn_alerted", "due_day", "last_activity", "channel_days", "message_buckets",
        "last_nps", "last_nps_at", "segments", "order_day_values",
        # derived, not persisted (formats.DERIVED_FIELDS): what the next evaluation may skip
        "segments_live", "segments_quiet", "segments_tier_held", "segments_wait", "segments_wait_n",
        "segments_due",
    )

    def __init__(self, customer_id: str, t: int) -> None:
        self.customer_id = customer_id
        self.s_ref = 0.0
        self.t_ref = t
        self.points = 0
        self.events_total = 0
        self.orders_total = 0
        self.revenue_total = 0.0
        self.first_order_at: int | None = None
        self.last_order_at: int | None = None
        #: flat, day-ordered [day, orders, guest_orders, revenue, day, ...] within the order window
        self.order_buckets: list[Any] = []
        #: flat, day-ordered [day, clicks, social, ...] within the activity window
        self.activity_buckets: list[int] = []
        self.tier = -1  # -1 = no tier yet (before the first applied event)
        self.tier_since = t
        self.top_order_days = NO_ORDER_DAYS
        self.cart: CartTimer | None = None
        self.latest_checkout_at: int | None = None
        #: instants of applied orders at or after the latest checkout (late checkouts need them)
        self.order_instants: array[int] = array("q")
        self.feedback_at: int | None = None  # `at` of the last raised negative_feedback alert
        self.churn_alerted = False
        self.due_day = -1  # day index of the next sweep that must look at this customer
        #: largest occurred_at of the applied activity events (SPEC §1: not *_sent); None: none yet
        self.last_activity: int | None = None
        #: flat [channel, latest activity day, ...], one pair per channel seen (at most the
        #: configured channels and `other`): channels_30d and the KPI channel histograms
        self.channel_days: list[Any] = []
        #: flat, day-ordered [day, *MESSAGE_FIELDS counts, ...] in the activity window; None when
        #: the customer never got a message (most customers: saves an empty list each)
        self.message_buckets: list[int] | None = None
        self.last_nps: int | None = None
        self.last_nps_at: int | None = None
        #: the segments held (SPEC §10): bit i = the i-th definition (`segments.SegmentSet`)
        self.segments = 0
        #: flat, day-ordered [day, placed amount that day, ...] over every order_placed day (SPEC
        #: §11's purchase summary); None before the first order (most customers)
        self.order_day_values: list[Any] | None = None
        #: segments time alone may change (`SegmentSet.evaluate`); -1, all, until evaluated
        self.segments_live = -1
        #: segments held false by a predicate that no clicks-topic event can make true
        self.segments_quiet = 0
        #: segments held false by a tier predicate: only a tier change can make them true
        self.segments_tier_held = 0
        #: segments held false by a count short of its threshold, skipped by the next
        #: `segments_wait_n` - 1 events of the customer (none can raise the count enough)
        self.segments_wait = 0
        self.segments_wait_n = 0
        #: day index of the first midnight at which time alone may change a segment held or not
        #: (`SegmentSet.evaluate`); -1: none; 0: unknown (restored state), as early as any
        self.segments_due = 0

    @property
    def clock(self) -> int:
        """The customer's clock: the largest occurred_at of its applied events (SPEC §2)."""
        return self.t_ref

    def score_at(self, t: int, half_life: int) -> float:
        """S(t) for t ≥ t_ref (the raw, possibly negative sum)."""
        if t == self.t_ref:
            return self.s_ref
        return self.s_ref * math.exp(-(t - self.t_ref) / half_life * LN2)

    def window_orders(self, as_of: int, days: int) -> tuple[int, int, float]:
        lo = day_of(as_of) - (days - 1)
        b = self.order_buckets
        orders = guests = 0
        revenue = 0.0
        for i in range(0, len(b), 4):
            if b[i] >= lo:
                orders += b[i + 1]
                guests += b[i + 2]
                revenue += b[i + 3]
        return orders, guests, revenue

    def window_activity(self, as_of: int, days: int) -> tuple[int, int]:
        lo = day_of(as_of) - (days - 1)
        b = self.activity_buckets
        clicks = social = 0
        i = len(b) - 3
        while i >= 0 and b[i] >= lo:  # newest first: the buckets are day-ordered
            clicks += b[i + 1]
            social += b[i + 2]
            i -= 3
        return clicks, social

    def window_messages(self, as_of: int, days: int) -> list[int]:
        counts = [0] * len(MESSAGE_FIELDS)
        b = self.message_buckets
        if b:
            lo = day_of(as_of) - (days - 1)
            stride = len(MESSAGE_FIELDS) + 1
            for i in range(0, len(b), stride):
                if b[i] >= lo:
                    for k in range(len(MESSAGE_FIELDS)):
                        counts[k] += b[i + 1 + k]
        return counts

    def window_channels(self, as_of: int, days: int) -> list[str]:
        lo = day_of(as_of) - (days - 1)
        cd = self.channel_days
        return sorted(cd[i] for i in range(0, len(cd), 2) if cd[i + 1] >= lo)

    def read(self, as_of: int | None, cfg: EngineConfig, segments: list[str]) -> CustomerRecord:
        """The SPEC §4 customer record as of `as_of` (None: the customer's clock); `segments`:
        the names of the segments held (`SegmentSet.held(self.segments)`).

        Raises AsOfBeforeClock for an instant before the clock.
        """
        if as_of is None:
            as_of = self.t_ref
        elif as_of < self.t_ref:
            raise AsOfBeforeClock(as_of, self.t_ref)
        orders, guests, revenue = self.window_orders(as_of, cfg.order_window_days)
        clicks, social = self.window_activity(as_of, cfg.activity_window_days)
        es, eo, ec, ps, po, ss, sc = self.window_messages(as_of, cfg.activity_window_days)
        return {
            "customer_id": self.customer_id,
            "as_of": format_instant_cached(as_of),
            "score": max(0.0, self.score_at(as_of, cfg.half_life)),
            "tier": TIERS[self.tier],
            "tier_since": format_instant_cached(self.tier_since),
            "points": self.points,
            "orders_365d": orders,
            "guest_orders_365d": guests,
            "revenue_365d": revenue,
            "aov_365d": revenue / orders if orders else None,
            "orders_total": self.orders_total,
            "revenue_total": self.revenue_total,
            "first_order_at": format_optional_cached(self.first_order_at),
            "last_order_at": format_optional_cached(self.last_order_at),
            "last_activity_at": format_optional_cached(self.last_activity),
            "clicks_30d": clicks,
            "social_30d": social,
            "events_total": self.events_total,
            "channels_30d": self.window_channels(as_of, cfg.activity_window_days),
            "messages_30d": {"email": {"sent": es, "opened": eo, "clicked": ec},
                             "push": {"sent": ps, "opened": po}, "sms": {"sent": ss, "clicked": sc}},
            "last_nps": self.last_nps,
            "segments": segments,
            "clv": self.clv(as_of, cfg),
        }

    def clv(self, as_of: int, cfg: EngineConfig) -> Clv | None:
        """SPEC §11 at `as_of` (≥ the last order): None without a model or without an order."""
        model = cfg.clv_model
        od = self.order_day_values
        if model is None or od is None:
            return None
        first = od[0]
        x = len(od) // 2 - 1
        m = 0.0
        if x >= 1:
            total = 0.0
            for i in range(3, len(od), 2):
                total += od[i]
            m = total / x
        h = cfg.clv_horizon_days
        p = predict(model, x, float(od[-2] - first), float(day_of(as_of) - first), m, float(h))
        return {"p_alive": p.p_alive, "expected_orders": p.expected_orders,
                "expected_order_value": p.expected_order_value, "predicted_clv": p.predicted_clv,
                "horizon_days": h, "model_version": model.version}

    def snapshot(self, cfg: EngineConfig, segments: list[str]) -> CustomerRecord:
        """The record at the customer's clock: what the stream publishes on an update (SPEC §2)."""
        return self.read(None, cfg, segments)


def add_to_buckets(b: list[Any], day: SharedInt, values: tuple[Any, ...], lo: int) -> None:
    """Add `values` to `day`'s bucket in a flat, day-ordered list of [day, *values] records;
    drop the buckets before day `lo` (the window at the customer's clock has left them)."""
    if day < lo:
        return  # a late event outside every future window of this customer
    stride = len(values) + 1
    i = len(b) - stride
    while i >= 0 and b[i] > day:
        i -= stride
    if i >= 0 and b[i] == day:
        for k, v in enumerate(values, start=1):
            b[i + k] += v
    else:
        b[i + stride:i + stride] = [day, *values]
    if b[0] < lo:
        j = 0
        while j < len(b) and b[j] < lo:
            j += stride
        del b[:j]


def add_order_bucket(c: Customer, day: SharedInt, orders: int, guests: int, revenue: float,
                     window_days: int) -> None:
    add_to_buckets(c.order_buckets, day, (orders, guests, revenue), day_of(c.t_ref) - (window_days - 1))


def add_message_bucket(c: Customer, day: SharedInt, index: int, window_days: int) -> None:
    values = [0] * len(MESSAGE_FIELDS)
    values[index] = 1
    if c.message_buckets is None:
        c.message_buckets = []
    add_to_buckets(c.message_buckets, day, tuple(values), day_of(c.t_ref) - (window_days - 1))


def add_activity_bucket(c: Customer, day: SharedInt, clicks: int, social: int, window_days: int) -> None:
    b = c.activity_buckets
    if b and b[-3] == day:  # the common case: the day's bucket is the latest one
        b[-2] += clicks
        b[-1] += social
        return
    add_to_buckets(c.activity_buckets, day, (clicks, social), day_of(c.t_ref) - (window_days - 1))


__all__ = [
    "AsOfBeforeClock", "CartTimer", "Customer", "TopOrderDays", "add_activity_bucket",
    "add_message_bucket", "add_order_bucket", "add_to_buckets",
]


def add_order_day_value(c: Customer, day: SharedInt, amount: float) -> None:
    """An applied order_placed of `amount` on `day` (late ones included: §11 needs every day)."""
    od = c.order_day_values
    if od is None:
        c.order_day_values = [day, amount]
        return
    i = len(od) - 2
    while i >= 0 and od[i] > day:
        i -= 2
    if i >= 0 and od[i] == day:
        od[i + 1] += amount
    else:
        od[i + 2:i + 2] = [day, amount]
