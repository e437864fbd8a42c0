"""One processing unit (SPEC §2): dedupe, the watermark and the due work it runs (timers, sweeps).

A unit is one partition of the re-keyed stream, or the whole file in replay. What it owns and what
applying an event does to it (customers, store-KPI partial, timer heap, sweep index, pending
outputs) is `apply.Scoring`; here are the recent event ids, the watermark, firing the timers and
the daily sweeps when it moves, the one drain of the outputs, and persistence. Everything is event
time; nothing here reads a clock or does I/O.
"""

from __future__ import annotations

import heapq
from typing import NamedTuple

from stream_app.engine.alerts import abandoned_cart, churn_risk
from stream_app.engine.apply import Scoring
from stream_app.engine.clock import DAY, next_midnight_after
from stream_app.engine.config import DEFAULT_CONFIG, EngineConfig
from stream_app.engine.customer import Customer
from stream_app.engine.dedupe import RecentIds
from stream_app.engine.events import Event
from stream_app.engine.kpis import KpiPartial
from stream_app.engine.records import CustomerRecord, Outputs
from stream_app.engine.segments import segment_change

APPLIED = "applied"
DUPLICATE = "duplicate"


class UnitCore(NamedTuple):
    """What the unit record holds of the unit (`Unit.core`, `formats.encode_unit`)."""

    watermark: int | None
    kpis: KpiPartial
    applied: int
    duplicates: int
    erasures: int
    #: the last sweep midnight (SPEC §5), None before the first
    last_sweep: int | None
    #: the first sweep midnight, None before it
    first_sweep: int | None
    #: the segment names the customers' membership bits refer to (definition order)
    segment_names: tuple[str, ...]
    #: `SegmentSet.digest` of the definitions the state was built with ("" before segments)
    segment_digest: str


class Unit(Scoring):
    """`Scoring` (customers, KPIs, indexes, outputs and `apply`) in event time: dedupe, the
    watermark, and the due work a watermark move runs."""

    def __init__(self, config: EngineConfig = DEFAULT_CONFIG) -> None:
        super().__init__(config)
        self.watermark: int | None = None
        self.dedupe = RecentIds(config.dedupe_horizon)
        self.applied = 0
        self.duplicates = 0
        #: the first midnight after the watermark, and when the oldest remembered id expires:
        #: below both, a watermark move needs no due work (the hot path in `offer`)
        self._due_before = 0
        self._forget_at = 0

    @property
    def seen(self) -> dict[str, int]:
        """Remembered event ids -> watermark right after their application."""
        return self.dedupe.ids

    # -- the one entry point -------------------------------------------------------------------
    def offer(self, ev: Event) -> str:
        """Dedupe, advance the watermark (running due work), apply. Returns APPLIED or DUPLICATE."""
        if ev.event_id in self.dedupe.ids:
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
        self.dedupe.remember(ev.event_id, wm)
        self.apply(ev, wm)
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
        if next_midnight_after(wm) <= t:  # a sweep ran at every midnight in (wm, t], if only in name
            self.last_sweep = t - t % DAY
            if self.first_sweep is None:
                self.first_sweep = next_midnight_after(wm)
        self.watermark = t
        self._due_before = next_midnight_after(t)
        if t >= self._forget_at:
            self._forget_at = self.dedupe.forget(t)
        self.kpis.prune(t // DAY)

    # -- timers and sweeps ----------------------------------------------------------------------
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
            tier_before = c.tier
            self.evaluate_tier(c, midnight, c.score_at(midnight, cfg.half_life), "sweep")
            change = -1
            partial = False
            if self.has_segments:
                ss = self.segment_set
                # at a midnight only time and the tier change: the segments time may change (live:
                # no false predicate that only an event can make true) when one is due here, and
                # those reading the tier when it moved
                mask = ss.reads_tier if c.tier != tier_before else 0
                sd = c.segments_due
                if sd == 0 or 0 < sd <= day:
                    mask |= c.segments_live & ss.timed_mask
                else:
                    partial = True  # a visit for the tier or churn: the segments' day stands
                change = ss.evaluate(c, midnight, "sweep", self.kpis.segments, self.segment_changes, mask)
            self.reschedule(c, midnight, change, partial)
            self.changed.add(cid)

    # -- reading ---------------------------------------------------------------------------------
    def record(self, customer_id: str, as_of: int | None = None) -> CustomerRecord | None:
        """The customer's record (None: unknown); the rule of `Customer.read`: as_of None means
        the customer's clock, an as_of before it raises AsOfBeforeClock."""
        c = self.customers.get(customer_id)
        return None if c is None else c.read(as_of, self.config, self.segment_set.held(c.segments))

    def drain(self) -> Outputs:
        """Hand the shell everything produced since the last drain; the unit keeps none of it."""
        out = Outputs(self.tier_changes, self.alerts, self.changed, self.erased, self.erased_tiers,
                      self.dedupe.take_log(), self.segment_changes)
        self.tier_changes, self.alerts, self.changed, self.erased, self.erased_tiers = [], [], set(), [], []
        self.segment_changes = []
        return out

    def log_ids(self) -> None:
        """From now on, `drain` also hands over the event ids remembered and forgotten (for a
        shell that persists them: the stream's changelog)."""
        self.dedupe.start_log()

    # -- persistence: the shell stores customers, ids and the unit core under separate keys ------
    def core(self) -> UnitCore:
        """Unit-level state other than customers and remembered ids (those have their own keys);
        `formats.encode_unit` writes it."""
        return UnitCore(self.watermark, self.kpis, self.applied, self.duplicates, self.erasures,
                        self.last_sweep, self.first_sweep, self.segment_set.names, self.segment_set.digest)

    @classmethod
    def from_parts(cls, core: UnitCore | None, customers: list[Customer],
                   seen: list[tuple[str, int]], config: EngineConfig = DEFAULT_CONFIG) -> Unit:
        """Rebuild a unit from persisted parts; timers, the sweep index and the segment counts
        derive from customers. State built under other segment definitions is re-evaluated
        (`_redefine`) before anything else is processed."""
        u = cls(config)
        ss = u.segment_set
        names = ss.names
        remap: list[int] | None = None
        removed: list[tuple[int, str]] = []
        redefined = False
        if core is not None:
            (u.watermark, kpis, u.applied, u.duplicates, u.erasures, u.last_sweep, u.first_sweep, old_names,
             old_digest) = core
            kpis.segments = dict.fromkeys(names, 0)  # recounted below, from the customers
            u.kpis = kpis
            redefined = old_digest != ss.digest and bool(customers)
            if old_names != names:
                remap = [names.index(n) if n in names else -1 for n in old_names]
                removed = [(i, n) for i, n in enumerate(old_names) if n not in names]
        counts = u.kpis.segments
        for c in customers:
            if c.segments:
                for i, name in removed:  # a segment no longer defined: every member leaves it
                    if c.segments >> i & 1:
                        u.segment_changes.append(segment_change(c.customer_id, name, False,
                                                                u.watermark or 0, "definitions"))
                if remap is not None:
                    c.segments = sum(1 << j for i, j in enumerate(remap) if j >= 0 and c.segments >> i & 1)
                for i, name in enumerate(names):
                    if c.segments >> i & 1:
                        counts[name] += 1
            u.customers[c.customer_id] = c
            if c.cart is not None:
                u.timers.append((c.cart.deadline, c.customer_id))
            if c.due_day >= 0:
                u.due.setdefault(c.due_day, []).append(c.customer_id)
        heapq.heapify(u.timers)
        wm = u.watermark
        u.dedupe = RecentIds.restore(config.dedupe_horizon, seen, wm)
        if wm is not None:
            u._due_before = next_midnight_after(wm)
            u._forget_at = u.dedupe.next_expiry(wm)
            if redefined:
                u._redefine(wm)
        return u

    def _redefine(self, wm: int) -> None:
        """Issue 19: state built under other definitions: every customer is re-evaluated at the
        watermark, in customer_id order, before any input; the differences are published with
        reason "definitions" (docs/STREAM.md)."""
        ss = self.segment_set
        for cid in sorted(self.customers):
            c = self.customers[cid]
            change = ss.evaluate(c, wm, "definitions", self.kpis.segments, self.segment_changes, ss.all)
            self.reschedule(c, wm, change, True)
            self.changed.add(cid)

