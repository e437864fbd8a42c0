"""Segments (SPEC §10), evaluated: a customer's membership at an instant, the changes it makes,
and the next midnight at which a predicate may change without an event.

Definitions are parsed and checked in `segment_defs.py`; `segment_set(config)` compiles the ones a
configuration names (`EngineConfig.segments`: a definitions file's text, None for the built-in
ones) once per configuration. Membership is a bit mask in definition order, held per customer.
Field values are computed only when a predicate reads them, once per evaluation.

Between two events of a customer a predicate can change only at a midnight, and only because a
`days_since_*` count crosses its threshold, a day bucket leaves a window, or the decayed score
crosses a threshold (the tier changes only at a sweep, which evaluates the customer anyway):
`next_change_day` gives the first such midnight, never later than the real one (earlier is
harmless: the evaluation there changes nothing and schedules the next).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from stream_app.engine.clock import DAY, format_instant
from stream_app.engine.config import EngineConfig
from stream_app.engine.customer import Customer
from stream_app.engine.records import SegmentChange
from stream_app.engine.segment_defs import (
    ACTIVITY_WINDOW_FIELDS,
    AOV_365D,
    BUILTIN_SOURCE,
    CHANNEL_COUNT_30D,
    CHANNEL_FIELDS,
    CHANNELS_30D,
    CLICKS_30D,
    COMPARISONS,
    DAYS_SINCE_LAST_ACTIVITY,
    DAYS_SINCE_LAST_ORDER,
    EVENTS_TOTAL,
    FIELD_NAMES,
    GUEST_ORDERS_365D,
    LAST_NPS,
    ORDER_WINDOW_FIELDS,
    ORDERS_365D,
    ORDERS_TOTAL,
    POINTS,
    REVENUE_365D,
    REVENUE_TOTAL,
    SCORE,
    SOCIAL_30D,
    Segment,
    holds,
    parse_segments,
)

LN2 = math.log(2.0)
#: a field value not computed yet in this evaluation
_UNSET: Any = object()


@functools.lru_cache(maxsize=32)
def segment_set(config: EngineConfig) -> SegmentSet:
    """The compiled definitions `config` names (its text was checked at start: `Settings`)."""
    text = BUILTIN_SOURCE if config.segments is None else config.segments
    return SegmentSet(parse_segments(text, config.channels), config.order_window_days,
                      config.activity_window_days, config.half_life)


def segment_change(customer_id: str, segment: str, entered: bool, at: int, reason: str) -> SegmentChange:
    """The `engagement.segment-changes` record (SPEC §10)."""
    return {"customer_id": customer_id, "segment": segment, "change": "entered" if entered else "left",
            "at": format_instant(at), "reason": reason}


# -- evaluation ------------------------------------------------------------------------------------
class SegmentSet:
    """The configured definitions, compiled, with what evaluation needs to know about them."""

    def __init__(self, segments: tuple[Segment, ...], order_window_days: int, activity_window_days: int,
                 half_life: int) -> None:
        self.segments = segments
        self.names = tuple(s.name for s in segments)
        fields: set[int] = set()
        for s in segments:
            fields |= s.fields
        self.fields = frozenset(fields)
        self.order_window_days = order_window_days
        self.activity_window_days = activity_window_days
        self.half_life = half_life
        #: thresholds per time-dependent field: where a sweep may have to look again
        self.score_thresholds = tuple(sorted({p.number for s in segments for p in s.when
                                              if p.field == SCORE and p.op in COMPARISONS}))
        self.order_days = tuple(sorted({p.number for s in segments for p in s.when
                                        if p.field == DAYS_SINCE_LAST_ORDER and p.op in COMPARISONS}))
        self.activity_days = tuple(sorted({p.number for s in segments for p in s.when
                                           if p.field == DAYS_SINCE_LAST_ACTIVITY and p.op in COMPARISONS}))
        self.uses_order_window = bool(self.fields & ORDER_WINDOW_FIELDS)
        self.uses_activity_window = bool(self.fields & ACTIVITY_WINDOW_FIELDS)
        self.uses_channels = bool(self.fields & CHANNEL_FIELDS)
        #: some predicate may change without an event (else no customer needs the sweep index)
        self.timed = bool(self.score_thresholds or self.order_days or self.activity_days
                          or self.uses_order_window or self.uses_activity_window or self.uses_channels)

    def __len__(self) -> int:
        return len(self.segments)

    def _fill(self, c: Customer, t: int, field: int, v: list[Any]) -> Any:
        """Compute `field` at instant `t` into `v` (with the fields computed alongside it)."""
        if field == SCORE:
            s = c.s_ref if t == c.t_ref else c.s_ref * math.exp(-(t - c.t_ref) / self.half_life * LN2)
            v[SCORE] = max(0.0, s)  # as Customer.score_at and the record compute it
        elif field in ORDER_WINDOW_FIELDS:
            orders, guests, revenue = c.window_orders(t, self.order_window_days)
            v[ORDERS_365D], v[GUEST_ORDERS_365D], v[REVENUE_365D] = orders, guests, revenue
            v[AOV_365D] = revenue / orders if orders else None
        elif field in ACTIVITY_WINDOW_FIELDS:
            v[CLICKS_30D], v[SOCIAL_30D] = c.window_activity(t, self.activity_window_days)
        elif field in CHANNEL_FIELDS:
            chans = c.window_channels(t, self.activity_window_days)
            v[CHANNELS_30D] = chans
            v[CHANNEL_COUNT_30D] = len(chans)
        elif field == DAYS_SINCE_LAST_ORDER:
            lo = c.last_order_at
            v[field] = None if lo is None else t // DAY - lo // DAY
        elif field == DAYS_SINCE_LAST_ACTIVITY:
            la = c.last_activity
            v[field] = None if la is None else t // DAY - la // DAY
        elif field == POINTS:
            v[field] = c.points
        elif field == ORDERS_TOTAL:
            v[field] = c.orders_total
        elif field == REVENUE_TOTAL:
            v[field] = c.revenue_total
        elif field == EVENTS_TOTAL:
            v[field] = c.events_total
        elif field == LAST_NPS:
            v[field] = c.last_nps
        else:  # TIER: the tier held (after the tier evaluation at t)
            v[field] = c.tier
        return v[field]

    def values(self, c: Customer, t: int) -> list[Any]:
        """Every field's value at instant `t` (§10), in FIELD_NAMES order."""
        v: list[Any] = [_UNSET] * len(FIELD_NAMES)
        for f in range(len(FIELD_NAMES)):
            if v[f] is _UNSET:
                self._fill(c, t, f, v)
        return v

    def membership(self, c: Customer, t: int) -> int:
        """Bit i set: the customer satisfies segment i at instant `t` (its tier as held). A field
        is computed when a predicate first reads it; a segment stops at its first false one."""
        v: list[Any] = [_UNSET] * len(FIELD_NAMES)
        bits = 0
        bit = 1
        for seg in self.segments:
            inside = True
            for p in seg.when:
                x = v[p.field]
                if x is _UNSET:
                    x = self._fill(c, t, p.field, v)
                if not holds(p, x):
                    inside = False
                    break
            if inside:
                bits |= bit
            bit <<= 1
        return bits

    def evaluate(self, c: Customer, at: int, reason: str, counts: dict[str, int],
                 out: list[SegmentChange]) -> None:
        """SPEC §10: re-evaluate the customer at `at`; enter and leave, in definition order, each
        change counted in `counts` (the KPI partial's) and appended to `out`."""
        bits = self.membership(c, at)
        diff = bits ^ c.segments
        if diff:
            cid = c.customer_id
            for i, name in enumerate(self.names):
                if diff >> i & 1:
                    entered = bits >> i & 1 == 1
                    counts[name] += 1 if entered else -1
                    out.append(segment_change(cid, name, entered, at, reason))
            c.segments = bits

    def leave_all(self, c: Customer, at: int, counts: dict[str, int], out: list[SegmentChange]) -> None:
        """SPEC §10 erasure: the customer leaves every segment it holds, at `at` (the watermark)."""
        bits = c.segments
        if bits:
            for i, name in enumerate(self.names):
                if bits >> i & 1:
                    counts[name] -= 1
                    out.append(segment_change(c.customer_id, name, False, at, "erasure"))
            c.segments = 0

    def held(self, bits: int) -> list[str]:
        """The sorted names of the segments in a membership mask (the record's `segments`)."""
        if not bits:
            return []
        return sorted(name for i, name in enumerate(self.names) if bits >> i & 1)

    def next_change_day(self, c: Customer, after_day: int) -> int:
        """Day index of the first midnight after day `after_day` at which a predicate may change
        without a new event (-1: none); never later than the real change."""
        best = -1
        lo = c.last_order_at
        if lo is not None:
            best = _first_crossing(lo // DAY, self.order_days, after_day, best)
        la = c.last_activity
        if la is not None:
            best = _first_crossing(la // DAY, self.activity_days, after_day, best)
        if self.uses_order_window:
            best = _leaves_window(c.order_buckets, 4, self.order_window_days, after_day, best)
        if self.uses_activity_window:
            best = _leaves_window(c.activity_buckets, 3, self.activity_window_days, after_day, best)
        if self.uses_channels:
            cd = c.channel_days
            w = self.activity_window_days
            for i in range(1, len(cd), 2):
                leave = cd[i] + w
                if leave > after_day and (best < 0 or leave < best):
                    best = leave
        if self.score_thresholds and c.s_ref > 0:
            best = self._score_crossing(c, after_day, best)
        return best

    def _score_crossing(self, c: Customer, after_day: int, best: int) -> int:
        s_now = c.s_ref * math.exp(-(max(after_day * DAY, c.t_ref) - c.t_ref) / self.half_life * math.log(2.0))
        for theta in reversed(self.score_thresholds):
            # round(S, 9) reaches 0 once S < 5e-10: a threshold of 0 is crossed there
            level = theta if theta > 0 else 5e-10
            if level >= s_now:
                continue  # below it already: decay only lowers the score
            cross = c.t_ref + self.half_life * math.log2(c.s_ref / level)
            day = int(cross) // DAY  # the midnight at or before the crossing: the float may err
            if day <= after_day:
                day = after_day + 1
            if best < 0 or day < best:
                best = day
            break  # the highest threshold below the score is the first one crossed
        return best


def _first_crossing(base: int, thresholds: tuple[float, ...], after_day: int, best: int) -> int:
    """A `days_since` count is day − base: a comparison with threshold v can change its truth
    only between floor(v) and floor(v) + 1 days."""
    for v in thresholds:
        k = math.floor(v)
        for day in (base + k, base + k + 1):
            if day > after_day and (best < 0 or day < best):
                best = day
    return best


def _leaves_window(b: list[Any], stride: int, window: int, after_day: int, best: int) -> int:
    """The first day after `after_day` on which a bucket of the flat list leaves the window."""
    for i in range(0, len(b), stride):
        leave = b[i] + window
        if leave > after_day:
            return leave if best < 0 or leave < best else best
    return best
