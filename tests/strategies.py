"""Hypothesis strategies for realistic, valid event streams (SPEC §1), in arrival order.

A stream is built from short per-customer "episodes" (browse, shop, buy, refund, social,
feedback, guest checkout) separated by gaps from zero (same instant) to months, sometimes
negative (late data), then sprinkled with exact re-sends of earlier events (soon after, or at the
very end, possibly after the 7-day duplicate memory has lapsed) and a few local swaps.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from tests.oracle import parse_instant

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
START = (datetime(2024, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
END = (datetime(2026, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1) - 1

CUSTOMER_POOL = ["alice", "bob", "c-003", "Carol", "dave_4", "eve", "zed", "0042", "ève"]
CLICK_TYPES = ["page_view", "product_view", "search", "add_to_cart", "checkout_started",
               "email_open", "email_click", "push_open", "sms_click"]
SOCIAL_PLAIN = ["follow", "like", "share", "comment"]
CHANNELS = ["web", "app", "store", "email", "sms", "push", "social"]
#: SPEC §1 channel spellings beyond the configured ones: mixed case, empty, unknown (-> other)
ODD_CHANNELS = ["WEB", "App", "", "Kiosk", "tv", "SMS", "other"]
SENDS = {"email": ("email_sent", ["email_open", "email_click"]), "push": ("push_sent", ["push_open"]),
         "sms": ("sms_sent", ["sms_click"])}


# ---------------------------------------------------------------- instants


def _local_string(us: int, offset_minutes: int, frac_digits: int, extra: str, lower: bool) -> str:
    dt = _EPOCH + timedelta(microseconds=us) + timedelta(minutes=offset_minutes)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    micros = us % SECOND
    if frac_digits:
        text += "." + f"{micros:06d}"[:frac_digits] + extra
    if offset_minutes == 0 and not lower:
        zone = "Z"
    elif offset_minutes == 0:
        zone = "z"
    else:
        sign = "+" if offset_minutes > 0 else "-"
        zone = f"{sign}{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    if lower:
        text = text.replace("T", "t")
    return text + zone


@st.composite
def occurred_at(draw, us: int):
    """A representation of (about) instant ``us``: epoch ms, or a string with Z/offset."""
    form = draw(st.sampled_from(["ms", "z", "z", "offset", "lower"]))
    if form == "ms":
        return us // 1000
    frac_digits = draw(st.sampled_from([0, 3, 6, 9]))
    if frac_digits < 6:  # make the instant representable: drop what the string cannot carry
        us -= us % (10 ** (6 - frac_digits))
    extra = draw(st.sampled_from(["000", "999", "417"])) if frac_digits == 9 else ""
    frac_digits = min(frac_digits, 6)
    if form == "offset":
        offset = draw(st.sampled_from([0, 60, -300, 330, 345, -570, 840, -720]))
    else:
        offset = 0
    return _local_string(us, offset, frac_digits, extra, lower=form == "lower")


def instant_to_string(us: int) -> str:
    return _local_string(us, 0, 6, "", lower=False)


# ---------------------------------------------------------------- events


@st.composite
def amounts(draw, positive: bool = False):
    cents = draw(st.one_of(
        st.integers(0, 15_000), st.integers(15_000, 80_000),
        st.sampled_from([0, 1, 999, 10_000, 40_000, 40_001, 100_000]),
    ))
    if positive:
        cents = max(cents, 1)
    if cents % 100 == 0 and draw(st.booleans()):
        return cents // 100  # JSON integer
    return round(cents / 100, 2)


@st.composite
def envelope_extras(draw) -> dict:
    extra = {}
    pick = draw(st.integers(0, 5))
    if pick <= 1:
        extra["channel"] = draw(st.sampled_from(CHANNELS))
    elif pick == 2:
        extra["channel"] = draw(st.sampled_from(ODD_CHANNELS))
    if draw(st.integers(0, 5)) == 0:
        extra["schema_version"] = draw(st.integers(1, 3))
    if draw(st.integers(0, 9)) == 0:
        extra["x_trace"] = {"unknown": [1, 2]}
    return extra


class _Builder:
    """Accumulates events; times are integer microseconds until rendering."""

    def __init__(self, draw):
        self.draw = draw
        self.events: list[dict] = []
        self.orders: list[tuple[str, str | None, bool]] = []  # (order_id, customer, guest)

    def emit(self, us: int, kind: str, customer: str | None, **fields) -> None:
        us = min(max(us, START), END)
        ev = {"event_id": f"ev-{len(self.events):04d}", "type": kind}
        if customer is not None:
            ev["customer_id"] = customer
        elif self.draw(st.booleans()):
            ev["customer_id"] = None  # null counts as absent
        ev["occurred_at"] = self.draw(occurred_at(us))
        ev.update(fields)
        ev.update(self.draw(envelope_extras()))
        self.events.append(ev)

    def order(self, us: int, customer: str | None, guest: bool) -> None:
        order_id = f"o-{len(self.orders)}"
        fields = {"order_id": order_id, "amount": self.draw(amounts())}
        if guest or self.draw(st.integers(0, 4)) == 0:
            fields["guest"] = guest
        if self.draw(st.integers(0, 2)) == 0:
            fields["currency"] = "GBP"
        self.orders.append((order_id, customer, guest))
        self.emit(us, "order_placed", customer, **fields)

    def refund(self, us: int, customer: str | None) -> None:
        mine = [o for o in self.orders if o[1] == customer]
        if mine:
            order_id, customer, guest = self.draw(st.sampled_from(mine))
        else:
            order_id, guest = "o-unknown", customer is None
        fields = {"order_id": order_id, "amount": self.draw(amounts(positive=True))}
        if guest:
            fields["guest"] = True
        self.emit(us, "order_refunded", customer, **fields)

    def cart_fields(self) -> dict:
        choice = self.draw(st.integers(0, 3))
        if choice == 0:
            return {}
        if choice == 1:
            return {"cart_id": None}
        return {"cart_id": f"cart-{self.draw(st.integers(0, 5))}"}


_GAPS = st.one_of(
    st.just(0),
    st.integers(0, 10 * MINUTE),
    st.integers(0, 20 * HOUR),
    st.integers(0, 9 * DAY),
    st.integers(20 * DAY, 120 * DAY),  # months-long quiet spells
    st.integers(-3 * DAY, 0),  # late data
    st.integers(-40 * DAY, -3 * DAY),  # a late batch
    st.sampled_from([DAY, 24 * HOUR - 1, 60 * MINUTE, 30 * DAY, 7 * DAY]),
)
_STEPS = st.one_of(
    st.just(0), st.integers(1, 50 * MINUTE), st.sampled_from([60 * MINUTE, 60 * MINUTE + 1000]),
    st.integers(61 * MINUTE, 5 * HOUR),
)
EPISODES = ["browse", "shop", "buy", "buy", "refund", "social", "feedback", "guest", "guest_known",
            "campaign", "campaign", "erase", "shop_then_erase"]


@st.composite
def event_streams(draw, max_episodes: int = 24, duplicates: bool = True) -> list[dict]:
    """A list of valid events in arrival order."""
    b = _Builder(draw)
    n_customers = draw(st.integers(3, 6))
    customers = draw(st.lists(st.sampled_from(CUSTOMER_POOL), min_size=n_customers,
                              max_size=n_customers, unique=True))
    t = draw(st.integers(START, END - 30 * DAY))
    for _ in range(draw(st.integers(0, max_episodes))):
        t = min(max(t + draw(_GAPS), START), END)
        who = draw(st.sampled_from(customers))
        kind = draw(st.sampled_from(EPISODES))
        u = t
        if kind == "browse":
            for _ in range(draw(st.integers(1, 4))):
                b.emit(u, draw(st.sampled_from(CLICK_TYPES)), who, **b.cart_fields())
                u += draw(_STEPS)
        elif kind in ("shop", "buy"):
            b.emit(u, "add_to_cart", who, **b.cart_fields())
            u += draw(_STEPS)
            b.emit(u, "checkout_started", who, **b.cart_fields())
            if kind == "buy" or draw(st.booleans()):
                u += draw(_STEPS)
                for _ in range(draw(st.integers(1, 3))):
                    b.order(u, who, guest=draw(st.integers(0, 5)) == 0)
        elif kind == "refund":
            b.refund(u, who)
        elif kind == "social":
            for _ in range(draw(st.integers(1, 3))):
                social = draw(st.sampled_from(SOCIAL_PLAIN + ["referral", "review"]))
                fields = {}
                if social == "review":
                    fields["rating"] = draw(st.integers(1, 5))
                if social == "referral" and draw(st.booleans()):
                    fields["referred_customer_id"] = draw(st.sampled_from(CUSTOMER_POOL))
                b.emit(u, social, who, **fields)
                u += draw(_STEPS)
        elif kind == "feedback":
            for _ in range(draw(st.integers(1, 3))):
                if draw(st.booleans()):
                    b.emit(u, "review", who, rating=draw(st.integers(1, 5)))
                else:
                    b.emit(u, "survey_response", who, nps=draw(st.integers(0, 10)))
                u += draw(st.one_of(_STEPS, st.sampled_from([24 * HOUR, 24 * HOUR - 1000]),
                                    st.integers(20 * HOUR, 30 * HOUR)))
        elif kind == "guest":
            if draw(st.integers(0, 3)) == 0:
                b.refund(u, None)
            else:
                b.order(u, None, guest=True)
        elif kind == "campaign":  # SPEC §1 *_sent, then maybe opens and clicks later
            medium = draw(st.sampled_from(sorted(SENDS)))
            sent, reactions = SENDS[medium]
            b.emit(u, sent, who)
            for _ in range(draw(st.integers(0, 2))):
                u += draw(st.one_of(_STEPS, st.integers(HOUR, 3 * DAY)))
                b.emit(u, draw(st.sampled_from(reactions)), who)
        elif kind == "erase":  # SPEC §9, sometimes of a customer the stream never saw
            target = who if draw(st.integers(0, 3)) else "never-seen"
            b.emit(u, "customer_erased", target)
        elif kind == "shop_then_erase":  # an erasure with a pending cart timer
            b.emit(u, "checkout_started", who, **b.cart_fields())
            b.emit(u + draw(st.integers(0, 59 * MINUTE)), "customer_erased", who)
        else:  # a guest order that carries a customer id
            b.order(u, who, guest=True)
    events = b.events

    # a few local swaps: out-of-order arrival
    for _ in range(draw(st.integers(0, 3))):
        if len(events) >= 2:
            i = draw(st.integers(0, len(events) - 2))
            events[i], events[i + 1] = events[i + 1], events[i]

    if duplicates and events:
        for _ in range(draw(st.integers(0, 4))):
            i = draw(st.integers(0, len(events) - 1))
            if draw(st.booleans()):
                j = min(len(events), i + draw(st.integers(1, 3)))  # soon after
            else:
                j = len(events)  # at the end: maybe long after
            events.insert(j, dict(events[i]))
    return events


@st.composite
def as_of_after(draw, events: list[dict]):
    """None (default as_of) or an RFC 3339 instant at or after the data's final watermark."""
    if draw(st.booleans()):
        return None
    last = max((parse_instant(ev["occurred_at"]) for ev in events), default=START)
    later = last + draw(st.one_of(
        st.just(0), st.integers(0, DAY), st.integers(0, 200 * DAY),
        st.sampled_from([DAY, 30 * DAY, 365 * DAY]),
    ))
    text = draw(occurred_at(later))
    if isinstance(text, int) or parse_instant(text) < last:  # epoch ms / truncated too far
        text = instant_to_string(later)
    return text


@st.composite
def streams_with_as_of(draw, **kwargs):
    events = draw(event_streams(**kwargs))
    return events, draw(as_of_after(events))
