"""Store KPIs (SPEC §7) as mergeable per-unit partials.

Counts live in per-day buckets; distinct customers are counted without sets (DESIGN.md): a customer
has ≥ 1 order in the window iff its latest order day is in it, ≥ 2 iff its second-latest is. The
histograms `latest` and `second` (day -> customers) therefore give `customers` and
`repeat_customers` as suffix sums, and they add across partitions because every customer lives in
exactly one unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from stream_app.engine.clock import day_of, format_optional


class TopOrderDays(NamedTuple):
    """Day indexes of a customer's two latest order_placed events (-1 when fewer): it has ≥ 1
    order in a window iff `latest` is in it, ≥ 2 iff `second` is."""

    latest: int
    second: int


NO_ORDER_DAYS = TopOrderDays(-1, -1)


class KpiPartial:
    __slots__ = ("buckets", "floor_day", "latest", "second", "window_days")

    def __init__(self, window_days: int = 365) -> None:
        self.window_days = window_days
        #: day -> [orders, guest_orders, identified_orders, revenue]
        self.buckets: dict[int, list[Any]] = {}
        self.latest: dict[int, int] = {}
        self.second: dict[int, int] = {}
        #: days below this can never be in a window again (the watermark only moves forward)
        self.floor_day = -(10**9)

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

    def add_order_day(self, top: TopOrderDays, day: int) -> TopOrderDays:
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
        for hist, o, n in ((self.latest, old[0], new[0]), (self.second, old[1], new[1])):
            if o == n:
                continue
            if o >= self.floor_day and o >= 0:
                left = hist[o] - 1
                if left:
                    hist[o] = left
                else:
                    del hist[o]
            if n >= self.floor_day and n >= 0:
                hist[n] = hist.get(n, 0) + 1

    def prune(self, watermark_day: int) -> None:
        floor = watermark_day - (self.window_days - 1)
        if floor <= self.floor_day:
            return
        self.floor_day = floor
        for d in [d for d in self.buckets if d < floor]:
            del self.buckets[d]
        for hist in (self.latest, self.second):
            for d in [d for d in hist if d < floor]:
                del hist[d]

    # -- merging and reading ---------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {
            "window_days": self.window_days,
            "floor_day": self.floor_day,
            "buckets": {str(d): b for d, b in self.buckets.items()},
            "latest": {str(d): n for d, n in self.latest.items()},
            "second": {str(d): n for d, n in self.second.items()},
        }

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> KpiPartial:
        k = cls(s["window_days"])
        k.floor_day = s["floor_day"]
        k.buckets = {int(d): list(b) for d, b in s["buckets"].items()}
        k.latest = {int(d): n for d, n in s["latest"].items()}
        k.second = {int(d): n for d, n in s["second"].items()}
        return k

    def merge(self, other: KpiPartial) -> None:
        for d, b in other.buckets.items():
            mine = self.buckets.setdefault(d, [0, 0, 0, 0.0])
            for i in range(4):
                mine[i] += b[i]
        for hist, theirs in ((self.latest, other.latest), (self.second, other.second)):
            for d, n in theirs.items():
                hist[d] = hist.get(d, 0) + n

    def document(self, as_of: int | None) -> dict[str, Any]:
        """The KPI document over the window at `as_of` (None: no applied event yet)."""
        orders = guests = identified = customers = repeat = 0
        revenue = 0.0
        if as_of is not None:
            lo = day_of(as_of) - (self.window_days - 1)
            hi = day_of(as_of)
            for d in sorted(self.buckets):
                if lo <= d <= hi:
                    b = self.buckets[d]
                    orders += b[0]
                    guests += b[1]
                    identified += b[2]
                    revenue += b[3]
            customers = sum(n for d, n in self.latest.items() if lo <= d <= hi)
            repeat = sum(n for d, n in self.second.items() if lo <= d <= hi)
        return {
            "as_of": format_optional(as_of),
            "window_days": self.window_days,
            "orders": orders,
            "guest_orders": guests,
            "identified_orders": identified,
            "revenue": revenue,
            "customers": customers,
            "repeat_customers": repeat,
            "guest_checkout_rate": guests / orders if orders else None,
            "average_order_value": revenue / orders if orders else None,
            "purchase_frequency": identified / customers if customers else None,
            "repeat_purchase_rate": repeat / customers if customers else None,
        }



def store_document(parts: Iterable[tuple[int | None, KpiPartial]], window_days: int) -> dict[str, Any]:
    """The store KPI document from every unit's (watermark, partial), read at the largest
    watermark (None when no unit has applied an event). Partials add up because every customer
    lives in exactly one unit (SPEC §7)."""
    merged = KpiPartial(window_days)
    as_of: int | None = None
    for watermark, partial in parts:
        merged.merge(partial)
        if watermark is not None and (as_of is None or watermark > as_of):
            as_of = watermark
    return merged.document(as_of)
