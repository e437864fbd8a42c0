"""Realistic synthetic traffic: sessions, carts, orders, refunds, feedback, churners, bad input.

Deterministic for a seed, so benchmarks and tests are repeatable. Events come in roughly
event-time order with a little lateness, as producers behind a queue would send them.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from stream_app.engine.clock import DAY, SECOND, format_instant, parse_rfc3339

START: int = parse_rfc3339("2024-01-01T00:00:00Z") or 0  # a valid literal: never 0

_BROWSE = ("page_view", "page_view", "page_view", "product_view", "product_view", "search")
_MARKETING = ("email_open", "email_click", "push_open", "sms_click")
_SOCIAL = ("follow", "like", "like", "share", "comment")

BAD_LINES: tuple[bytes, ...] = (
    b'{"event_id": "bad-1", "type": "page_view"',                          # invalid_json
    b'["not", "an", "object"]',                                            # not_an_object
    b'{"event_id": "bad-3", "type": "teleport", "customer_id": "x", "occurred_at": "2024-01-01T00:00:00Z"}',
    b'{"event_id": "bad-4", "type": "page_view", "occurred_at": "2024-01-01T00:00:00Z"}',
    b'{"event_id": "bad-5", "type": "order_placed", "customer_id": "x", "occurred_at": "2024-01-01 00:00:00",'
    b' "order_id": "o", "amount": 1}',
)


class Simulator:
    """Generates sessions for `customers` customers over `days` days from `start`."""

    def __init__(self, customers: int = 1000, seed: int = 7, start: int = START, days: int = 365,
                 bad_rate: float = 0.0, prefix: str = "cust") -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.start = start
        self.days = days
        self.bad_rate = bad_rate
        self.prefix = prefix
        self.seq = 0
        # A quarter of the customers churn: they stop coming back after a random day.
        self.churn_day = [self.rng.randrange(days) if self.rng.random() < 0.25 else days
                          for _ in range(customers)]

    def _id(self) -> str:
        self.seq += 1
        return f"ev-{self.seq}"

    def session(self, t: int) -> list[dict[str, Any]]:
        rng = self.rng
        n = rng.randrange(self.customers)
        if (t - self.start) // DAY > self.churn_day[n]:
            n = rng.randrange(self.customers)
        cid = f"{self.prefix}-{n}"
        out: list[dict[str, Any]] = []

        def emit(etype: str, **extra: Any) -> None:
            nonlocal t
            t += rng.randrange(5, 120) * SECOND
            out.append({"event_id": self._id(), "type": etype, "customer_id": cid,
                        "occurred_at": format_instant(t), "channel": "web", **extra})

        r = rng.random()
        if r < 0.08:
            emit(rng.choice(_MARKETING))
        for _ in range(rng.randrange(1, 6)):
            emit(rng.choice(_BROWSE))
        if r < 0.45:
            cart = f"cart-{self.seq}"
            emit("add_to_cart", cart_id=cart)
            if rng.random() < 0.6:
                emit("checkout_started", cart_id=cart)
                if rng.random() < 0.7:
                    guest = rng.random() < 0.08
                    amount = round(rng.lognormvariate(3.5, 1.0), 2)
                    order = f"ord-{self.seq}"
                    ev: dict[str, Any] = {"order_id": order, "amount": amount, "currency": "GBP"}
                    if guest:
                        ev["guest"] = True
                    emit("order_placed", **ev)
                    if guest and rng.random() < 0.5:
                        del out[-1]["customer_id"]  # an anonymous guest checkout
                    elif rng.random() < 0.05:
                        emit("order_refunded", order_id=order, amount=round(amount * rng.choice((0.5, 1.0)), 2) or 0.01)
        if rng.random() < 0.1:
            emit(rng.choice(_SOCIAL))
        if rng.random() < 0.03:
            emit("review", rating=rng.choice((1, 2, 3, 4, 5, 5)))
        if rng.random() < 0.02:
            emit("survey_response", nps=rng.randrange(11))
        if rng.random() < 0.005:
            emit("referral", referred_customer_id=f"{self.prefix}-{rng.randrange(self.customers)}")
        return out

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` events spread evenly over the period, a few arriving late."""
        step = max(1, self.days * DAY // max(count, 1)) * 4
        t = self.start
        made = 0
        late: list[dict[str, Any]] = []
        while made < count:
            t += self.rng.randrange(step) + 1
            for ev in self.session(t):
                if self.rng.random() < 0.01:
                    late.append(ev)  # delivered a little later than its neighbours
                    continue
                yield ev
                made += 1
                if late and self.rng.random() < 0.2:
                    yield late.pop(0)
                    made += 1
                if made >= count:
                    return

    def lines(self, count: int) -> Iterator[bytes]:
        import orjson

        for ev in self.events(count):
            if self.bad_rate and self.rng.random() < self.bad_rate:
                yield self.rng.choice(BAD_LINES)
            yield orjson.dumps(ev)


__all__ = ["Simulator", "BAD_LINES", "live_lines"]


def live_lines(sim: Simulator, speed: float = 1.0) -> Iterator[bytes]:
    """An endless stream whose event time follows the wall clock, `speed` times faster.

    At speed 1 event time is real time; a demo at 3600 shows an hour per second, so abandoned
    carts fire within seconds and daily sweeps (churn, demotions) every 24 s.
    """
    import time

    import orjson

    from stream_app.engine.clock import SECOND as _S

    wall0 = time.time()
    start = int(wall0) * _S
    sim.start = start
    t = start
    while True:
        t = max(t, start + int((time.time() - wall0) * speed * _S))
        for ev in sim.session(t):
            if sim.bad_rate and sim.rng.random() < sim.bad_rate:
                yield sim.rng.choice(BAD_LINES)
            yield orjson.dumps(ev)
