"""Applying one event (SPEC §3–§6, §9): what an event does to its unit, once the unit has decided
that it applies (dedupe) and when (watermark, due work: `unit.py`, whose `Unit` extends `Scoring`).

`Scoring.apply` is the whole path of an event. The type's rule adds it to the store KPIs (SPEC §7);
then, for an identified customer, the common part: the decayed score S and the counts (SPEC §3),
the activity (last_activity_at and channels, SPEC §1) and the message counts; then the rule's own
part (orders, refunds, clicks, social, sends), the tier rule (SPEC §5), the rule's alert (SPEC §6)
and the customer's place in the sweep index. A rule is one small class per kind of type, found by
type in the table `type_rules` builds: compiled with mypyc, choosing it is one dict lookup and its
methods are direct (vtable) calls.

Over 300 lines: the per-type rules and the common part they extend are one dispatch, read together.
"""

from __future__ import annotations

import heapq
import math

from stream_app.engine.alerts import checkout, negative_feedback
from stream_app.engine.channels import UNMOVED, Channels, forget_channels, touch_channel
from stream_app.engine.clock import DAY, SharedInt
from stream_app.engine.config import SILVER, EngineConfig
from stream_app.engine.customer import (
    LN2,
    Customer,
    add_activity_bucket,
    add_message_bucket,
    add_order_bucket,
    add_order_day_value,
)
from stream_app.engine.events import (
    CHECKOUT_STARTED,
    CLICKS,
    CUSTOMER_ERASED,
    FIXED_WEIGHTS,
    MESSAGE_COUNTS,
    NOT_ACTIVITY,
    ORDER_PLACED,
    ORDER_REFUNDED,
    ORDERS,
    REVIEW,
    SURVEY_RESPONSE,
    TOPIC_OF_TYPE,
    Event,
    channel_of,
    points,
    weight,
)
from stream_app.engine.kpis import MESSAGE_FIELDS, NO_ORDER_DAYS, KpiPartial
from stream_app.engine.records import Alert, SegmentChange, TierChange
from stream_app.engine.segments import segment_set
from stream_app.engine.sweeps import next_due_day
from stream_app.engine.tiers import TierRule, tier_change


# -- the rules: one class per kind of type ----------------------------------------------------------
class TypeRule:
    """A type's fixed facts, and what it does beyond the common part. This base is the rule of the
    *_sent types: a message count, and nothing of the customer's own."""

    def __init__(self, etype: str, channel: str | None) -> None:
        self.weight = FIXED_WEIGHTS.get(etype, 0.0)
        #: index of its count in a message bucket (MESSAGE_FIELDS order); -1: not a message count
        self.message = MESSAGE_FIELDS.index("_".join(MESSAGE_COUNTS[etype])) if etype in MESSAGE_COUNTS else -1
        self.channel = channel  # the type's own channel when the event names none (canonical)
        self.activity = etype not in NOT_ACTIVITY  # moves last_activity_at and the channels
        #: set by `Scoring`: the segments reading a field this type changes (`SegmentSet.by_type`),
        #: and whether it is a clicks-topic type (`SegmentSet.clicks_type`)
        self.segment_mask = 0
        self.held_safe = 0  # `SegmentSet.held_safe`
        self.clicks = False

    def store(self, kpis: KpiPartial, ev: Event, day: int) -> float:
        """Add the event to the store KPIs; return its weight w in the score (SPEC §3)."""
        if self.message >= 0:
            kpis.add_message(day, self.message)
        return self.weight

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        """The type's own effect on its customer, after the common part."""

    def alert(self, c: Customer, ev: Event, cfg: EngineConfig) -> Alert | None:
        """The alert the event raises after its tier evaluation, if any."""
        return None


class Click(TypeRule):
    """A clicks-topic activity event: one more click in its day's activity bucket."""

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        add_activity_bucket(c, day, 1, 0, u.config.activity_window_days)


class Checkout(Click):
    """checkout_started: a click that also (re)starts the abandoned-cart timer (SPEC §6)."""

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        add_activity_bucket(c, day, 1, 0, u.config.activity_window_days)
        timer = checkout(c, ev, u.config.cart_timeout)
        if timer is not None:
            heapq.heappush(u.timers, (timer.deadline, c.customer_id))


class Social(TypeRule):
    """A social-topic event: its points, and one more in its day's social count."""

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        c.points += points(ev)
        add_activity_bucket(c, day, 0, 1, u.config.activity_window_days)


class Review(Social):
    def store(self, kpis: KpiPartial, ev: Event, day: int) -> float:
        kpis.add_review(day, ev.rating)  # type: ignore[arg-type]
        return self.weight

    def alert(self, c: Customer, ev: Event, cfg: EngineConfig) -> Alert | None:
        return negative_feedback(c, ev, cfg)


class Survey(Review):
    def store(self, kpis: KpiPartial, ev: Event, day: int) -> float:
        kpis.add_survey(day, ev.nps)  # type: ignore[arg-type]
        return self.weight

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        c.points += points(ev)
        add_activity_bucket(c, day, 0, 1, u.config.activity_window_days)
        if c.last_nps_at is None or ev.occurred_at >= c.last_nps_at:
            c.last_nps, c.last_nps_at = ev.nps, at  # the later in processing order on a tie


class Order(TypeRule):
    def store(self, kpis: KpiPartial, ev: Event, day: int) -> float:
        kpis.add_order(day, ev.guest, ev.customer_id is not None, ev.amount)
        return weight(ev)

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        t = ev.occurred_at
        amount = ev.amount
        c.points += points(ev)
        c.orders_total += 1
        c.revenue_total += amount
        if c.first_order_at is None or t < c.first_order_at:
            c.first_order_at = at
        if c.last_order_at is None or t > c.last_order_at:
            c.last_order_at = at
        add_order_bucket(c, day, 1, 1 if ev.guest else 0, amount, u.config.order_window_days)
        c.top_order_days = u.kpis.add_order_day(c.top_order_days, day)
        add_order_day_value(c, day, amount)
        cart = c.cart
        if cart is not None and cart.checkout_at <= t <= cart.deadline:
            c.cart = None  # the order completes the checkout: cancel the timer
        if c.latest_checkout_at is None or t >= c.latest_checkout_at:
            c.order_instants.append(t)


class Refund(TypeRule):
    def store(self, kpis: KpiPartial, ev: Event, day: int) -> float:
        kpis.add_refund(day, ev.amount)
        return weight(ev)

    def customer(self, u: Scoring, c: Customer, ev: Event, at: SharedInt, day: SharedInt) -> None:
        c.points += points(ev)
        c.revenue_total -= ev.amount
        add_order_bucket(c, day, 0, 0, -ev.amount, u.config.order_window_days)


_SPECIAL: dict[str, type[TypeRule]] = {
    ORDER_PLACED: Order, ORDER_REFUNDED: Refund, CHECKOUT_STARTED: Checkout, REVIEW: Review,
    SURVEY_RESPONSE: Survey,
}


def type_rules(config: EngineConfig, channels: Channels) -> dict[str, TypeRule]:
    """Every applicable type (customer_erased aside: `erase`) -> its rule."""
    rules: dict[str, TypeRule] = {}
    for t, topic in TOPIC_OF_TYPE.items():
        if t == CUSTOMER_ERASED:
            continue
        ch = channel_of(t, None, config.channels)
        kind = _SPECIAL.get(t) or (Social if topic != CLICKS and topic != ORDERS
                                   else Click if t not in NOT_ACTIVITY else TypeRule)
        rules[t] = kind(t, None if ch is None else channels.canonical[ch])
    return rules


# -- the state an event changes, and the common part ------------------------------------------------
class Scoring:
    """A unit's customers, store KPIs, due-work indexes and pending outputs, and what applying one
    event does to them. Time (the watermark, firing timers, sweeping) is `Unit`'s."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.customers: dict[str, Customer] = {}
        self.segment_set = segment_set(config)
        self.has_segments = len(self.segment_set) > 0
        #: some customer may change segment at a midnight without an event: index every customer
        self.segments_timed = self.segment_set.timed
        self.kpis = KpiPartial(config.order_window_days, config.activity_window_days, config.channels,
                               self.segment_set.names)
        self.tiers = TierRule(config.tier_bounds, config.demotion_factor)
        self.decay = -LN2 / config.half_life  # S(T) = S(t)·exp((T − t)·decay)
        self.activity_span = config.activity_window_days - 1  # a window's first day: day − span
        self.channels = Channels(config.channels)
        self.rules: dict[str, TypeRule] = type_rules(config, self.channels)
        for etype, rule in self.rules.items():
            rule.segment_mask = self.segment_set.by_type[etype]
            rule.held_safe = self.segment_set.held_safe[etype]
            rule.clicks = self.segment_set.clicks_type[etype]
        #: (deadline, customer_id) of cart timers; stale entries are skipped when popped
        self.timers: list[tuple[int, str]] = []
        #: day index of a midnight -> customers that sweep must look at (may hold stale ids)
        self.due: dict[int, list[str]] = {}
        self.erasures = 0  # applied customer_erased events (SPEC §8 counts.erased)
        #: the unit's last sweep midnight (SPEC §5: no evaluation is dated before it); `Unit` moves it
        self.last_sweep: int | None = None
        #: the unit's first sweep midnight: every midnight from it to the watermark has been swept
        self.first_sweep: int | None = None
        # pending outputs: handed to the shell by `Unit.drain` only
        self.tier_changes: list[TierChange] = []
        self.alerts: list[Alert] = []
        self.changed: set[str] = set()  # customers touched
        self.erased: list[str] = []
        self.erased_tiers: list[int] = []
        self.segment_changes: list[SegmentChange] = []

    def apply(self, ev: Event, watermark: int) -> None:
        """Apply an event that passed dedupe; `watermark` is the unit's (already moved past it)."""
        cid = ev.customer_id
        if ev.type == CUSTOMER_ERASED:
            self.erase(cid, watermark)  # type: ignore[arg-type]
            return
        rule = self.rules[ev.type]
        t = ev.occurred_at
        day = t // DAY
        # the instant and day as stored in the customer's fields and buckets (clock.SharedInt)
        at: SharedInt = ev.occurred_at
        day_obj: SharedInt = day
        w = rule.store(self.kpis, ev, day)
        if cid is None:
            return  # an anonymous guest order: store KPIs only
        c = self.customers.get(cid)
        first = c is None
        previous_day = -1 if c is None else c.t_ref // DAY  # the day of the customer's clock before
        if c is None:
            c = self.customers[cid] = Customer(cid, t)
            c.s_ref = w
        elif t <= c.t_ref:
            c.s_ref += w * math.exp((c.t_ref - t) * self.decay)
        else:
            c.s_ref = c.s_ref * math.exp((t - c.t_ref) * self.decay) + w
            c.t_ref = t
        c.events_total += 1
        tier_before = c.tier
        # §10 fields this event may leave unchanged: segments reading only unchanged ones keep
        # their membership (a partial evaluation, below)
        activity_day_moved = False
        channel_was = UNMOVED  # the event's channel's latest day before, if it moved
        if rule.activity:
            la = c.last_activity
            if la is None or t > la:
                c.last_activity = at
                if la is None:
                    old_day = -1
                else:
                    old_day = la // DAY
                    c.churn_alerted = False  # last_activity_at moved forward: a new inactivity spell
                if day != old_day:
                    self.kpis.move_active(old_day, day)
                    activity_day_moved = True
            ch = ev.channel
            channel_was = touch_channel(self.kpis, c, self.channels.of(ch) if ch else rule.channel, day_obj)
        if rule.message >= 0:
            add_message_bucket(c, day_obj, rule.message, self.config.activity_window_days)
        rule.customer(self, c, ev, at, day_obj)
        # SPEC §5: the tier at the customer's clock, or the unit's last sweep midnight if later (a
        # late event is never evaluated before a sweep already run); §10: then its segments
        when = c.t_ref
        s = c.s_ref
        last_sweep = self.last_sweep
        if last_sweep is not None and last_sweep > when:
            when = last_sweep
            s = c.score_at(when, self.config.half_life)
        if first:
            self.set_tier(c, None, self.tiers.first(s), s, when, "event")
        else:
            self.evaluate_tier(c, when, s, "event")
        change = -1
        partial = False
        if self.has_segments:
            ss = self.segment_set
            # Only the segments reading a field this event changed (`touched`) when nothing else
            # can have changed since the customer's last evaluation: on the day of its previous
            # clock, or when every midnight since that day has been swept (a sweep re-evaluated it
            # at each midnight where time could change one of its segments: the sweep index)
            fs = self.first_sweep
            partial = not first and (when // DAY == previous_day
                                     or (fs is not None and previous_day + 1 >= fs // DAY))
            if partial:
                # a member of a segment whose predicates on the fields this event changes are
                # `>=`/`>` on counts it only raises stays a member
                mask = rule.segment_mask & ~(c.segments & rule.held_safe)
                if c.tier != tier_before:
                    mask |= ss.reads_tier
                if activity_day_moved:
                    mask |= ss.reads_activity_day
                if channel_was != UNMOVED and channel_was < when // DAY - self.activity_span <= day:
                    # channels_30d and channel_count_30d change only when the channel enters the
                    # window (moved inside it, it leaves later than scheduled: harmless)
                    mask |= ss.reads_channels & ~(c.segments & ss.channels_held_safe)
            else:
                mask = ss.all
            if rule.clicks:
                mask &= ~c.segments_quiet
            wait = c.segments_wait
            if wait:  # counted down by every event of the customer (`SegmentSet.evaluate`)
                n = c.segments_wait_n - 1
                c.segments_wait_n = n
                if n > 0:
                    mask &= ~wait
                else:
                    c.segments_wait = 0
            if c.tier == tier_before and not first:
                mask &= ~c.segments_tier_held
            if mask:
                change = ss.evaluate(c, when, "event", self.kpis.segments, self.segment_changes, mask)
        a = rule.alert(c, ev, self.config)
        if a is not None:
            self.alerts.append(a)
        # a bronze customer with nothing indexed whose partial evaluation found no new change day
        # stays unindexed (what `reschedule` would conclude)
        if c.tier >= SILVER or c.due_day >= 0 or change >= 0 or (self.segments_timed and not partial):
            self.reschedule(c, watermark, change, partial)
        self.changed.add(cid)

    def erase(self, cid: str, watermark: int) -> None:
        """SPEC §9: forget the customer; the store KPIs keep it as anonymous aggregates."""
        self.erasures += 1
        self.erased.append(cid)
        self.changed.discard(cid)
        c = self.customers.pop(cid, None)
        if c is None:
            return
        kpis = self.kpis
        b = c.order_buckets
        for i in range(0, len(b), 4):
            if b[i + 1]:
                kpis.forget_identified(b[i], b[i + 1])
        kpis.move_customer(c.top_order_days, NO_ORDER_DAYS)
        if c.last_activity is not None:
            kpis.move_active(c.last_activity // DAY, -1)
        forget_channels(kpis, c)
        self.segment_set.leave_all(c, watermark, kpis.segments, self.segment_changes)
        # its timer and sweep-index entries go stale: both look the customer up and skip it
        self.erased_tiers.append(c.tier)

    def evaluate_tier(self, c: Customer, at: int, s: float, reason: str) -> None:
        """SPEC §5: promote or demote the customer when S at `at` crosses its tier's thresholds."""
        new = self.tiers.change(c.tier, s)
        if new is not None:
            self.set_tier(c, c.tier, new, s, at, reason)

    def set_tier(self, c: Customer, old: int | None, new: int, s: float, at: int, reason: str) -> None:
        self.tier_changes.append(tier_change(c.customer_id, old, new, s, at, reason))
        c.tier = new
        c.tier_since = at

    def reschedule(self, c: Customer, after: int, change: int, partial: bool = False) -> None:
        """Index the customer under the first midnight > `after` when a sweep may act on it;
        `change`: the day its segments may next change (`SegmentSet.evaluate`, -1: none);
        `partial`: only some segments were evaluated, so the day known for the others stays.

        The segments' day is kept apart (`Customer.segments_due`): a sweep visit for the tier or
        the churn alert then evaluates no segment unless one is due or the tier moved."""
        after_day = after // DAY
        due = next_due_day(c, after, self.tiers.demote_at, self.config)
        seg = -1
        if change >= 0:
            # a change after the evaluation but not after `after` (a late event evaluated before
            # the watermark's day, which no sweep visits again) is due at the next sweep
            seg = change if change > after_day else after_day + 1
        if partial:
            old = c.segments_due
            if old == 0:
                # unknown (restored state): the day indexed before stands for the segments not
                # evaluated, and the next visit evaluates them all
                if c.due_day > after_day and (seg < 0 or c.due_day < seg):
                    seg = c.due_day
                if seg >= 0 and (due < 0 or seg < due):
                    due = seg
                seg = 0
            elif old > after_day and (seg < 0 or old < seg):
                seg = old
        c.segments_due = seg
        if seg > 0 and (due < 0 or seg < due):
            due = seg
        if due != c.due_day:
            c.due_day = due
            if due >= 0:
                self.due.setdefault(due, []).append(c.customer_id)
