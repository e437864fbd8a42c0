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
from typing import Final

from stream_app.engine.clock import DAY, format_instant, format_last
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
    parse_segments,
)

LN2: Final = math.log(2.0)


@functools.lru_cache(maxsize=32)
def segment_set(config: EngineConfig) -> SegmentSet:
    """The compiled definitions `config` names (its text was checked at start: `Settings`)."""
    text = BUILTIN_SOURCE if config.segments is None else config.segments
    return SegmentSet(parse_segments(text, config.channels), config.order_window_days,
                      config.activity_window_days, config.half_life)


def segment_change(customer_id: str, segment: str, entered: bool, at: int, reason: str) -> SegmentChange:
    """The `engagement.segment-changes` record (SPEC §10)."""
    return _change(customer_id, segment, entered, format_instant(at), reason)


def _change(customer_id: str, segment: str, entered: bool, at: str, reason: str) -> SegmentChange:
    return {"customer_id": customer_id, "segment": segment, "change": "entered" if entered else "left",
            "at": at, "reason": reason}


# -- evaluation ------------------------------------------------------------------------------------
NAN: Final = math.nan  # a null numeric field: fails every comparison (`Predicate.test`)
# which field groups `_Values` holds for the evaluation in progress
_H_SCORE: Final = 1
_H_ORDERS: Final = 2
_H_ACTIVITY: Final = 4
_H_CHANNEL_COUNT: Final = 8
_H_CHANNELS: Final = 16


class _Rule:
    """One segment, compiled for evaluation: its bit, its predicates cheapest first (a segment is
    an AND: stop at the first false) and those time alone can change."""

    def __init__(self, bit: int, preds: list[Predicate], timed: list[Predicate]) -> None:
        self.bit = bit
        self.preds = preds
        self.timed = timed
        self.has_timed = len(timed) > 0


class _Values:
    """The field values of the evaluation in progress, each computed once. One per `SegmentSet`,
    reused (evaluations never interleave): native attributes, so the compiled engine neither
    allocates nor boxes per evaluation."""

    def __init__(self) -> None:
        self.have = 0  # _H_* bits
        self.score = 0.0
        self.orders = 0.0
        self.guests = 0.0
        self.revenue = 0.0
        self.aov = NAN
        self.clicks = 0.0
        self.social = 0.0
        self.channel_count = 0.0
        self.channels: list[str] = []


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
        # what a clicks-topic event may change: its `touched` fields and the three it changes
        # only sometimes (most events are clicks: a segment held false by a predicate on another
        # field is skipped for them, `Customer.segments_quiet`)
        clicks_fields = {TIER, DAYS_SINCE_LAST_ACTIVITY, CHANNELS_30D, CHANNEL_COUNT_30D}
        for etype, topic in TOPIC_OF_TYPE.items():
            if topic == CLICKS:
                clicks_fields |= touched(etype, topic)
        for s in segments:
            for p in s.when:
                p.dead_if_false = static_false(p)
                p.timed = time_class(p) != STATIC
                p.quiet = p.field not in clicks_fields
                p.count_target = count_target(p)
                p.whole = math.floor(p.number) if math.isfinite(p.number) else 0
                p.window_threshold = (p.field == ORDERS_365D or p.field == GUEST_ORDERS_365D) and p.op in (LT, LE, GT, GE)
        #: event type -> whether it is a clicks-topic event (it leaves quiet segments false)
        self.clicks_type = {etype: topic == CLICKS for etype, topic in TOPIC_OF_TYPE.items()}
        # cheapest first, except that predicates only a non-clicks event can make true come
        # before all others: when one is false, the segment is quiet (`segments_quiet`) and
        # most events skip it
        self.rules = [_Rule(1 << k, sorted(s.when, key=lambda p: (not (p.dead_if_false and p.quiet), _COST[p.field])),
                            [p for p in s.when if p.timed]) for k, s in enumerate(segments)]
        #: event type -> mask of the segments that read a field the type can change (`touched`)
        self.by_type: dict[str, int] = {}
        for etype, topic in TOPIC_OF_TYPE.items():
            fields_touched = touched(etype, topic)
            mask = 0
            for k, s in enumerate(segments):
                if s.fields & fields_touched:
                    mask |= 1 << k
            self.by_type[etype] = mask
        #: event type -> mask of the segments a member stays in after it, as far as the fields it
        #: changes go: each predicate reading one is a `>=` or `>` on a count the type only raises
        self.held_safe: dict[str, int] = {}
        for etype, topic in TOPIC_OF_TYPE.items():
            fields_touched = touched(etype, topic)
            up = rising(etype, topic)
            mask = 0
            for k, s in enumerate(segments):
                if all(p.field not in fields_touched or (p.field in up and (p.op == GE or p.op == GT))
                       for p in s.when):
                    mask |= 1 << k
            self.held_safe[etype] = mask
        # what an event changes only sometimes (`touched` leaves these out; `Scoring.apply` adds
        # the segments reading them when the event did change them)
        self.reads_tier = _reading(segments, (TIER,))
        self.reads_activity_day = _reading(segments, (DAYS_SINCE_LAST_ACTIVITY,))
        self.reads_channels = _reading(segments, (CHANNELS_30D, CHANNEL_COUNT_30D))
        #: of those, the segments a member stays in when a channel enters the window: each channel
        #: predicate is `contains` or a `>=`/`>` on channel_count_30d
        self.channels_held_safe = 0
        for k, s in enumerate(segments):
            if all((p.field != CHANNELS_30D or p.op == CONTAINS)
                   and (p.field != CHANNEL_COUNT_30D or p.op == GE or p.op == GT) for p in s.when):
                self.channels_held_safe |= 1 << k
        self.all = (1 << len(segments)) - 1
        #: identifies the definitions (names and predicates, in order): state built under others
        #: is re-evaluated at restart (`Unit.from_parts`)
        self.digest = hashlib.sha256(json.dumps([s.definition() for s in segments]).encode()).hexdigest()[:16]
        #: some predicate may change without an event (else no customer needs the sweep index)
        self.timed = any(r.has_timed for r in self.rules)
        #: the segments with a predicate time alone can change (what a sweep re-evaluates)
        self.timed_mask = sum(r.bit for r in self.rules if r.has_timed)
        self.vals = _Values()
        #: reason -> for segment k, [left, entered] records with all but customer_id and at filled:
        #: copying one and setting two keys costs half of building the dict
        self._templates: dict[str, list[SegmentChange]] = {
            reason: [_change("", name, entered, "", reason) for name in self.names for entered in (False, True)]
            for reason in ("event", "sweep", "definitions")}
        self._event_templates = self._templates["event"]
        self._sweep_templates = self._templates["sweep"]

    def __len__(self) -> int:
        return len(self.segments)

    def _num(self, c: Customer, t: int, f: int) -> float:
        """Numeric field `f` at instant `t` (NaN: null); windows and the score once per evaluation."""
        vals = self.vals
        if f == DAYS_SINCE_LAST_ORDER:
            lo = c.last_order_at
            return NAN if lo is None else float(t // DAY - lo // DAY)
        if f == DAYS_SINCE_LAST_ACTIVITY:
            la = c.last_activity
            return NAN if la is None else float(t // DAY - la // DAY)
        if f == ORDERS_TOTAL:
            return float(c.orders_total)
        if f == SCORE:
            if not vals.have & _H_SCORE:
                s = c.s_ref if t == c.t_ref else c.s_ref * math.exp(-(t - c.t_ref) / self.half_life * LN2)
                vals.score = max(0.0, s)  # as Customer.score_at and the record compute it
                vals.have |= _H_SCORE
            return vals.score
        if ORDERS_365D <= f <= AOV_365D:  # ORDER_WINDOW_FIELDS
            if not vals.have & _H_ORDERS:
                orders, guests, revenue = c.window_orders(t, self.order_window_days)
                vals.orders = float(orders)
                vals.guests = float(guests)
                vals.revenue = revenue
                vals.aov = revenue / orders if orders else NAN
                vals.have |= _H_ORDERS
            if f == ORDERS_365D:
                return vals.orders
            if f == GUEST_ORDERS_365D:
                return vals.guests
            return vals.revenue if f == REVENUE_365D else vals.aov
        if f == CLICKS_30D or f == SOCIAL_30D:  # ACTIVITY_WINDOW_FIELDS
            if not vals.have & _H_ACTIVITY:
                clicks, social = c.window_activity(t, self.activity_window_days)
                vals.clicks = float(clicks)
                vals.social = float(social)
                vals.have |= _H_ACTIVITY
            return vals.clicks if f == CLICKS_30D else vals.social
        if f == CHANNEL_COUNT_30D:  # the count needs no sorted list
            if not vals.have & _H_CHANNEL_COUNT:
                first = t // DAY - (self.activity_window_days - 1)
                cd = c.channel_days
                n = 0
                for k in range(1, len(cd), 2):
                    d: int = cd[k]  # typed: compared as a native int
                    if d >= first:
                        n += 1
                vals.channel_count = float(n)
                vals.have |= _H_CHANNEL_COUNT
            return vals.channel_count
        if f == POINTS:
            return float(c.points)
        if f == REVENUE_TOTAL:
            return float(c.revenue_total)
        if f == EVENTS_TOTAL:
            return float(c.events_total)
        nps = c.last_nps  # LAST_NPS
        return NAN if nps is None else float(nps)

    def _holds(self, c: Customer, t: int, p: Predicate) -> bool:
        f = p.field
        if f == TIER:  # the tier held (after the tier evaluation at t)
            tier = c.tier
            return tier >= 0 and p.tier_bits >> tier & 1 == 1
        if f == CHANNELS_30D:
            vals = self.vals
            if not vals.have & _H_CHANNELS:
                vals.channels = c.window_channels(t, self.activity_window_days)
                vals.have |= _H_CHANNELS
            return (p.channel in vals.channels) == (p.op == CONTAINS)
        if p.window_threshold:
            return self._window_count_holds(c, t // DAY, p)
        return p.test(self._num(c, t, f))

    def _window_count_holds(self, c: Customer, day: int, p: Predicate) -> bool:
        """A threshold on orders_365d or guest_orders_365d, deciding as soon as the newest days
        settle it (a frequent buyer's year of order days is not summed for `>= 3`)."""
        b = c.order_buckets
        lo = day - (self.order_window_days - 1)
        k = 1 if p.field == ORDERS_365D else 2
        rising = p.op == GE or p.op == GT  # true once the count is high enough, else false then
        n = 0
        i = len(b) - 4
        while i >= 0 and b[i] >= lo:
            n += b[i + k]
            if p.test(float(n)) == rising:
                return rising
            i -= 4
        return p.test(float(n))

    def evaluate(self, c: Customer, at: int, reason: str, counts: dict[str, int],
                 out: list[SegmentChange], mask: int) -> int:
        """SPEC §10: re-evaluate the customer at `at`; enter and leave, in definition order, each
        change counted in `counts` (the KPI partial's) and appended to `out`.

        Returns the day index of the first midnight after day(at) at which time alone may change
        a membership (-1: none before the next event), never later than the real change. Only
        segments time can change count: one with a false predicate that time cannot make true
        (`static_false`) waits for an event. `mask`: the segments to evaluate; the others keep
        their membership (an event on the day of the customer's previous one: see `touched`).

        Records on the customer what the next evaluation may skip: `segments_live`, the segments
        time alone may change (all a sweep need evaluate), `segments_quiet`, those held false
        by a predicate no clicks-topic event changes, and `segments_tier_held`, those held false
        by a tier predicate (only a tier change can make them true)."""
        if not mask:
            return -1
        self.vals.have = 0
        day = at // DAY
        best = -1
        held = c.segments
        bits = held & ~mask
        live_bits = c.segments_live & ~mask
        quiet_bits = c.segments_quiet & ~mask
        tier_bits = c.segments_tier_held & ~mask
        wait_bits = 0
        wait_n = 0
        for rule in self.rules:  # a bit test each: cheaper than a dict of masks (a boxed key)
            bit = rule.bit
            if not mask & bit:
                continue
            inside = True
            live = rule.has_timed
            for p in rule.preds:
                if not self._holds(c, at, p):
                    inside = False
                    if not live or p.dead_if_false:
                        live = False
                        if p.quiet:
                            quiet_bits |= bit
                        elif p.field == TIER:
                            tier_bits |= bit
                        if p.count_target >= 0:
                            # each event raises the count by one at most, time only lowers it
                            k = p.count_target - int(self._num(c, at, p.field))
                            if k > 1:
                                wait_bits |= bit
                                if wait_n == 0 or k < wait_n:
                                    wait_n = k
                        break
            if inside:
                bits |= bit
            if live:
                live_bits |= bit
                for p in rule.timed:
                    d = self._flip_day(c, p, at, day)
                    if d >= 0 and (best < 0 or d < best):
                        best = d
        c.segments_live = live_bits
        c.segments_quiet = quiet_bits
        c.segments_tier_held = tier_bits
        old_wait = c.segments_wait & ~mask
        if wait_bits:
            if old_wait and c.segments_wait_n < wait_n:
                wait_n = c.segments_wait_n  # one countdown for all: the shortest
            c.segments_wait = old_wait | wait_bits
            c.segments_wait_n = wait_n
        else:
            c.segments_wait = old_wait
        diff = bits ^ held
        if diff:
            cid = c.customer_id
            text = format_last(at)
            templates = (self._event_templates if reason == "event" else self._sweep_templates if reason == "sweep"
                         else self._templates[reason])
            for k, name in enumerate(self.names):
                if diff >> k & 1:
                    entered = bits >> k & 1
                    counts[name] = counts[name] + (1 if entered else -1)  # native add, not `+=` on an object
                    change = templates[2 * k + entered].copy()
                    change["customer_id"] = cid
                    change["at"] = text
                    out.append(change)
            c.segments = bits
        return best

    def _flip_day(self, c: Customer, p: Predicate, at: int, day: int) -> int:
        """The first midnight after day `day` at which p's truth changes without an event (exact
        for day counts and windows; for the score, the midnight before the crossing)."""
        f = p.field
        if f == DAYS_SINCE_LAST_ORDER or f == DAYS_SINCE_LAST_ACTIVITY:
            last = c.last_order_at if f == DAYS_SINCE_LAST_ORDER else c.last_activity
            if last is None:
                return -1
            base = last // DAY
            x0 = day - base
            now = p.test(float(x0))
            # a whole-day count against a number changes its truth at floor(n) or floor(n) + 1
            x = p.whole
            if x > x0 and p.test(float(x)) != now:
                return base + x
            x += 1
            if x > x0 and p.test(float(x)) != now:
                return base + x
            return -1
        if ORDERS_365D <= f <= AOV_365D:  # ORDER_WINDOW_FIELDS
            return self._order_window_flip(c, p, at, day)
        if f == CLICKS_30D or f == SOCIAL_30D:  # ACTIVITY_WINDOW_FIELDS
            return self._activity_window_flip(c, p, day)
        if f == CHANNEL_COUNT_30D or f == CHANNELS_30D:  # CHANNEL_FIELDS
            return self._channel_flip(c, p, day)
        # SCORE: max(0, S) only decays. Against n <= 0 it changes once, when round(S, 9) reaches 0
        # (S < 5e-10). Against n > 0 its truth changes while round(S, 9) passes n: schedule the
        # midnight before S reaches a band just above n, then every midnight inside the band (a
        # score equal to n changes `<` and `>=` at once as it decays), none below it
        if c.s_ref <= 0:
            return -1
        s = self._num(c, at, SCORE)
        n = p.number
        if n > 0:
            band = max(n * 1e-6, 1e-9)
            if s <= n - band:
                return -1
            level = n + band
        else:
            level = 5e-10
            if s <= level:
                return -1
        if s <= level:
            return day + 1
        cross = c.t_ref + self.half_life * (math.log(c.s_ref / level) / LN2)  # log2: a Python call compiled
        d = int(cross) // DAY  # the midnight at or before the crossing: the float may err either way
        return d if d > day else day + 1

    def _order_window_flip(self, c: Customer, p: Predicate, at: int, day: int) -> int:
        """The first day after `day` when a bucket leaving the order window changes p's truth."""
        b = c.order_buckets
        w = self.order_window_days
        lo = day - (w - 1)
        f = p.field
        if p.window_threshold:
            # a threshold on a count that only falls: its truth changes once, when the bucket
            # that brings the count across leaves. Newest first: a handful of steps, not all
            # of a frequent buyer's order days
            now = self._window_count_holds(c, day, p)
            k = 1 if f == ORDERS_365D else 2
            if p.test(0.0) == now:
                return -1
            n = 0
            i = len(b) - 4
            while i >= 0 and b[i] >= lo:
                n += b[i + k]
                if p.test(float(n)) == now:
                    return b[i] + w
                i -= 4
            return -1
        vals = self.vals
        if not vals.have & _H_ORDERS:  # the evaluation computed them, unless it stopped early
            self._num(c, at, ORDERS_365D)
        orders = int(vals.orders)
        guests = int(vals.guests)
        revenue = vals.revenue
        now = p.test(_order_field(f, orders, guests, revenue))
        for i in range(0, len(b), 4):  # day-ordered: they leave in this order
            if b[i] >= lo:
                orders -= b[i + 1]
                guests -= b[i + 2]
                if f == REVENUE_365D or f == AOV_365D:
                    # summed again, in the order `Customer.window_orders` sums: a difference
                    # could round the other way
                    revenue = 0.0
                    for j in range(i + 4, len(b), 4):
                        revenue += b[j + 3]
                if p.test(_order_field(f, orders, guests, revenue)) != now:
                    return b[i] + w
        return -1

    def _activity_window_flip(self, c: Customer, p: Predicate, day: int) -> int:
        """The first day after `day` when a bucket leaving the activity window changes p's truth."""
        b = c.activity_buckets
        w = self.activity_window_days
        lo = day - (w - 1)
        k = 1 if p.field == CLICKS_30D else 2
        n = 0
        for i in range(0, len(b), 3):
            if b[i] >= lo:
                n += b[i + k]
        now = p.test(float(n))
        for i in range(0, len(b), 3):
            if b[i] >= lo:
                n -= b[i + k]
                if p.test(float(n)) != now:
                    return b[i] + w
        return -1

    def _channel_flip(self, c: Customer, p: Predicate, day: int) -> int:
        """The first day after `day` when a channel leaving the activity window changes p's truth."""
        cd = c.channel_days
        w = self.activity_window_days
        lo = day - (w - 1)
        if p.field == CHANNELS_30D:  # contains or not: changes when that channel leaves
            for i in range(0, len(cd), 2):
                if cd[i] == p.channel:
                    return cd[i + 1] + w if cd[i + 1] >= lo else -1
            return -1
        n = 0
        for i in range(1, len(cd), 2):
            d: int = cd[i]  # typed: compared as a native int
            if d >= lo:
                n += 1
        now = p.test(float(n))
        after = day
        while n > 0:  # the channels leave in the order of their days (a handful: no sort)
            leave = -1
            for i in range(1, len(cd), 2):
                d = cd[i]
                d += w
                if d > after and (leave < 0 or d < leave):
                    leave = d
            if leave < 0:
                return -1
            for i in range(1, len(cd), 2):
                d = cd[i]
                if d + w == leave:
                    n -= 1
            if p.test(float(n)) != now:
                return leave
            after = leave
        return -1

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


def _reading(segments: tuple[Segment, ...], fields: tuple[int, ...]) -> int:
    """The mask of the segments that read any of `fields`."""
    mask = 0
    for k, s in enumerate(segments):
        if any(f in s.fields for f in fields):
            mask |= 1 << k
    return mask


def touched(etype: str, topic: str) -> frozenset[int]:
    """The §10 fields an applied event of this type changes at its customer, besides time, and
    besides three it changes only sometimes, which `Scoring.apply` checks: the tier (when the tier
    evaluation changed it), `days_since_last_activity` (when the day of the last activity moved)
    and the channel fields (when a channel's latest day moved).

    Every event moves the score (a weight, or the decay to a later instant) and events_total.
    Within one UTC day nothing else changes with time (windows and day counts move at
    midnights), so an event on the day of the customer's previous event need only re-evaluate
    the segments that read the fields it changed (`SegmentSet.by_type`)."""
    out = {SCORE, EVENTS_TOTAL}
    if etype == ORDER_PLACED:
        out |= _ORDER_FIELDS
    elif etype == ORDER_REFUNDED:
        out |= _REFUND_FIELDS
    elif topic == CLICKS and etype not in NOT_ACTIVITY:
        out.add(CLICKS_30D)
    elif topic == SOCIAL:
        out |= {SOCIAL_30D, POINTS, LAST_NPS}
    return frozenset(out)


def rising(etype: str, topic: str) -> frozenset[int]:
    """The `touched` counts an event of this type only raises (by one, or not at all)."""
    if etype == ORDER_PLACED:
        return frozenset((EVENTS_TOTAL, ORDERS_TOTAL, ORDERS_365D, GUEST_ORDERS_365D))
    if topic == CLICKS and etype not in NOT_ACTIVITY:
        return frozenset((EVENTS_TOTAL, CLICKS_30D))
    if topic == SOCIAL:
        return frozenset((EVENTS_TOTAL, SOCIAL_30D))
    return frozenset((EVENTS_TOTAL,))


STATIC: Final = -1  # a predicate only an event can change (time_class; field ids start at 0)
#: fields whose value time alone only lowers (window counts, the decaying score)
_DECREASING = frozenset((ORDERS_365D, GUEST_ORDERS_365D, CLICKS_30D, SOCIAL_30D, CHANNEL_COUNT_30D, SCORE))


#: counts no applied event raises by more than one (an event has one type, one channel, one day)
_COUNTS = frozenset((ORDERS_TOTAL, EVENTS_TOTAL, ORDERS_365D, GUEST_ORDERS_365D, CLICKS_30D, SOCIAL_30D,
                     CHANNEL_COUNT_30D))


def count_target(p: Predicate) -> int:
    """The least whole count satisfying a `>=` or `>` on one of `_COUNTS`, -1 for any other
    predicate. Such a predicate false at count v stays false for the customer's next
    target - v - 1 events: each raises the count by one at most, and time only lowers it (windows)
    or leaves it (totals)."""
    if p.field not in _COUNTS or (p.op != GE and p.op != GT) or not math.isfinite(p.number):
        return -1
    x = max(0, math.floor(p.number))
    while not p.test(float(x)):  # at most twice: the test rounds only near the number
        x += 1
    return x


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


def _order_field(f: int, orders: int, guests: int, revenue: float) -> float:
    """An order-window field from the window's sums (NaN: a null aov)."""
    if f == ORDERS_365D:
        return float(orders)
    if f == GUEST_ORDERS_365D:
        return float(guests)
    if f == REVENUE_365D:
        return revenue
    return revenue / orders if orders else NAN
