"""Realistic synthetic traffic: sessions on several channels, carts, orders, refunds, feedback,
marketing campaigns with their opens and clicks, churners, erasure requests and bad input.

Deterministic for a seed, so benchmarks and tests are repeatable. Events come in roughly
event-time order with a little lateness, as producers behind a queue would send them.

Mix (100k events, 5,000 customers, seed 1): browsing, carts and orders about 90 %, social and
feedback about 3.5 %, campaign sends (`*_sent`) about 5.3 %, their opens and clicks about 1.4 %,
`customer_erased` about 0.02 %. Sessions are on web, app and store, 2 % with a channel spelt
otherwise ("APP") or unknown ("Kiosk"); sends and responses carry their medium or no channel.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from typing import Any

from stream_app.engine.clock import DAY, MINUTE, SECOND, format_instant, parse_rfc3339

START: int = parse_rfc3339("2024-01-01T00:00:00Z") or 0  # a valid literal: never 0

_BROWSE = ("page_view", "page_view", "page_view", "product_view", "product_view", "search")
_SOCIAL = ("follow", "like", "like", "share", "comment")
#: where a session happens; store sessions are in-store purchases scanned at the till
_SESSION_CHANNELS = ("web", "app", "store")
_SESSION_WEIGHTS = (60, 32, 8)
#: channels as careless producers send them: case variants count as their channel, unknown ones
#: as `other` (SPEC §1)
_ODD_CHANNELS = ("Web", "APP", "Store", "Kiosk", "call-centre")
#: campaign medium -> (share of campaigns, send type, responses: (type, probability, after type))
_CAMPAIGNS: dict[str, tuple[float, str, tuple[tuple[str, float, str | None], ...]]] = {
    "email": (0.6, "email_sent", (("email_open", 0.3, None), ("email_click", 0.25, "email_open"))),
    "push": (0.25, "push_sent", (("push_open", 0.12, None),)),
    "sms": (0.15, "sms_sent", (("sms_click", 0.08, None),)),
}
#: feedback as stores see it: CSAT about 60 %, NPS about +20 (45 % promoters, 25 % detractors)
_RATINGS = (1, 2, 3, 4, 4, 5, 5, 5)
_NPS_WEIGHTS = (2, 1, 1, 2, 3, 6, 10, 12, 18, 25, 20)

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
                 bad_rate: float = 0.0, prefix: str = "cust", campaign_rate: float = 0.01,
                 erase_rate: float = 0.001) -> None:
        self.rng = random.Random(seed)
        self.customers = customers
        self.start = start
        self.days = days
        self.bad_rate = bad_rate
        self.prefix = prefix
        self.campaign_rate = campaign_rate  # chance that a step also starts a campaign
        self.erase_rate = erase_rate        # chance that a step also erases a customer
        self.seq = 0
        # A quarter of the customers churn: they stop coming back after a random day.
        self.churn_day = [self.rng.randrange(days) if self.rng.random() < 0.25 else days
                          for _ in range(customers)]
        #: campaign events not due yet: (occurred_at, seq, event)
        self.pending: list[tuple[int, int, dict[str, Any]]] = []

    def _id(self) -> str:
        self.seq += 1
        return f"ev-{self.seq}"

    def _churned(self, n: int, t: int) -> bool:
        return (t - self.start) // DAY > self.churn_day[n]

    def step(self, t: int) -> list[dict[str, Any]]:
        """What producers send around instant `t`: campaign events now due, maybe an erasure,
        maybe a new campaign (its sends and responses come in later steps), and one session."""
        rng = self.rng
        out: list[dict[str, Any]] = []
        while self.pending and self.pending[0][0] <= t:
            out.append(heapq.heappop(self.pending)[2])
        if rng.random() < self.erase_rate:
            cid = f"{self.prefix}-{rng.randrange(self.customers)}"
            out.append({"event_id": self._id(), "type": "customer_erased", "customer_id": cid,
                        "occurred_at": format_instant(t)})
            # the store stops tracking the customer: its campaign responses are not sent either
            self.pending = [p for p in self.pending if p[2]["customer_id"] != cid]
            heapq.heapify(self.pending)
        if rng.random() < self.campaign_rate:
            self.campaign(t)
        out += self.session(t)
        return out

    def campaign(self, t: int) -> None:
        """A batch of sends of one medium to some customers over a few minutes, then opens and
        clicks from some of those still active, minutes to hours later."""
        rng = self.rng
        medium = rng.choices(list(_CAMPAIGNS), [c[0] for c in _CAMPAIGNS.values()])[0]
        _, sent_type, responses = _CAMPAIGNS[medium]
        size = min(self.customers, rng.randrange(10, 41))
        at = t
        for n in rng.sample(range(self.customers), size):
            at += rng.randrange(1, 6) * SECOND
            cid = f"{self.prefix}-{n}"
            self._schedule(at, sent_type, cid, medium)
            if self._churned(n, at):
                continue
            done: dict[str, int] = {}
            for etype, prob, after in responses:
                if (after is not None and after not in done) or rng.random() >= prob:
                    continue
                base = done[after] if after is not None else at
                done[etype] = base + min(int(rng.lognormvariate(4.0, 1.2) * MINUTE), 2 * DAY)  # median ~1 h
                self._schedule(done[etype], etype, cid, medium)

    def _schedule(self, at: int, etype: str, cid: str, medium: str) -> None:
        ev: dict[str, Any] = {"event_id": self._id(), "type": etype, "customer_id": cid,
                              "occurred_at": format_instant(at)}
        if self.rng.random() < 0.5:  # else the type's own channel applies (SPEC §1)
            ev["channel"] = medium
        heapq.heappush(self.pending, (at, self.seq, ev))

    def _session_channel(self) -> str:
        rng = self.rng
        if rng.random() < 0.02:
            return rng.choice(_ODD_CHANNELS)
        return rng.choices(_SESSION_CHANNELS, _SESSION_WEIGHTS)[0]

    def session(self, t: int) -> list[dict[str, Any]]:
        rng = self.rng
        n = rng.randrange(self.customers)
        if self._churned(n, t):
            n = rng.randrange(self.customers)
        cid = f"{self.prefix}-{n}"
        channel = self._session_channel()
        out: list[dict[str, Any]] = []

        def emit(etype: str, ch: str | None = channel, **extra: Any) -> None:
            nonlocal t
            t += rng.randrange(5, 120) * SECOND
            ev = {"event_id": self._id(), "type": etype, "customer_id": cid,
                  "occurred_at": format_instant(t), **extra}
            if ch is not None:
                ev["channel"] = ch
            out.append(ev)

        def feedback_channel() -> str | None:
            # mostly the type's own (social), sometimes where it was written
            return rng.choice((None, None, None, channel, "email"))

        r = rng.random()
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
            emit(rng.choice(_SOCIAL), ch=rng.choice((None, None, "social", "app")))
        if rng.random() < 0.03:
            emit("review", ch=feedback_channel(), rating=rng.choice(_RATINGS))
        if rng.random() < 0.02:
            emit("survey_response", ch=feedback_channel(), nps=rng.choices(range(11), _NPS_WEIGHTS)[0])
        if rng.random() < 0.005:
            emit("referral", ch=None, referred_customer_id=f"{self.prefix}-{rng.randrange(self.customers)}")
        return out

    def events(self, count: int) -> Iterator[dict[str, Any]]:
        """`count` events spread evenly over the period, a few arriving late."""
        step = max(1, self.days * DAY // max(count, 1)) * 4
        t = self.start
        made = 0
        late: list[dict[str, Any]] = []
        while made < count:
            t += self.rng.randrange(step) + 1
            for ev in self.step(t):
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
        for ev in sim.step(t):
            if sim.bad_rate and sim.rng.random() < sim.bad_rate:
                yield sim.rng.choice(BAD_LINES)
            yield orjson.dumps(ev)
