"""One processing unit (SPEC §2): dedupe, watermark, due work, and applying events.

A unit is one partition of the re-keyed stream, or the whole file in replay. It owns its customers,
its pending timers, its sweep index, its recent event ids and its store-KPI partial. Everything is
event time; nothing here reads a clock or does I/O. Outputs (tier changes, alerts) are appended to
lists the shell drains; customers touched since the last drain are in `changed`.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

from stream_app.engine.alerts import (
    abandoned_cart,
    checkout,
    churn_risk,
    negative_feedback,
)
from stream_app.engine.clock import DAY, SharedInt, next_midnight_after
from stream_app.engine.config import DEFAULT_CONFIG, SILVER, EngineConfig
from stream_app.engine.customer import (
    LN2,
    Customer,
    add_activity_bucket,
    add_message_bucket,
    add_order_bucket,
)
from stream_app.engine.dedupe import RecentIds
from stream_app.engine.events import (
    CHECKOUT_STARTED,
    CLICKS,
    CUSTOMER_ERASED,
    FIXED_WEIGHTS,
    MESSAGE_COUNTS,
    NOT_ACTIVITY,
    ORDER_PLACED,
    ORDER_REFUNDED,
    OTHER_CHANNEL,
    REVIEW,
    SURVEY_RESPONSE,
    TOPIC_OF_TYPE,
    Event,
    channel_of,
    points,
    weight,
)
from stream_app.engine.kpis import MESSAGE_FIELDS, NO_ORDER_DAYS, KpiPartial
from stream_app.engine.sweeps import next_due_day
from stream_app.engine.tiers import TierRule, tier_change

#: type -> index of its count in a message bucket (MESSAGE_FIELDS order)
MESSAGE_INDEX: dict[str, int] = {
    t: MESSAGE_FIELDS.index(f"{medium}_{kind}")
    for t, (medium, kind) in MESSAGE_COUNTS.items()
}

APPLIED = "applied"
DUPLICATE = "duplicate"


class Unit:
    def __init__(self, config: EngineConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.watermark: int | None = None
        self.customers: dict[str, Customer] = {}
        self.dedupe = RecentIds(config.dedupe_horizon)
        # the dedupe memory's containers, for `offer` (same objects; replaced with `dedupe`)
        self._ids = self.dedupe.ids
        self._id_order = self.dedupe.order
        #: (deadline, customer_id); stale entries are skipped when popped
        self.timers: list[tuple[int, str]] = []
        #: day index of a midnight -> customers that sweep must look at (may hold stale ids)
        self.due: dict[int, list[str]] = {}
        self.applied = 0
        self.duplicates = 0
        self.erasures = 0  # applied customer_erased events (SPEC §8 counts.erased)
        self.erased: list[str] = []
        self.erased_tiers: list[int] = []
        self.tier_changes: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.changed: set[str] = set()
        self.tiers = TierRule(config.tier_bounds, config.demotion_factor)
        # the tier rule's thresholds, read by `_apply` without going through `tiers`
        self._promote_at = self.tiers.promote_at
        self._demote_at = self.tiers.demote_at
        #: the first midnight after the watermark, and when the oldest remembered id expires:
        #: below both, a watermark move needs no due work (the hot path in `offer`)
        self._due_before = 0
        self._forget_at = 0
        self._decay = -LN2 / config.half_life  # S(T) = S(t)·exp((T − t)·_decay)
        self.kpis = KpiPartial(config.order_window_days, config.activity_window_days, config.channels)
        # channel names -> one canonical string object (restored states hold copies: compare by value)
        self._canonical = {ch: ch for ch in (*config.channels, OTHER_CHANNEL)}
        self._channels = dict(self._canonical)  # exact `channel` values seen -> canonical channel
        #: type -> (fixed weight, MESSAGE_FIELDS index or -1, its own channel, is activity)
        self._type_info: dict[str, tuple[float, int, str | None, bool]] = {}
        for t in TOPIC_OF_TYPE:
            ch = channel_of(t, None, config.channels)
            self._type_info[t] = (FIXED_WEIGHTS.get(t, 0.0), MESSAGE_INDEX.get(t, -1),
                                  None if ch is None else self._canonical[ch], t not in NOT_ACTIVITY)

    @property
    def seen(self) -> dict[str, int]:
        """Remembered event ids -> watermark right after their application."""
        return self.dedupe.ids

    # -- the one entry point -------------------------------------------------------------------
    def offer(self, ev: Event) -> str:
        """Dedupe, advance the watermark (running due work), apply. Returns APPLIED or DUPLICATE."""
        if ev.event_id in self._ids:
            # Entries past the horizon are pruned on every advance, so presence means remembered.
            self.duplicates += 1
            return DUPLICATE
        t = ev.occurred_at
        wm = self.watermark
        if wm is None:
            self.watermark = wm = t
            self._forget_at = t + self.dedupe.horizon
            self._due_before = next_midnight_after(t)
            self.kpis.prune(t // DAY)
        elif t > wm:
            if t < self._due_before and (not self.timers or self.timers[0][0] >= t):
                self.watermark = t  # fast path: no midnight crossed, no timer due
                if t >= self._forget_at:
                    self._forget_at = self.dedupe.forget(t)
            else:
                self.advance(t)
            wm = t
        # RecentIds.remember, inlined: the call alone cost ~3 % of engine throughput
        eid = ev.event_id
        self._ids[eid] = wm
        self._id_order.append((wm, eid))
        if self.dedupe.log is not None:
            self.dedupe.log.append((eid, wm))
        self._apply(ev)
        self.applied += 1
        return APPLIED

    def advance(self, t: int) -> None:
        """Run due work for a watermark move w -> t (SPEC §2), then set the watermark to t."""
        wm = self.watermark
        if wm is None or t <= wm:
            if wm is None:
                self.watermark = t
                self._due_before = next_midnight_after(t)
            return
        timers = self.timers
        midnight = next_midnight_after(wm)
        while True:
            while timers and not self._timer_live(timers[0]):
                heapq.heappop(timers)
            deadline = timers[0][0] if timers and timers[0][0] < t else None
            if midnight > t:
                if deadline is None:
                    break
                self._fire_timer(heapq.heappop(timers))
            elif deadline is not None and deadline <= midnight:
                self._fire_timer(heapq.heappop(timers))
            else:
                if self.due:
                    self._sweep(midnight)
                midnight += DAY
                if not self.due and not timers:
                    break
        self.watermark = t
        self._due_before = next_midnight_after(t)
        if t >= self._forget_at:
            self._forget_at = self.dedupe.forget(t)
        self.kpis.prune(t // DAY)

    # -- applying one event ----------------------------------------------------------------------
    def _apply(self, ev: Event) -> None:
        cfg = self.config
        cid = ev.customer_id
        etype = ev.type
        if etype == CUSTOMER_ERASED:
            self._erase(cid)  # type: ignore[arg-type]
            return
        t = ev.occurred_at
        day = t // DAY
        # the instant and day as stored in the customer's fields and buckets (clock.SharedInt)
        at: SharedInt = ev.occurred_at
        day_obj: SharedInt = day
        kpis = self.kpis
        # one lookup for the type's fixed facts (hot path): weight, message count, channel, activity
        w, message, type_channel, activity = self._type_info[etype]
        if etype == ORDER_PLACED:
            w = weight(ev)
            kpis.add_order(day, ev.guest, cid is not None, ev.amount)
        elif etype == ORDER_REFUNDED:
            w = weight(ev)
            kpis.add_refund(day, ev.amount)
        else:
            if message >= 0:
                kpis.add_message(day, message)
            elif etype == REVIEW:
                kpis.add_review(day, ev.rating)  # type: ignore[arg-type]
            elif etype == SURVEY_RESPONSE:
                kpis.add_survey(day, ev.nps)  # type: ignore[arg-type]
        if cid is None:
            return  # an anonymous guest order: store KPIs only
        c = self.customers.get(cid)
        first = c is None
        if c is None:
            c = self.customers[cid] = Customer(cid, t)
            c.s_ref = w
        elif t <= c.t_ref:
            c.s_ref += w * math.exp((c.t_ref - t) * self._decay)
        else:
            c.s_ref = c.s_ref * math.exp((t - c.t_ref) * self._decay) + w
            c.t_ref = t
        c.events_total += 1
        if activity:
            la = c.last_activity
            if la is None or t > la:
                c.last_activity = at
                if la is None:
                    old_day = -1
                else:
                    old_day = la // DAY
                    c.churn_alerted = False  # last_activity_at moved forward: a new inactivity spell
                if day != old_day:
                    kpis.move_active(old_day, day)
            ch = ev.channel
            if ch:
                ch = self._channels.get(ch) or self._channel_of(ch)
            else:
                ch = type_channel
            if ch is not None:
                cd = c.channel_days
                # the common case, inline: the customer's first channel, already seen that day
                if not cd or cd[0] != ch or cd[1] < day:
                    self._touch_channel(c, ch, day_obj)
        if message >= 0:
            add_message_bucket(c, day_obj, message, cfg.activity_window_days)

        if etype == ORDER_PLACED:
            amount = ev.amount
            c.points += points(ev)
            c.orders_total += 1
            c.revenue_total += amount
            if c.first_order_at is None or t < c.first_order_at:
                c.first_order_at = at
            if c.last_order_at is None or t > c.last_order_at:
                c.last_order_at = at
            add_order_bucket(c, day_obj, 1, 1 if ev.guest else 0, amount, cfg.order_window_days)
            c.top_order_days = self.kpis.add_order_day(c.top_order_days, day_obj)
            cart = c.cart
            if cart is not None and cart.checkout_at <= t <= cart.deadline:
                c.cart = None  # the order completes the checkout: cancel the timer
            if c.latest_checkout_at is None or t >= c.latest_checkout_at:
                c.order_instants.append(t)
        elif etype == ORDER_REFUNDED:
            c.points += points(ev)
            c.revenue_total -= ev.amount
            add_order_bucket(c, day_obj, 0, 0, -ev.amount, cfg.order_window_days)
        else:
            b = c.activity_buckets
            if ev.topic == CLICKS:
                if not activity:
                    pass  # a *_sent: not in clicks_30d
                elif b and b[-3] == day:
                    b[-2] += 1  # the common case: today's bucket
                else:
                    add_activity_bucket(c, day_obj, 1, 0, cfg.activity_window_days)
                if etype == CHECKOUT_STARTED:
                    timer = checkout(c, ev, cfg.cart_timeout)
                    if timer is not None:
                        heapq.heappush(self.timers, (timer.deadline, cid))
            else:
                c.points += points(ev)
                if b and b[-3] == day:
                    b[-1] += 1
                else:
                    add_activity_bucket(c, day_obj, 0, 1, cfg.activity_window_days)
                if etype == SURVEY_RESPONSE and (c.last_nps_at is None or t >= c.last_nps_at):
                    c.last_nps, c.last_nps_at = ev.nps, at  # the later in processing order on a tie

        # SPEC §5 at the customer's clock; the test is TierRule.change's, inlined (hot path)
        s = c.s_ref
        tier = c.tier
        if first:
            self._set_tier(c, None, self.tiers.first(s), s, c.t_ref, "event")
        elif s >= self._promote_at[tier] or s < self._demote_at[tier]:
            self._evaluate_tier(c, c.t_ref, s, "event")

        if etype == REVIEW or etype == SURVEY_RESPONSE:
            a = negative_feedback(c, ev, cfg)
            if a is not None:
                self.alerts.append(a)
        if c.tier >= SILVER or c.due_day >= 0:
            self._reschedule(c, self.watermark)  # type: ignore[arg-type]
        self.changed.add(cid)

    def _channel_of(self, channel: str) -> str:
        """A non-empty `channel` field not in the fast map: lower-cased, or `other` (SPEC §1)."""
        ch = self._canonical.get(channel_of("", channel, self.config.channels), OTHER_CHANNEL)  # type: ignore[arg-type]
        if len(self._channels) < 1024:  # producers' spellings are few; a flood of odd ones is not cached
            self._channels[channel] = ch
        return ch

    def _touch_channel(self, c: Customer, ch: str, day: SharedInt) -> None:
        """An activity event on channel `ch` on `day`: the customer's latest day on it, and the KPI
        histograms of per-channel days and of the second-latest of them (omnichannel)."""
        cd = c.channel_days
        n = len(cd)
        i = 0
        while i < n and cd[i] != ch:
            i += 2
        if i < n:
            old = cd[i + 1]
            if old >= day:
                return
            before = _second_day(cd) if n > 2 else -1
            cd[i + 1] = day
        else:
            old = -1
            before = _second_day(cd) if n > 2 else -1
            cd += (ch, day)
        kpis = self.kpis
        kpis.move_channel(ch, old, day)
        if len(cd) > 2:  # with one channel the second-latest day stays -1
            after = _second_day(cd)
            if after != before:
                kpis.move_omni(before, after)

    def _erase(self, cid: str) -> None:
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
        cd = c.channel_days
        for i in range(0, len(cd), 2):
            kpis.move_channel(cd[i], cd[i + 1], -1)
        kpis.move_omni(_second_day(cd), -1)
        # its timer and sweep-index entries go stale: both look the customer up and skip it
        self.erased_tiers.append(c.tier)

    # -- tiers, timers, sweeps -------------------------------------------------------------------
    def _evaluate_tier(self, c: Customer, at: int, s: float, reason: str) -> None:
        new = self.tiers.change(c.tier, s)
        if new is not None:
            self._set_tier(c, c.tier, new, s, at, reason)

    def _set_tier(self, c: Customer, old: int | None, new: int, s: float, at: int, reason: str) -> None:
        self.tier_changes.append(tier_change(c.customer_id, old, new, s, at, reason))
        c.tier = new
        c.tier_since = at

    def _timer_live(self, entry: tuple[int, str]) -> bool:
        c = self.customers.get(entry[1])
        return c is not None and c.cart is not None and c.cart.deadline == entry[0]

    def _fire_timer(self, entry: tuple[int, str]) -> None:
        cid = entry[1]
        self.alerts.append(abandoned_cart(self.customers[cid]))
        self.changed.add(cid)

    def _sweep(self, midnight: int) -> None:
        day = midnight // DAY
        ids = self.due.pop(day, None)
        if not ids:
            return
        cfg = self.config
        for cid in sorted(set(ids)):
            c = self.customers.get(cid)
            if c is None or c.due_day != day:
                continue  # erased, or rescheduled since: a stale index entry
            c.due_day = -1
            a = churn_risk(c, midnight, cfg)  # before the sweep's demotion (SPEC §6)
            if a is not None:
                self.alerts.append(a)
            self._evaluate_tier(c, midnight, c.score_at(midnight, cfg.half_life), "sweep")
            self._reschedule(c, midnight)
            self.changed.add(cid)

    def _reschedule(self, c: Customer, after: int) -> None:
        """Index the customer under the first midnight > `after` when a sweep may act on it."""
        due = next_due_day(c, after, self._demote_at, self.config)
        if due != c.due_day:
            c.due_day = due
            if due >= 0:
                self.due.setdefault(due, []).append(c.customer_id)

    # -- reading ---------------------------------------------------------------------------------
    def record(self, customer_id: str, as_of: int | None = None) -> dict[str, Any] | None:
        """The customer's record (None: unknown); the rule of `Customer.read`: as_of None means
        the customer's clock, an as_of before it raises AsOfBeforeClock."""
        c = self.customers.get(customer_id)
        return None if c is None else c.read(as_of, self.config)

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
        """Hand the outputs since the last drain to the shell (erasures: `drain_erased`)."""
        out = (self.tier_changes, self.alerts, self.changed)
        self.tier_changes, self.alerts, self.changed = [], [], set()
        return out

    def drain_erased(self) -> tuple[list[str], list[int]]:
        """Customer ids erased since the last drain, in order (a customer may come back after its
        erasure: it is then in `changed` too), and the tiers the known ones held."""
        out = (self.erased, self.erased_tiers)
        self.erased, self.erased_tiers = [], []
        return out

    # -- persistence: the shell stores customers, ids and the unit core under separate keys ------
    def core_state(self) -> dict[str, Any]:
        """Unit-level state other than customers and remembered ids (those have their own keys)."""
        return {
            "watermark": self.watermark,
            "kpis": self.kpis.to_state(),
            "applied": self.applied,
            "duplicates": self.duplicates,
            "erasures": self.erasures,
        }

    @classmethod
    def from_parts(cls, core: dict[str, Any] | None, customers: list[Customer],
                   seen: list[tuple[str, int]], config: EngineConfig = DEFAULT_CONFIG) -> Unit:
        """Rebuild a unit from persisted parts; timers and the sweep index derive from customers."""
        u = cls(config)
        if core is not None:
            u.watermark = core["watermark"]
            u.kpis = KpiPartial.from_state(core["kpis"])
            u.applied = core["applied"]
            u.duplicates = core["duplicates"]
            u.erasures = core.get("erasures", 0)
        for c in customers:
            u.customers[c.customer_id] = c
            if c.cart is not None:
                u.timers.append((c.cart.deadline, c.customer_id))
            if c.due_day >= 0:
                u.due.setdefault(c.due_day, []).append(c.customer_id)
        heapq.heapify(u.timers)
        wm = u.watermark
        u.dedupe = RecentIds.restore(config.dedupe_horizon, seen, wm)
        u._ids = u.dedupe.ids
        u._id_order = u.dedupe.order
        if wm is not None:
            u._due_before = next_midnight_after(wm)
            u._forget_at = u.dedupe.next_expiry(wm)
        return u


def _second_day(cd: list[Any]) -> int:
    """The second-largest day in a flat [channel, day, ...] list; -1 with fewer than 2 channels."""
    first = second = -1
    for i in range(1, len(cd), 2):
        d = cd[i]
        if d > first:
            first, second = d, first
        elif d > second:
            second = d
    return second
