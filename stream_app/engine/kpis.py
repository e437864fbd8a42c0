"""Store KPIs (SPEC §7) as mergeable per-unit partials.

Counts live in per-day buckets; distinct customers are counted without sets (DESIGN.md): a customer
has ≥ 1 order in the window iff its latest order day is in it, ≥ 2 iff its second-latest is. The
histograms `latest` and `second` (day -> customers) therefore give `customers` and
`repeat_customers` as suffix sums, and they add across partitions because every customer lives in
exactly one unit. (Its state record is `formats.kpi_state`.)

Over 300 lines: one class, whose histograms, erasure, merge and document read one set of day maps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from stream_app.engine.clock import SharedInt, day_of, format_optional
from stream_app.engine.events import DEFAULT_CHANNELS, OTHER_CHANNEL
from stream_app.engine.records import KpiDocument


class TopOrderDays(NamedTuple):
    """Day indexes of a customer's two latest order_placed events (-1 when fewer): it has ≥ 1
    order in a window iff `latest` is in it, ≥ 2 iff `second` is."""

    latest: int
    second: int


NO_ORDER_DAYS = TopOrderDays(-1, -1)


#: the seven SPEC §7 message counts, in the order of every message bucket
MESSAGE_FIELDS: tuple[str, ...] = (
    "email_sent", "email_opened", "email_clicked", "push_sent", "push_opened", "sms_sent", "sms_clicked",
)
#: the SPEC §7 feedback counts, in the order of every feedback bucket (rating_sum: for average_rating)
FEEDBACK_FIELDS: tuple[str, ...] = (
    "survey_responses", "promoters", "passives", "detractors", "reviews", "satisfied_reviews", "rating_sum",
)
_SURVEY, _PROMOTERS, _PASSIVES, _DETRACTORS, _REVIEWS, _SATISFIED, _RATING_SUM = range(7)

Hist = dict[int, int]


def _hist_move(hist: Hist, floor: int, old: int, new: int) -> None:
    """One customer's histogram entry moves from day `old` to day `new` (-1: none); days below
    `floor` have left every window and are not kept."""
    if old == new:
        return
    if old >= floor and old >= 0:
        left = hist[old] - 1
        if left:
            hist[old] = left
        else:
            del hist[old]
    if new >= floor and new >= 0:
        hist[new] = hist.get(new, 0) + 1


def _prune(d: dict[int, Any], floor: int) -> None:
    for day in [day for day in d if day < floor]:
        del d[day]


def _window_sum(hist: Hist, lo: int, hi: int) -> int:
    return sum(n for d, n in hist.items() if lo <= d <= hi)


def _window_sums(buckets: dict[int, list[int]], width: int, lo: int, hi: int) -> list[int]:
    """Field-wise sums of the integer day buckets in [lo, hi]."""
    sums = [0] * width
    for d, b in buckets.items():
        if lo <= d <= hi:
            for i, v in enumerate(b):
                sums[i] += v
    return sums


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


class KpiPartial:
    """One unit's part of the store KPIs. Day-bucketed counts, and histograms of one day per
    customer (its latest order day, second-latest order day, latest activity day, latest day per
    channel, second-latest of its per-channel days) that give distinct-customer counts for any
    window as sums, and that an erasure can subtract exactly (the customer keeps those days)."""

    __slots__ = ("activity_days", "active", "buckets", "by_channel", "channels", "feedback", "floor_day",
                 "floor_day_activity", "latest", "messages", "omni", "second", "segments", "window_days")

    def __init__(self, window_days: int = 365, activity_days: int = 30,
                 channels: tuple[str, ...] = DEFAULT_CHANNELS, segment_names: tuple[str, ...] = ()) -> None:
        self.window_days = window_days
        self.activity_days = activity_days
        self.channels = channels
        #: day -> [orders, guest_orders, identified_orders, revenue]
        self.buckets: dict[int, list[Any]] = {}
        self.latest: Hist = {}
        self.second: Hist = {}
        #: day -> the FEEDBACK_FIELDS counts (order window)
        self.feedback: dict[int, list[int]] = {}
        #: day -> the MESSAGE_FIELDS counts (activity window)
        self.messages: dict[int, list[int]] = {}
        self.active: Hist = {}
        self.by_channel: dict[str, Hist] = {}
        self.omni: Hist = {}
        #: days below these can never be in a window again (the watermark only moves forward)
        self.floor_day = -(10**9)
        self.floor_day_activity = -(10**9)
        #: segment -> customers holding it now (SPEC §10), every defined segment, in definition order
        self.segments: dict[str, int] = dict.fromkeys(segment_names, 0)

    # -- orders (order window) ---------------------------------------------------------------------
    def add_order(self, day: int, guest: bool, identified: bool, amount: float) -> None:
        if day < self.floor_day:
            return
        b = self.buckets.get(day)
        if b is None:
            b = self.buckets[day] = [0, 0, 0, 0.0]
        b[0] += 1
        if guest:
            b[1] += 1
        if identified:
            b[2] += 1
        b[3] += amount

    def add_refund(self, day: int, amount: float) -> None:
        if day < self.floor_day:
            return
        b = self.buckets.get(day)
        if b is None:
            b = self.buckets[day] = [0, 0, 0, 0.0]
        b[3] -= amount

    def add_order_day(self, top: TopOrderDays, day: SharedInt) -> TopOrderDays:
        """A customer with latest order days `top` placed an order on `day`: its new top days."""
        latest, second = top
        if day >= latest:
            new = TopOrderDays(day, latest)
        elif day > second:
            new = TopOrderDays(latest, day)
        else:
            return top
        self.move_customer(top, new)
        return new

    def move_customer(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        """A customer's (latest, second-latest) order days changed from `old` to `new`."""
        _hist_move(self.latest, self.floor_day, old[0], new[0])
        _hist_move(self.second, self.floor_day, old[1], new[1])

    # -- feedback (order window) -------------------------------------------------------------------
    def _feedback_bucket(self, day: int) -> list[int] | None:
        if day < self.floor_day:
            return None
        b = self.feedback.get(day)
        if b is None:
            b = self.feedback[day] = [0] * len(FEEDBACK_FIELDS)
        return b

    def add_survey(self, day: int, nps: int) -> None:
        b = self._feedback_bucket(day)
        if b is not None:
            b[_SURVEY] += 1
            b[_PROMOTERS if nps >= 9 else _PASSIVES if nps >= 7 else _DETRACTORS] += 1

    def add_review(self, day: int, rating: int) -> None:
        b = self._feedback_bucket(day)
        if b is not None:
            b[_REVIEWS] += 1
            if rating >= 4:
                b[_SATISFIED] += 1
            b[_RATING_SUM] += rating

    # -- messages and activity (activity window) ---------------------------------------------------
    def add_message(self, day: int, index: int) -> None:
        if day < self.floor_day_activity:
            return
        b = self.messages.get(day)
        if b is None:
            b = self.messages[day] = [0] * len(MESSAGE_FIELDS)
        b[index] += 1

    def move_active(self, old: int, new: int) -> None:
        """A customer's latest activity day moved (-1: none)."""
        _hist_move(self.active, self.floor_day_activity, old, new)

    def move_channel(self, channel: str, old: int, new: int) -> None:
        hist = self.by_channel.get(channel)
        if hist is None:
            hist = self.by_channel[channel] = {}
        _hist_move(hist, self.floor_day_activity, old, new)

    def move_omni(self, old: int, new: int) -> None:
        """A customer's second-latest per-channel activity day moved (-1: fewer than 2 channels)."""
        _hist_move(self.omni, self.floor_day_activity, old, new)

    # -- erasure (SPEC §9) -------------------------------------------------------------------------
    def forget_identified(self, day: int, orders: int) -> None:
        """An erased customer's `orders` on `day` stay orders but leave identified_orders."""
        b = self.buckets.get(day)
        if b is not None and day >= self.floor_day:
            b[2] -= orders

    def prune(self, watermark_day: int) -> None:
        floor = watermark_day - (self.window_days - 1)
        if floor > self.floor_day:
            self.floor_day = floor
            order_parts: tuple[dict[int, Any], ...] = (self.buckets, self.latest, self.second, self.feedback)
            for d in order_parts:
                _prune(d, floor)
        floor = watermark_day - (self.activity_days - 1)
        if floor > self.floor_day_activity:
            self.floor_day_activity = floor
            activity_parts: tuple[dict[int, Any], ...] = (self.messages, self.active, self.omni,
                                                          *self.by_channel.values())
            for d in activity_parts:
                _prune(d, floor)

    # -- merging and reading ---------------------------------------------------------------------
    def merge(self, other: KpiPartial) -> None:
        for mine_all, theirs_all in ((self.buckets, other.buckets), (self.feedback, other.feedback),
                                     (self.messages, other.messages)):
            for d, b in theirs_all.items():
                mine = mine_all.get(d)
                if mine is None:
                    mine_all[d] = list(b)
                else:
                    for i, v in enumerate(b):
                        mine[i] += v
        hists = [(self.latest, other.latest), (self.second, other.second), (self.active, other.active),
                 (self.omni, other.omni)]
        hists += [(self.by_channel.setdefault(ch, {}), h) for ch, h in other.by_channel.items()]
        for hist, theirs in hists:
            for d, n in theirs.items():
                hist[d] = hist.get(d, 0) + n
        mine_segments = self.segments
        for name, n in other.segments.items():
            if name in mine_segments:  # a partial made under other definitions keeps only shared names
                mine_segments[name] += n

    def document(self, as_of: int | None) -> KpiDocument:
        """The KPI document over the windows at `as_of` (None: no applied event yet)."""
        orders = guests = identified = customers = repeat = 0
        revenue = 0.0
        feedback = [0] * len(FEEDBACK_FIELDS)
        messages = [0] * len(MESSAGE_FIELDS)
        active = omni = 0
        by_channel = dict.fromkeys((*self.channels, OTHER_CHANNEL), 0)
        if as_of is not None:
            hi = day_of(as_of)
            lo = hi - (self.window_days - 1)
            for d in sorted(self.buckets):  # sorted: the float sum is the same in every mode
                if lo <= d <= hi:
                    b = self.buckets[d]
                    orders += b[0]
                    guests += b[1]
                    identified += b[2]
                    revenue += b[3]
            feedback = _window_sums(self.feedback, len(FEEDBACK_FIELDS), lo, hi)
            customers = _window_sum(self.latest, lo, hi)
            repeat = _window_sum(self.second, lo, hi)
            lo = hi - (self.activity_days - 1)
            messages = _window_sums(self.messages, len(MESSAGE_FIELDS), lo, hi)
            active = _window_sum(self.active, lo, hi)
            omni = _window_sum(self.omni, lo, hi)
            for ch, hist in self.by_channel.items():
                by_channel[ch] = _window_sum(hist, lo, hi)
        responses, promoters, passives, detractors, reviews, satisfied, rating_sum = feedback
        es, eo, ec, ps, po, ss, sc = messages  # MESSAGE_FIELDS order
        return {
            "as_of": format_optional(as_of),
            "window_days": self.window_days,
            "orders": orders,
            "guest_orders": guests,
            "identified_orders": identified,
            "revenue": revenue,
            "customers": customers,
            "repeat_customers": repeat,
            "guest_checkout_rate": _ratio(guests, orders),
            "average_order_value": _ratio(revenue, orders),
            "purchase_frequency": _ratio(identified, customers),
            "repeat_purchase_rate": _ratio(repeat, customers),
            "survey_responses": responses,
            "promoters": promoters,
            "passives": passives,
            "detractors": detractors,
            "nps": _ratio(100 * (promoters - detractors), responses),
            "reviews": reviews,
            "satisfied_reviews": satisfied,
            "csat": _ratio(satisfied, reviews),
            "average_rating": _ratio(rating_sum, reviews),
            "engagement_30d": {
                "window_days": self.activity_days,
                "email_sent": es,
                "email_opened": eo,
                "email_clicked": ec,
                "push_sent": ps,
                "push_opened": po,
                "sms_sent": ss,
                "sms_clicked": sc,
                "email_open_rate": _ratio(eo, es),
                "email_click_rate": _ratio(ec, es),
                "push_open_rate": _ratio(po, ps),
                "sms_click_rate": _ratio(sc, ss),
                "active_customers": active,
                "customers_by_channel": by_channel,
                "omnichannel_customers": omni,
                "omnichannel_rate": _ratio(omni, active),
            },
            "segments": dict(self.segments),
        }


def store_document(parts: Iterable[tuple[int | None, KpiPartial]], window_days: int,
                   activity_days: int = 30, channels: tuple[str, ...] = DEFAULT_CHANNELS,
                   segment_names: tuple[str, ...] = ()) -> KpiDocument:
    """The store KPI document from every unit's (watermark, partial), read at the largest
    watermark (None when no unit has applied an event). Partials add up because every customer
    lives in exactly one unit (SPEC §7)."""
    merged = KpiPartial(window_days, activity_days, channels, segment_names)
    as_of: int | None = None
    for watermark, partial in parts:
        merged.merge(partial)
        if watermark is not None and (as_of is None or watermark > as_of):
            as_of = watermark
    return merged.document(as_of)
