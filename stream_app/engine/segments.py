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

Over 300 lines: the evaluation, its schedule and the predicates' time classes read one another's
rules (what time can change, and when), so they stay together.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from typing import Any, Final

from stream_app.engine.clock import DAY, format_instant
from stream_app.engine.config import EngineConfig
from stream_app.engine.customer import Customer
from stream_app.engine.events import CLICKS, NOT_ACTIVITY, ORDER_PLACED, ORDER_REFUNDED, SOCIAL, TOPIC_OF_TYPE
from stream_app.engine.records import SegmentChange
from stream_app.engine.segment_defs import (
    ACTIVITY_WINDOW_FIELDS,
    AOV_365D,
    BUILTIN_SOURCE,
    CHANNEL_COUNT_30D,
    CHANNEL_FIELDS,
    CHANNELS_30D,
    CLICKS_30D,
    CONTAINS,
    DAYS_SINCE_LAST_ACTIVITY,
    DAYS_SINCE_LAST_ORDER,
    EVENTS_TOTAL,
    FIELD_NAMES,
    GE,
    GT,
    GUEST_ORDERS_365D,
    IS_NULL,
    LAST_NPS,
    LE,
    LT,
    NOT_NULL,
    ORDER_WINDOW_FIELDS,
    ORDERS_365D,
    ORDERS_TOTAL,
    POINTS,
    REVENUE_365D,
    REVENUE_TOTAL,
    SCORE,
    SOCIAL_30D,
    TIER,
    Predicate,
    Segment,
    holds,
    parse_segments,
)

LN2: Final = math.log(2.0)
#: a field value not computed yet in this evaluation
_UNSET: Final[Any] = object()
_N_FIELDS: Final = len(FIELD_NAMES)


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
        #: predicates in order of cost (a segment is an AND: stop at the first false, cheapest first)
        self.ordered: list[list[Predicate]] = [sorted(s.when, key=lambda p: _COST[p.field]) for s in segments]
        #: per segment, in `ordered` order: once false, the predicate stays false until an event
        self.dead_if_false: list[list[bool]] = [[static_false(p) for p in preds] for preds in self.ordered]
        #: event type -> mask of the segments that read a field the type can change (`touched`)
        self.by_type: dict[str, int] = {}
        for etype, topic in TOPIC_OF_TYPE.items():
            fields_touched = touched(etype, topic)
            mask = 0
            for k, s in enumerate(segments):
                if s.fields & fields_touched:
                    mask |= 1 << k
            self.by_type[etype] = mask
        self.all = (1 << len(segments)) - 1
        #: identifies the definitions (names and predicates, in order): state built under others
        #: is re-evaluated at restart (`Unit.from_parts`)
        self.digest = hashlib.sha256(json.dumps([s.definition() for s in segments]).encode()).hexdigest()[:16]
        #: per segment, its predicates that time alone can change (a midnight, or the score's decay)
        self.timed_preds: list[list[Predicate]] = [[p for p in s.when if time_class(p) != STATIC]
                                                  for s in segments]
        #: some predicate may change without an event (else no customer needs the sweep index)
        self.timed = any(self.timed_preds)

    def __len__(self) -> int:
        return len(self.segments)

    def _fill(self, c: Customer, t: int, field: int, v: list[Any]) -> Any:
        """Compute `field` at instant `t` into `v` (with the fields computed alongside it)."""
        if field == SCORE:
            s = c.s_ref if t == c.t_ref else c.s_ref * math.exp(-(t - c.t_ref) / self.half_life * LN2)
            v[SCORE] = max(0.0, s)  # as Customer.score_at and the record compute it
        elif ORDERS_365D <= field <= AOV_365D:  # ORDER_WINDOW_FIELDS
            orders, guests, revenue = c.window_orders(t, self.order_window_days)
            v[ORDERS_365D], v[GUEST_ORDERS_365D], v[REVENUE_365D] = orders, guests, revenue
            v[AOV_365D] = revenue / orders if orders else None
        elif field == CLICKS_30D or field == SOCIAL_30D:  # ACTIVITY_WINDOW_FIELDS
            v[CLICKS_30D], v[SOCIAL_30D] = c.window_activity(t, self.activity_window_days)
        elif field == CHANNEL_COUNT_30D:  # the count needs no sorted list
            first = t // DAY - (self.activity_window_days - 1)
            cd = c.channel_days
            n = 0
            for k in range(1, len(cd), 2):
                if cd[k] >= first:
                    n += 1
            v[field] = n
        elif field == CHANNELS_30D:
            v[field] = c.window_channels(t, self.activity_window_days)
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

    def evaluate(self, c: Customer, at: int, reason: str, counts: dict[str, int],
                 out: list[SegmentChange], mask: int) -> int:
        """SPEC §10: re-evaluate the customer at `at`; enter and leave, in definition order, each
        change counted in `counts` (the KPI partial's) and appended to `out`.

        Returns the day index of the first midnight after day(at) at which time alone may change
        a membership (-1: none before the next event), never later than the real change. Only
        segments time can change count: one with a false predicate that time cannot make true
        (`static_false`) waits for an event. `mask`: the segments to evaluate; the others keep
        their membership (an event on the day of the customer's previous one: see `touched`)."""
        v: list[Any] = [_UNSET] * _N_FIELDS
        bits = 0
        bit = 1
        day = at // DAY
        best = -1
        i = 0
        held = c.segments
        for preds in self.ordered:
            if not mask & bit:
                bits |= held & bit
                bit <<= 1
                i += 1
                continue
            inside = True
            timed = self.timed_preds[i]
            live = len(timed) > 0
            dead = self.dead_if_false[i]
            for j, p in enumerate(preds):
                x = v[p.field]
                if x is _UNSET:
                    x = self._fill(c, at, p.field, v)
                if not holds(p, x):
                    inside = False
                    if not live or dead[j]:
                        live = False
                        break
            if inside:
                bits |= bit
            if live:
                for p in timed:
                    d = self._flip_day(c, p, at, day, v)
                    if d >= 0 and (best < 0 or d < best):
                        best = d
            bit <<= 1
            i += 1
        diff = bits ^ c.segments
        if diff:
            cid = c.customer_id
            for k, name in enumerate(self.names):
                if diff >> k & 1:
                    entered = bits >> k & 1 == 1
                    counts[name] += 1 if entered else -1
                    out.append(segment_change(cid, name, entered, at, reason))
            c.segments = bits
        return best

    def _flip_day(self, c: Customer, p: Predicate, at: int, day: int, v: list[Any]) -> int:
        """The first midnight after day `day` at which p's field may change without an event."""
        f = p.field
        if f == DAYS_SINCE_LAST_ORDER or f == DAYS_SINCE_LAST_ACTIVITY:
            last = c.last_order_at if f == DAYS_SINCE_LAST_ORDER else c.last_activity
            if last is None:
                return -1
            base = last // DAY
            x0 = day - base
            now = holds(p, x0)
            # a whole-day count against a number changes its truth at floor(n) or floor(n) + 1
            k = math.floor(p.number) if math.isfinite(p.number) else x0
            for x in (k, k + 1):
                if x > x0 and holds(p, x) != now:
                    return base + x
            return -1
        if ORDERS_365D <= f <= AOV_365D:  # ORDER_WINDOW_FIELDS
            return _leaves_window(c.order_buckets, 4, self.order_window_days, day)
        if f == CLICKS_30D or f == SOCIAL_30D:  # ACTIVITY_WINDOW_FIELDS
            return _leaves_window(c.activity_buckets, 3, self.activity_window_days, day)
        if f == CHANNEL_COUNT_30D or f == CHANNELS_30D:  # CHANNEL_FIELDS
            cd = c.channel_days
            w = self.activity_window_days
            best = -1
            for i in range(1, len(cd), 2):
                leave = cd[i] + w
                if leave > day and (best < 0 or leave < best):
                    best = leave
            return best
        # SCORE: max(0, S) only decays; it crosses n where S(t) = n (round(S, 9) reaches 0 once S < 5e-10)
        if c.s_ref <= 0:
            return -1
        level = p.number if p.number > 0 else 5e-10
        s = v[SCORE]
        if s is _UNSET:
            s = self._fill(c, at, SCORE, v)
        if s <= level:
            return -1
        cross = c.t_ref + self.half_life * math.log2(c.s_ref / level)
        d = int(cross) // DAY  # the midnight at or before the crossing: the float may err either way
        return d if d > day else day + 1

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


#: relative cost of computing a field (`SegmentSet.ordered`): counters, day counts, the score, windows
_COST: dict[int, int] = {f: 0 for f in range(len(FIELD_NAMES))}
_COST.update({DAYS_SINCE_LAST_ORDER: 1, DAYS_SINCE_LAST_ACTIVITY: 1, SCORE: 2, CHANNEL_COUNT_30D: 3,
              ORDERS_365D: 4, GUEST_ORDERS_365D: 4, REVENUE_365D: 4, AOV_365D: 4, CLICKS_30D: 4,
              SOCIAL_30D: 4, CHANNELS_30D: 5})
_ORDER_FIELDS = frozenset((POINTS, ORDERS_365D, GUEST_ORDERS_365D, REVENUE_365D, AOV_365D, ORDERS_TOTAL,
                           REVENUE_TOTAL, DAYS_SINCE_LAST_ORDER))
_REFUND_FIELDS = frozenset((POINTS, REVENUE_365D, AOV_365D, REVENUE_TOTAL))
_ACTIVITY_FIELDS = frozenset((DAYS_SINCE_LAST_ACTIVITY, CHANNELS_30D, CHANNEL_COUNT_30D))


def touched(etype: str, topic: str) -> frozenset[int]:
    """The §10 fields an applied event of this type can change at its customer, besides time.

    Every event moves the score (a weight, or the decay to a later instant) and events_total, and
    may change the tier. Within one UTC day nothing else changes with time (windows and day
    counts move at midnights), so an event on the day of the customer's previous event need only
    re-evaluate the segments that read these fields (`SegmentSet.by_type`)."""
    out = {SCORE, EVENTS_TOTAL, TIER}
    if etype not in NOT_ACTIVITY:
        out |= _ACTIVITY_FIELDS
    if etype == ORDER_PLACED:
        out |= _ORDER_FIELDS
    elif etype == ORDER_REFUNDED:
        out |= _REFUND_FIELDS
    elif topic == CLICKS and etype not in NOT_ACTIVITY:
        out.add(CLICKS_30D)
    elif topic == SOCIAL:
        out |= {SOCIAL_30D, POINTS, LAST_NPS}
    return frozenset(out)


STATIC: Final = -1  # a predicate only an event can change (time_class; field ids start at 0)
#: fields whose value time alone only lowers (window counts, the decaying score)
_DECREASING = frozenset((ORDERS_365D, GUEST_ORDERS_365D, CLICKS_30D, SOCIAL_30D, CHANNEL_COUNT_30D, SCORE))


def time_class(p: Predicate) -> int:
    """STATIC, or the field: what makes a predicate change between events (a day count, a window
    bucket leaving, the score decaying). The tier changes only at an evaluation (event or sweep),
    null-ness of a day count only with an event."""
    f = p.field
    if f in (DAYS_SINCE_LAST_ORDER, DAYS_SINCE_LAST_ACTIVITY):
        return STATIC if p.op in (IS_NULL, NOT_NULL) else f
    if f in ORDER_WINDOW_FIELDS or f in ACTIVITY_WINDOW_FIELDS or f in CHANNEL_FIELDS or f == SCORE:
        return f
    return STATIC


def static_false(p: Predicate) -> bool:
    """A false predicate that time alone cannot make true: an event must come first. Window
    counts and the score only fall with time, day counts only rise."""
    f = p.field
    if time_class(p) == STATIC:
        return True
    op = p.op
    if f in _DECREASING:
        return op == GE or op == GT
    if f == CHANNELS_30D:
        return op == CONTAINS
    if f == DAYS_SINCE_LAST_ORDER or f == DAYS_SINCE_LAST_ACTIVITY:
        return op == LE or op == LT
    return False


def _leaves_window(b: list[Any], stride: int, window: int, day: int) -> int:
    """The first day after `day` on which a bucket of the flat, day-ordered list leaves the window."""
    for i in range(0, len(b), stride):
        leave = b[i] + window
        if leave > day:
            return leave
    return -1
