"""One processing unit (SPEC §2): dedupe, watermark, due work, and applying events.

A unit is one partition of the re-keyed stream, or the whole file in replay. It owns its customers,
its pending timers, its sweep index, its recent event ids and its store-KPI partial. Everything is
event time; nothing here reads a clock or does I/O. Outputs (tier changes, alerts) are appended to
lists the shell drains; customers touched since the last drain are in `changed`.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from array import array
from collections import deque
from typing import Any

from stream_app.engine.clock import DAY, format_instant, midnight_at_or_after, next_midnight_after
from stream_app.engine.config import BRONZE, DEFAULT_CONFIG, GOLD, SILVER, TIERS, EngineConfig
from stream_app.engine.customer import LN2, Customer, add_activity_bucket, add_order_bucket
from stream_app.engine.events import (
    CHECKOUT_STARTED, CLICKS, FIXED_POINTS, FIXED_WEIGHTS, ORDER_PLACED, ORDER_REFUNDED, REVIEW,
    SURVEY_RESPONSE, Event,
)
from stream_app.engine.kpis import KpiPartial

APPLIED = "applied"
DUPLICATE = "duplicate"


def alert_id(kind: str, customer_id: str, key: str) -> str:
    """Deterministic: the same input gives the same id, so consumers can de-duplicate."""
    digest = hashlib.blake2b(f"{kind}\x1f{customer_id}\x1f{key}".encode(), digest_size=16)
    return digest.hexdigest()


class Unit:
    def __init__(self, config: EngineConfig = DEFAULT_CONFIG) -> None:
        self.config = config
        self.watermark: int | None = None
        self.customers: dict[str, Customer] = {}
        #: event_id -> watermark right after its application; insertion order = watermark order
        self.seen: dict[str, int] = {}
        #: (watermark at application, event_id) in application order = watermark order
        self._seen_order: deque[tuple[int, str]] = deque()
        #: (deadline, customer_id); stale entries are skipped when popped
        self.timers: list[tuple[int, str]] = []
        #: day index of a midnight -> customers that sweep must look at (may hold stale ids)
        self.due: dict[int, list[str]] = {}
        self.kpis = KpiPartial(config.order_window_days)
        self.applied = 0
        self.duplicates = 0
        self.tier_changes: list[dict[str, Any]] = []
        self.alerts: list[dict[str, Any]] = []
        self.changed: set[str] = set()
        #: when a shell persists ids one by one: (event_id, watermark) applied, (event_id, None) forgotten
        self.id_log: list[tuple[str, int | None]] | None = None
        cfg = config
        self._demote_at = tuple(b * cfg.demotion_factor for b in cfg.tier_bounds)
        #: the first midnight after the watermark, and when the oldest remembered id expires:
        #: below both, a watermark move needs no due work (the hot path in `offer`)
        self._due_before = 0
        self._forget_at = 0
        self._promote_at = tuple(cfg.tier_bounds[1:]) + (math.inf,)
        self._decay = -LN2 / cfg.half_life  # S(T) = S(t)·exp((T − t)·_decay)

    # -- the one entry point -------------------------------------------------------------------
    def offer(self, ev: Event) -> str:
        """Dedupe, advance the watermark (running due work), apply. Returns APPLIED or DUPLICATE."""
        seen = self.seen
        if ev.event_id in seen:
            # Entries past the horizon are pruned on every advance, so presence means remembered.
            self.duplicates += 1
            return DUPLICATE
        t = ev.occurred_at
        wm = self.watermark
        if wm is None:
            self.watermark = wm = t
            self._forget_at = t + self.config.dedupe_horizon
            self._due_before = next_midnight_after(t)
            self.kpis.prune(t // DAY)
        elif t > wm:
            if t < self._due_before and (not self.timers or self.timers[0][0] >= t):
                self.watermark = t  # fast path: no midnight crossed, no timer due
                if t >= self._forget_at:
                    self._forget(t)
            else:
                self.advance(t)
            wm = t
        seen[ev.event_id] = wm
        self._seen_order.append((wm, ev.event_id))
        if self.id_log is not None:
            self.id_log.append((ev.event_id, wm))
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
            self._forget(t)
        self.kpis.prune(t // DAY)

    def _forget(self, wm: int) -> None:
        """Drop ids whose horizon the watermark has reached (oldest first: insertion order)."""
        seen, order = self.seen, self._seen_order
        horizon = self.config.dedupe_horizon
        while order:
            at, eid = order[0]
            if at + horizon > wm:
                self._forget_at = at + horizon
                return
            order.popleft()
            del seen[eid]
            if self.id_log is not None:
                self.id_log.append((eid, None))
        self._forget_at = wm + horizon

    # -- applying one event ----------------------------------------------------------------------
    def _apply(self, ev: Event) -> None:
        cfg = self.config
        cid = ev.customer_id
        etype = ev.type
        t = ev.occurred_at
        day = t // DAY
        if etype == ORDER_PLACED:
            w = 10.0 + min(ev.amount, 400.0) / 10.0
            self.kpis.add_order(day, ev.guest, cid is not None, ev.amount)
        elif etype == ORDER_REFUNDED:
            w = -min(ev.amount, 400.0) / 10.0
            self.kpis.add_refund(day, ev.amount)
        else:
            w = FIXED_WEIGHTS[etype]
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
            c.churn_alerted = False  # last_activity_at moved forward: a new inactivity spell
        c.events_total += 1

        if etype == ORDER_PLACED:
            amount = ev.amount
            c.points += math.floor(amount)
            c.orders_total += 1
            c.revenue_total += amount
            if c.first_order_at is None or t < c.first_order_at:
                c.first_order_at = t
            if c.last_order_at is None or t > c.last_order_at:
                c.last_order_at = t
            add_order_bucket(c, day, 1, 1 if ev.guest else 0, amount, cfg.order_window_days)
            self._top_order_day(c, day)
            cart = c.cart
            if cart is not None and cart[3] <= t <= cart[0]:
                c.cart = None  # the order completes the checkout: cancel the timer
            if c.latest_checkout_at is None or t >= c.latest_checkout_at:
                c.order_instants.append(t)
        elif etype == ORDER_REFUNDED:
            amount = ev.amount
            c.points -= math.floor(amount)
            c.revenue_total -= amount
            add_order_bucket(c, day, 0, 0, -amount, cfg.order_window_days)
        else:
            b = c.activity_buckets
            if ev.topic == CLICKS:
                if b and b[-3] == day:
                    b[-2] += 1  # the common case: today's bucket
                else:
                    add_activity_bucket(c, day, 1, 0, cfg.activity_window_days)
                if etype == CHECKOUT_STARTED:
                    self._checkout(c, ev)
            else:
                c.points += FIXED_POINTS.get(etype, 0)
                if b and b[-3] == day:
                    b[-1] += 1
                else:
                    add_activity_bucket(c, day, 0, 1, cfg.activity_window_days)

        s = c.s_ref
        tier = c.tier
        if first or (tier < 3 and s >= self._promote_at[tier]) or s < self._demote_at[tier]:
            self._evaluate_tier(c, c.t_ref, s, "event", first)

        if etype == REVIEW or etype == SURVEY_RESPONSE:
            self._feedback(c, ev)
        if c.tier >= SILVER or c.due_day >= 0:
            self._reschedule(c, self.watermark)  # type: ignore[arg-type]
        self.changed.add(cid)

    def _top_order_day(self, c: Customer, day: int) -> None:
        d1, d2 = c.top_order_days
        if day >= d1:
            new = (day, d1)
        elif day > d2:
            new = (d1, day)
        else:
            return
        self.kpis.move_customer((d1, d2), new)
        c.top_order_days = new

    def _checkout(self, c: Customer, ev: Event) -> None:
        t = ev.occurred_at
        latest = c.latest_checkout_at
        if latest is not None and t < latest:
            return  # older than a checkout already applied: does nothing
        c.latest_checkout_at = t
        deadline = t + self.config.cart_timeout
        instants = c.order_instants
        if instants and min(instants) < t:
            c.order_instants = instants = array("q", [x for x in instants if x >= t])
        c.cart = None
        for x in instants:
            if x <= deadline:
                return  # an already applied order lies in [t, t + 60 min]
        c.cart = (deadline, ev.event_id, ev.cart_id, t)
        heapq.heappush(self.timers, (deadline, c.customer_id))

    def _feedback(self, c: Customer, ev: Event) -> None:
        cfg = self.config
        if ev.type == REVIEW:
            if ev.rating > cfg.negative_rating_max:  # type: ignore[operator]
                return
            detail: dict[str, Any] = {"event_id": ev.event_id, "rating": ev.rating}
        else:
            if ev.nps > cfg.negative_nps_max:  # type: ignore[operator]
                return
            detail = {"event_id": ev.event_id, "nps": ev.nps}
        t = ev.occurred_at
        if c.feedback_at is not None and c.feedback_at > t - cfg.feedback_cooldown:
            return
        c.feedback_at = t
        severity = "high" if c.tier >= GOLD else "medium"
        self._alert("negative_feedback", severity, c.customer_id, t, detail, ev.event_id)

    # -- tiers, timers, sweeps -------------------------------------------------------------------
    def _tier_of(self, s: float) -> int:
        bounds = self.config.tier_bounds
        tier = BRONZE
        for i in range(1, len(bounds)):
            if s >= bounds[i]:
                tier = i
        return tier

    def _evaluate_tier(self, c: Customer, at: int, s: float, reason: str, first: bool = False) -> None:
        tier = c.tier
        if first:
            new = self._tier_of(s)
        elif tier < len(self._demote_at) - 1 and s >= self.config.tier_bounds[tier + 1]:
            new = self._tier_of(s)  # promotion
        elif tier > BRONZE and s < self._demote_at[tier]:
            new = self._tier_of(s)  # demotion past the hysteresis band
        else:
            return
        self.tier_changes.append({
            "customer_id": c.customer_id,
            "from_tier": None if first else TIERS[tier],
            "to_tier": TIERS[new],
            "score": max(0.0, s),
            "at": format_instant(at),
            "reason": reason,
        })
        c.tier = new
        c.tier_since = at

    def _timer_live(self, entry: tuple[int, str]) -> bool:
        c = self.customers.get(entry[1])
        return c is not None and c.cart is not None and c.cart[0] == entry[0]

    def _fire_timer(self, entry: tuple[int, str]) -> None:
        deadline, cid = entry
        c = self.customers[cid]
        _, checkout_id, cart_id, checkout_at = c.cart  # type: ignore[misc]
        c.cart = None
        self._alert("abandoned_cart", "low", cid, deadline, {
            "checkout_event_id": checkout_id, "cart_id": cart_id,
            "checkout_at": format_instant(checkout_at),
        }, checkout_id)
        self.changed.add(cid)

    def _sweep(self, midnight: int) -> None:
        day = midnight // DAY
        ids = self.due.pop(day, None)
        if not ids:
            return
        cfg = self.config
        for cid in sorted(set(ids)):
            c = self.customers[cid]
            if c.due_day != day:
                continue  # rescheduled since: a stale index entry
            c.due_day = -1
            s = c.score_at(midnight, cfg.half_life)
            if c.tier >= SILVER and not c.churn_alerted and c.t_ref <= midnight - cfg.churn_after:
                c.churn_alerted = True
                self._alert("churn_risk", "high" if c.tier >= GOLD else "medium", cid, midnight, {
                    "last_activity_at": format_instant(c.t_ref),
                    "days_inactive": (midnight - c.t_ref) // DAY,
                    "tier": TIERS[c.tier],
                }, str(midnight))
            self._evaluate_tier(c, midnight, s, "sweep")
            self._reschedule(c, midnight)
            self.changed.add(cid)

    def _reschedule(self, c: Customer, after: int) -> None:
        """Index the customer under the first midnight > `after` when a sweep may act on it."""
        if c.tier < SILVER:
            due = -1  # bronze: no churn alert, no demotion; only an event can change that
        else:
            cfg = self.config
            theta = self._demote_at[c.tier]
            if c.s_ref < theta:
                cand = after
            else:
                # S crosses theta at t_ref + H·log2(s_ref/theta); take the midnight at or before
                # it and let the sweep check exactly (the float may land either side).
                cross = c.t_ref + cfg.half_life * math.log2(c.s_ref / theta)
                cand = int(cross) // DAY * DAY
            if not c.churn_alerted:
                cand = min(cand, midnight_at_or_after(c.t_ref + cfg.churn_after))
            due = max(cand, next_midnight_after(after)) // DAY
        if due != c.due_day:
            c.due_day = due
            if due >= 0:
                self.due.setdefault(due, []).append(c.customer_id)

    def _alert(self, kind: str, severity: str, cid: str, at: int, details: dict[str, Any],
               key: str) -> None:
        self.alerts.append({
            "alert_id": alert_id(kind, cid, f"{key}\x1f{at}"),
            "type": kind,
            "severity": severity,
            "customer_id": cid,
            "at": format_instant(at),
            "details": details,
        })

    # -- reading ---------------------------------------------------------------------------------
    def record(self, customer_id: str, as_of: int | None = None) -> dict[str, Any] | None:
        c = self.customers.get(customer_id)
        if c is None:
            return None
        return c.record(c.t_ref if as_of is None else max(as_of, c.t_ref), self.config)

    def drain(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
        """Hand the outputs since the last drain to the shell."""
        out = (self.tier_changes, self.alerts, self.changed)
        self.tier_changes, self.alerts, self.changed = [], [], set()
        return out

    # -- persistence: the shell stores customers, ids and the unit core under separate keys ------
    def core_state(self) -> dict[str, Any]:
        """Unit-level state other than customers and remembered ids (those have their own keys)."""
        return {
            "watermark": self.watermark,
            "kpis": self.kpis.to_state(),
            "applied": self.applied,
            "duplicates": self.duplicates,
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
        for c in customers:
            u.customers[c.customer_id] = c
            if c.cart is not None:
                u.timers.append((c.cart[0], c.customer_id))
            if c.due_day >= 0:
                u.due.setdefault(c.due_day, []).append(c.customer_id)
        heapq.heapify(u.timers)
        wm = u.watermark
        horizon = config.dedupe_horizon
        for eid, at in sorted(seen, key=lambda e: e[1]):
            if wm is None or at + horizon > wm:
                u.seen[eid] = at
                u._seen_order.append((at, eid))
        if wm is not None:
            u._due_before = next_midnight_after(wm)
            u._forget_at = u._seen_order[0][0] + horizon if u._seen_order else wm + horizon
        return u
