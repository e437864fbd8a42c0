"""Brute-force reference model of the replay document (SPEC §2-§8), for tests only.

Written from SPEC.md alone, deliberately naive: it keeps the full list of applied events and
recomputes every quantity from it when needed (scores, windows, "already applied" checks), so
each rule below can be read side by side with the SPEC paragraph it implements. Speed does not
matter; streams in tests have at most a few hundred events.

Input: already-valid event objects (SPEC §1), in arrival (file) order, possibly with re-sent
duplicates. Output: the SPEC §8 document as plain Python objects, instants as strings
``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff]Z``.

Decisions where the SPEC is silent (shared with the engine):
- instants are integer microseconds since the epoch (extra fraction digits truncated);
- a remembered event id is a duplicate while the current watermark < (watermark right after
  its application) + 7 days;
- a newer-or-equal checkout always discards the pending timer, and sets a new one unless an
  already applied order lies in [t, t + 60 min];
- ``days_inactive`` = floor((M - last_activity_at) / 1 day);
- tier changes are only recorded when the tier actually changes (except the first event).
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
HALF_LIFE = 30 * DAY
DEDUP_SPAN = 7 * DAY
CART_WINDOW = 60 * MINUTE
FEEDBACK_COOLDOWN = 24 * HOUR
CHURN_AFTER = 30 * DAY
KPI_WINDOW_DAYS = 365

TIER_BOUNDS = {"bronze": 0, "silver": 20, "gold": 60, "platinum": 150}
TIER_RANK = {"bronze": 0, "silver": 1, "gold": 2, "platinum": 3}

CLICK_WEIGHTS = {
    "page_view": 0.1, "product_view": 0.2, "search": 0.2, "add_to_cart": 1,
    "checkout_started": 2, "email_open": 0.5, "email_click": 1, "push_open": 0.5,
    "sms_click": 1, "email_sent": 0, "push_sent": 0, "sms_sent": 0,
}
SENT_TYPES = {"email_sent", "push_sent", "sms_sent"}
ERASED = "customer_erased"
CHANNELS = ("web", "app", "store", "email", "sms", "push", "social")
ACTIVITY_WINDOW_DAYS = 30
#: SPEC §4 messages_30d / §7 engagement_30d counts: type -> (medium, what)
MESSAGE_TYPES = {
    "email_sent": ("email", "sent"), "email_open": ("email", "opened"), "email_click": ("email", "clicked"),
    "push_sent": ("push", "sent"), "push_open": ("push", "opened"),
    "sms_sent": ("sms", "sent"), "sms_click": ("sms", "clicked"),
}
SOCIAL_WEIGHTS = {
    "follow": 3, "like": 0.5, "share": 2, "comment": 1.5, "review": 4, "referral": 8,
    "survey_response": 2,
}
FIXED_POINTS = {"review": 50, "referral": 200, "follow": 20, "share": 10, "survey_response": 10}

#: SPEC §10's built-in segment definitions, copied from its table (not from the engine)
BUILTIN_SEGMENTS = [
    {"name": "new_customers", "when": [["orders_total", "==", 1], ["days_since_last_order", "<=", 30]]},
    {"name": "loyal", "when": [["orders_365d", ">=", 3]]},
    {"name": "champions", "when": [["orders_365d", ">=", 5], ["days_since_last_order", "<=", 30], ["score", ">=", 60]]},
    {"name": "at_risk", "when": [["orders_total", ">=", 2], ["days_since_last_order", ">=", 90],
                                 ["days_since_last_order", "<", 365]]},
    {"name": "lapsed", "when": [["orders_total", ">=", 1], ["days_since_last_order", ">=", 365]]},
    {"name": "window_shoppers", "when": [["orders_total", "==", 0], ["clicks_30d", ">=", 10]]},
    {"name": "promoters", "when": [["last_nps", ">=", 9]]},
    {"name": "detractors", "when": [["last_nps", "<=", 6]]},
    {"name": "omnichannel", "when": [["channel_count_30d", ">=", 2]]},
    {"name": "vip_slipping", "when": [["tier", "in", ["gold", "platinum"]], ["days_since_last_activity", ">=", 14]]},
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(?:\.(\d+))?(?:[Zz]|([+-])(\d\d):(\d\d))"
)


# ---------------------------------------------------------------- time


def parse_instant(value) -> int:
    """occurred_at (RFC 3339 string or integer epoch milliseconds) -> epoch microseconds."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value * 1000
    m = _RFC3339.fullmatch(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 instant: {value!r}")
    y, mo, d, hh, mi, ss = (int(g) for g in m.group(1, 2, 3, 4, 5, 6))
    fraction = int((m.group(7) or "")[:6].ljust(6, "0"))
    local = datetime(y, mo, d, hh, mi, ss, tzinfo=UTC)
    us = (local - _EPOCH) // timedelta(microseconds=1) + fraction
    if m.group(8):
        offset = int(m.group(9)) * HOUR + int(m.group(10)) * MINUTE
        us -= offset if m.group(8) == "+" else -offset  # local = UTC + offset
    return us


def format_instant(us: int | None) -> str | None:
    if us is None:
        return None
    dt = _EPOCH + timedelta(microseconds=us)
    frac = us % SECOND
    if frac == 0:
        tail = ""
    elif frac % 1000 == 0:
        tail = f".{frac // 1000:03d}"
    else:
        tail = f".{frac:06d}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + tail + "Z"


def day_of(us: int) -> int:
    return us // DAY


def in_window(t: int, as_of: int, days: int) -> bool:
    """W-day window at T: UTC days day(T) - (W-1) ... day(T) inclusive."""
    return day_of(as_of) - (days - 1) <= day_of(t) <= day_of(as_of)


# ---------------------------------------------------------------- event facts


def customer_of(ev: dict) -> str | None:
    return ev.get("customer_id")  # JSON null counts as absent


def is_activity(ev: dict) -> bool:
    """SPEC §1: every type but *_sent and customer_erased is the customer's activity."""
    return ev["type"] not in SENT_TYPES and ev["type"] != ERASED


def channel(ev: dict) -> str | None:
    """SPEC §1 channel: the field lower-cased when present and not empty, else the type's own."""
    field = ev.get("channel")
    if field:
        ch = field.lower()
    else:
        kind = ev["type"]
        ch = next((m for m in ("email", "push", "sms") if kind.startswith(m + "_")), None)
        if ch is None and kind in SOCIAL_WEIGHTS:
            ch = "social"
    if ch is None:
        return None
    return ch if ch in CHANNELS else "other"


def weight(ev: dict) -> float:
    kind = ev["type"]
    if kind == "order_placed":
        return 10 + min(ev["amount"], 400) / 10
    if kind == "order_refunded":
        return -min(ev["amount"], 400) / 10
    return CLICK_WEIGHTS.get(kind, SOCIAL_WEIGHTS.get(kind))


def points(ev: dict) -> int:
    kind = ev["type"]
    if kind == "order_placed":
        return math.floor(ev["amount"])
    if kind == "order_refunded":
        return -math.floor(ev["amount"])
    return FIXED_POINTS.get(kind, 0)


def signed_amount(ev: dict) -> float:
    """Contribution to revenue: placed minus refunded."""
    if ev["type"] == "order_placed":
        return ev["amount"]
    if ev["type"] == "order_refunded":
        return -ev["amount"]
    return 0


def tier_of(s: float) -> str:
    best = "bronze"
    for name, bound in TIER_BOUNDS.items():
        if s >= bound:
            best = name
    return best


def ratio(num, den):
    return None if den == 0 else num / den


# ---------------------------------------------------------------- the unit


class _Unit:
    """One processing unit (the whole file in replay)."""

    def __init__(self, segments: list[dict] | None = None, clv_model: Any = None, horizon_days: int = 365) -> None:
        self.segments = BUILTIN_SEGMENTS if segments is None else segments
        self.clv_model = clv_model  # SPEC §11 (a ClvModel: its parameters only), None: no model
        self.horizon_days = horizon_days
        self.watermark: int | None = None
        self.last_sweep: int | None = None  # the unit's last sweep midnight (SPEC §5)
        self.segment_changes: list[dict] = []
        self.applied: list[tuple[int, dict]] = []  # (t, event) in application order
        #: the customer's generation each applied event belonged to (SPEC §9: an erasure starts a
        #: new generation; earlier ones are anonymous aggregates only)
        self.generation_of: list[int] = []
        self.generation: dict[str, int] = {}
        self.remembered: list[tuple[str, int]] = []  # (event_id, watermark right after)
        self.duplicates = 0
        self.erased = 0
        self.customers: dict[str, dict] = {}  # id -> {tier, tier_since, armed, timer, last_nf}
        self.tier_changes: list[dict] = []
        self.alerts: list[dict] = []

    # -- derived from the full history

    def current(self) -> list[tuple[int, dict]]:
        """Applied events of customers as they are now: not erased, not the erasures."""
        return [(t, ev) for (t, ev), g in zip(self.applied, self.generation_of, strict=True)
                if customer_of(ev) is not None and ev["type"] != ERASED
                and g == self.generation.get(customer_of(ev), 0)]

    def history(self, cid: str) -> list[tuple[int, dict]]:
        # memoised per state of the history (a sweep reads every customer's many times); rebuilt
        # from the full history whenever an event is applied, so still brute force
        key = (len(self.applied), self.erased)
        if getattr(self, "_history_key", None) != key:
            by_customer: dict[str, list[tuple[int, dict]]] = {}
            for t, ev in self.current():
                by_customer.setdefault(customer_of(ev), []).append((t, ev))
            self._history_by_customer, self._history_key = by_customer, key
        return list(self._history_by_customer.get(cid, []))

    def score(self, cid: str, at: int) -> float:
        return math.fsum(
            weight(ev) * 2.0 ** (-(at - t) / HALF_LIFE) for t, ev in self.history(cid) if t <= at
        )

    def clock(self, cid: str) -> int | None:
        return max((t for t, _ in self.history(cid)), default=None)

    def last_activity(self, cid: str) -> int | None:
        return max((t for t, ev in self.history(cid) if is_activity(ev)), default=None)

    # -- outputs

    def alert(self, kind: str, severity: str, cid: str, at: int, details: dict) -> None:
        self.alerts.append({
            "alert_id": f"oracle-{len(self.alerts)}", "type": kind, "severity": severity,
            "customer_id": cid, "at": format_instant(at), "details": details,
        })

    def set_tier(self, cid: str, new: str, s: float, at: int, reason: str) -> None:
        c = self.customers[cid]
        self.tier_changes.append({
            "customer_id": cid, "from_tier": c["tier"], "to_tier": new, "score": max(0.0, s),
            "at": format_instant(at), "reason": reason,
        })
        c["tier"], c["tier_since"] = new, at

    def evaluate_tier(self, cid: str, at: int, reason: str) -> None:
        c = self.customers[cid]
        s = self.score(cid, at)
        new, cur = tier_of(s), c["tier"]
        if TIER_RANK[new] > TIER_RANK[cur]:
            self.set_tier(cid, new, s, at, reason)
        elif s < 0.8 * TIER_BOUNDS[cur] and new != cur:
            self.set_tier(cid, new, s, at, reason)

    # -- arrival

    def offer(self, ev: dict) -> None:
        eid = ev["event_id"]
        if any(
            rid == eid and self.watermark < after + DEDUP_SPAN for rid, after in self.remembered
        ):
            self.duplicates += 1
            return
        t = parse_instant(ev["occurred_at"])
        if self.watermark is None:
            self.watermark = t  # first applied event: no due work
        elif t > self.watermark:
            self.advance(t)
        self.remembered.append((eid, self.watermark))

        cid = customer_of(ev)
        previous_last = self.last_activity(cid) if cid is not None else None
        self.applied.append((t, ev))
        self.generation_of.append(self.generation.get(cid, 0) if cid is not None else 0)
        if ev["type"] == ERASED:
            # §9: the customer's state goes (its timer with it); a later event starts afresh;
            # §10: it leaves every segment it held, at the watermark, in definition order
            self.erased += 1
            gone = self.customers.pop(cid, None)
            if gone is not None:
                for seg in self.segments:
                    if seg["name"] in gone["segments"]:
                        self.segment_changes.append({"customer_id": cid, "segment": seg["name"], "change": "left",
                                                     "at": format_instant(self.watermark), "reason": "erasure"})
            self.generation[cid] = self.generation.get(cid, 0) + 1
        elif cid is not None:
            self.apply_to_customer(cid, t, ev, previous_last)

    def apply_to_customer(self, cid: str, t: int, ev: dict, previous_last: int | None) -> None:
        kind = ev["type"]
        first = cid not in self.customers
        if first:
            self.customers[cid] = {
                "tier": None, "tier_since": None, "armed": True, "timer": None, "last_nf": None,
                "segments": set(),
            }
        c = self.customers[cid]
        if is_activity(ev) and (previous_last is None or t > previous_last):
            c["armed"] = True  # last_activity_at moved forward: churn re-armed

        # §5: tier at the customer's clock (all its applied events, sends included) or the unit's
        # last sweep midnight, whichever is later; §10: then its segments, at the same instant
        at = self.clock(cid)
        if self.last_sweep is not None and self.last_sweep > at:
            at = self.last_sweep
        if first:
            s = self.score(cid, at)
            self.set_tier(cid, tier_of(s), s, at, "event")
        else:
            self.evaluate_tier(cid, at, "event")
        self.evaluate_segments(cid, at, "event")

        # §6 abandoned cart
        history = self.history(cid)
        if kind == "checkout_started":
            later = any(e["type"] == "checkout_started" and tt > t for tt, e in history)
            if not later:
                c["timer"] = None
                ordered = any(
                    e["type"] == "order_placed" and t <= tt <= t + CART_WINDOW for tt, e in history
                )
                if not ordered:
                    c["timer"] = {
                        "deadline": t + CART_WINDOW, "checkout_event_id": ev["event_id"],
                        "cart_id": ev.get("cart_id"), "checkout_at": t,
                    }
        if kind == "order_placed" and c["timer"] is not None:
            if c["timer"]["checkout_at"] <= t <= c["timer"]["deadline"]:
                c["timer"] = None

        # §6 negative feedback (severity from the tier after the event)
        if (kind == "review" and ev["rating"] <= 2) or (
            kind == "survey_response" and ev["nps"] <= 6
        ):
            if c["last_nf"] is None or not c["last_nf"] > t - FEEDBACK_COOLDOWN:
                severity = "high" if c["tier"] in ("gold", "platinum") else "medium"
                field = "rating" if kind == "review" else "nps"
                self.alert("negative_feedback", severity, cid, t,
                           {"event_id": ev["event_id"], field: ev[field]})
                c["last_nf"] = t

    # -- due work (§2)

    def advance(self, t: int) -> None:
        """Run due work for a watermark advance self.watermark -> t, then move it."""
        w = self.watermark
        due = [(c["timer"]["deadline"], 0, cid) for cid, c in self.customers.items()
               if c["timer"] is not None and c["timer"]["deadline"] < t]
        midnight = (w // DAY + 1) * DAY
        while midnight <= t:
            due.append((midnight, 1, ""))
            midnight += DAY
        for at, kind, cid in sorted(due):
            if kind == 0:
                self.fire_timer(cid)
            else:
                self.sweep(at)
        self.watermark = t

    def fire_timer(self, cid: str) -> None:
        timer = self.customers[cid]["timer"]
        self.customers[cid]["timer"] = None
        self.alert("abandoned_cart", "low", cid, timer["deadline"], {
            "checkout_event_id": timer["checkout_event_id"], "cart_id": timer["cart_id"],
            "checkout_at": format_instant(timer["checkout_at"]),
        })

    def sweep(self, m: int) -> None:
        for cid in sorted(self.customers):
            c = self.customers[cid]
            last = self.last_activity(cid)
            if c["armed"] and TIER_RANK[c["tier"]] >= 1 and last is not None and last <= m - CHURN_AFTER:
                severity = "high" if c["tier"] in ("gold", "platinum") else "medium"
                self.alert("churn_risk", severity, cid, m, {
                    "last_activity_at": format_instant(last),
                    "days_inactive": (m - last) // DAY, "tier": c["tier"],
                })
                c["armed"] = False
            self.evaluate_tier(cid, m, "sweep")
            self.evaluate_segments(cid, m, "sweep")
        self.last_sweep = m

    # -- segments (§10)

    def segment_fields(self, cid: str, at: int) -> dict:
        """The §10 field values at `at`: the §4 record's, the tier held, and three derived ones."""
        rec = self.record(cid, at)
        last_order = max((t for t, ev in self.history(cid) if ev["type"] == "order_placed"), default=None)
        last_activity = self.last_activity(cid)
        rec["channel_count_30d"] = len(rec["channels_30d"])
        rec["days_since_last_order"] = None if last_order is None else day_of(at) - day_of(last_order)
        rec["days_since_last_activity"] = None if last_activity is None else day_of(at) - day_of(last_activity)
        return rec

    @staticmethod
    def predicate_holds(value, op: str, operand) -> bool:
        if op == "is_null":
            return value is None
        if op == "not_null":
            return value is not None
        if value is None:
            return False  # a comparison with a null field is false, `!=` included
        if op == "in":
            return value in operand
        if op == "not_in":
            return value not in operand
        if op == "contains":
            return operand in value
        if op == "not_contains":
            return operand not in value
        if isinstance(value, str):  # the tier
            return (value == operand) if op == "==" else (value != operand)
        x, y = round(value, 9), round(operand, 9)
        return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y, "==": x == y, "!=": x != y}[op]

    def evaluate_segments(self, cid: str, at: int, reason: str) -> None:
        c = self.customers[cid]
        fields = self.segment_fields(cid, at)
        for seg in self.segments:
            now = all(self.predicate_holds(fields[f], op, v) for f, op, v in seg["when"])
            held = seg["name"] in c["segments"]
            if now != held:
                (c["segments"].add if now else c["segments"].discard)(seg["name"])
                self.segment_changes.append({"customer_id": cid, "segment": seg["name"],
                                             "change": "entered" if now else "left",
                                             "at": format_instant(at), "reason": reason})

    # -- the document (§4, §7, §8)

    def record(self, cid: str, as_of: int) -> dict:
        c = self.customers[cid]
        history = self.history(cid)
        orders = [(t, ev) for t, ev in history if ev["type"] == "order_placed"]
        money = [(t, ev) for t, ev in history if ev["type"] in ("order_placed", "order_refunded")]
        orders_365 = [ev for t, ev in orders if in_window(t, as_of, 365)]
        revenue_365 = math.fsum(signed_amount(ev) for t, ev in money if in_window(t, as_of, 365))
        return {
            "customer_id": cid,
            "as_of": format_instant(as_of),
            "score": max(0.0, self.score(cid, as_of)),
            "tier": c["tier"],
            "tier_since": format_instant(c["tier_since"]),
            "points": sum(points(ev) for _, ev in history),
            "orders_365d": len(orders_365),
            "guest_orders_365d": sum(1 for ev in orders_365 if ev.get("guest") is True),
            "revenue_365d": revenue_365,
            "aov_365d": ratio(revenue_365, len(orders_365)),
            "orders_total": len(orders),
            "revenue_total": math.fsum(signed_amount(ev) for _, ev in money),
            "first_order_at": format_instant(min((t for t, _ in orders), default=None)),
            "last_order_at": format_instant(max((t for t, _ in orders), default=None)),
            "last_activity_at": format_instant(self.last_activity(cid)),
            "clicks_30d": sum(1 for t, ev in history
                              if ev["type"] in CLICK_WEIGHTS and is_activity(ev) and in_window(t, as_of, 30)),
            "social_30d": sum(1 for t, ev in history
                              if ev["type"] in SOCIAL_WEIGHTS and in_window(t, as_of, 30)),
            "events_total": len(history),
            "channels_30d": sorted({channel(ev) for t, ev in history
                                    if is_activity(ev) and channel(ev) is not None and in_window(t, as_of, 30)}),
            "messages_30d": {
                medium: {what: sum(1 for t, ev in history
                                   if MESSAGE_TYPES.get(ev["type"]) == (medium, what) and in_window(t, as_of, 30))
                         for m, what in MESSAGE_TYPES.values() if m == medium}
                for medium in ("email", "push", "sms")
            },
            "last_nps": self.last_nps(history),
            "segments": sorted(c["segments"]),
            "clv": self.clv([t for t, _ in orders], [ev for _, ev in orders], as_of),
        }

    def clv(self, instants: list[int], orders: list[dict], as_of: int) -> dict | None:
        """SPEC §11 by brute force: the summary from the applied order_placed events, the
        prediction from the formulas at 45 digits (tests/helpers/clv_reference.py)."""
        if self.clv_model is None or not orders:
            return None
        from tests.helpers.clv_reference import mp_predict  # mpmath: only where a model is given

        by_day: dict[int, list[float]] = {}
        for t, ev in zip(instants, orders, strict=True):
            by_day.setdefault(t // DAY, []).append(float(ev["amount"]))
        days = sorted(by_day)
        x = len(days) - 1
        m = math.fsum(math.fsum(by_day[d]) for d in days[1:]) / x if x else 0.0
        p_alive, expected_orders, value, clv = mp_predict(self.clv_model, x, days[-1] - days[0],
                                                          as_of // DAY - days[0], m, self.horizon_days)
        return {"p_alive": float(p_alive), "expected_orders": float(expected_orders),
                "expected_order_value": float(value), "predicted_clv": float(clv),
                "horizon_days": self.horizon_days, "model_version": self.clv_model.version}

    @staticmethod
    def last_nps(history: list[tuple[int, dict]]) -> int | None:
        best: tuple[int, int] | None = None
        for t, ev in history:  # in processing order: on a tie the later one wins
            if ev["type"] == "survey_response" and (best is None or t >= best[0]):
                best = (t, ev["nps"])
        return None if best is None else best[1]

    def kpis(self, as_of: int | None) -> dict:
        window = [] if as_of is None else [
            ev for t, ev in self.applied if in_window(t, as_of, KPI_WINDOW_DAYS)
        ]
        orders = [ev for ev in window if ev["type"] == "order_placed"]
        guest_orders = sum(1 for ev in orders if ev.get("guest") is True)
        # §9: an erased customer's orders stay orders, but are no longer identified
        current = [] if as_of is None else [ev for t, ev in self.current() if in_window(t, as_of, KPI_WINDOW_DAYS)]
        identified = [ev for ev in current if ev["type"] == "order_placed"]
        per_customer: dict[str, int] = {}
        for ev in identified:
            per_customer[customer_of(ev)] = per_customer.get(customer_of(ev), 0) + 1
        customers = len(per_customer)
        repeat = sum(1 for n in per_customer.values() if n >= 2)
        revenue = math.fsum(signed_amount(ev) for ev in window)
        surveys = [ev["nps"] for ev in window if ev["type"] == "survey_response"]
        ratings = [ev["rating"] for ev in window if ev["type"] == "review"]
        promoters = sum(1 for n in surveys if n >= 9)
        passives = sum(1 for n in surveys if 7 <= n <= 8)
        detractors = sum(1 for n in surveys if n <= 6)
        satisfied = sum(1 for r in ratings if r >= 4)
        recent = [] if as_of is None else [
            ev for t, ev in self.applied if in_window(t, as_of, ACTIVITY_WINDOW_DAYS)]
        counts = {f"{m}_{what}": sum(1 for ev in recent if MESSAGE_TYPES.get(ev["type"]) == (m, what))
                  for m, what in MESSAGE_TYPES.values()}
        active_events = [] if as_of is None else [
            ev for t, ev in self.current() if is_activity(ev) and in_window(t, as_of, ACTIVITY_WINDOW_DAYS)]
        channels_of: dict[str, set[str]] = {}
        for ev in active_events:
            chans = channels_of.setdefault(customer_of(ev), set())
            if channel(ev) is not None:
                chans.add(channel(ev))
        active = len(channels_of)
        omni = sum(1 for chans in channels_of.values() if len(chans) >= 2)
        engagement = {
            "window_days": ACTIVITY_WINDOW_DAYS,
            **counts,
            "email_open_rate": ratio(counts["email_opened"], counts["email_sent"]),
            "email_click_rate": ratio(counts["email_clicked"], counts["email_sent"]),
            "push_open_rate": ratio(counts["push_opened"], counts["push_sent"]),
            "sms_click_rate": ratio(counts["sms_clicked"], counts["sms_sent"]),
            "active_customers": active,
            "customers_by_channel": {ch: sum(1 for chans in channels_of.values() if ch in chans)
                                     for ch in (*CHANNELS, "other")},
            "omnichannel_customers": omni,
            "omnichannel_rate": ratio(omni, active),
        }
        return {
            "as_of": format_instant(as_of),
            "window_days": KPI_WINDOW_DAYS,
            "orders": len(orders),
            "guest_orders": guest_orders,
            "identified_orders": len(identified),
            "revenue": revenue,
            "customers": customers,
            "repeat_customers": repeat,
            "guest_checkout_rate": ratio(guest_orders, len(orders)),
            "average_order_value": ratio(revenue, len(orders)),
            "purchase_frequency": ratio(len(identified), customers),
            "repeat_purchase_rate": ratio(repeat, customers),
            "survey_responses": len(surveys),
            "promoters": promoters,
            "passives": passives,
            "detractors": detractors,
            "nps": ratio(100 * (promoters - detractors), len(surveys)),
            "reviews": len(ratings),
            "satisfied_reviews": satisfied,
            "csat": ratio(satisfied, len(ratings)),
            "average_rating": ratio(sum(ratings), len(ratings)),
            "engagement_30d": engagement,
            "segments": {seg["name"]: sum(1 for c in self.customers.values() if seg["name"] in c["segments"])
                         for seg in self.segments},
        }


def oracle_unit(events: list[dict], segments: list[dict] | None = None, clv_model: Any = None,
                horizon_days: int = 365) -> _Unit:
    """One processing unit after ``events`` (valid, in arrival order), before any final advance;
    ``segments``: definitions as in a §10 file's "segments" (None: the built-in ones);
    ``clv_model``: a §11 model (None: every clv null)."""
    unit = _Unit(segments, clv_model, horizon_days)
    for ev in events:
        unit.offer(ev)
    return unit


def oracle_document(events: list[dict], as_of: str | None = None, segments: list[dict] | None = None,
                    clv_model: Any = None, horizon_days: int = 365) -> dict:
    """The SPEC §8 replay document for valid ``events`` in arrival order."""
    unit = oracle_unit(events, segments, clv_model, horizon_days)
    end = unit.watermark
    if as_of is not None:
        end = parse_instant(as_of)
        if unit.watermark is not None:
            if end < unit.watermark:
                raise ValueError("as_of is earlier than the final watermark")
            if end > unit.watermark:
                unit.advance(end)
    return {
        "as_of": format_instant(end),
        "kpis": unit.kpis(end),
        "customers": {cid: unit.record(cid, end) for cid in sorted(unit.customers)},
        "tier_changes": unit.tier_changes,
        "alerts": unit.alerts,
        "segment_changes": unit.segment_changes,
        "counts": {"applied": len(unit.applied), "duplicates": unit.duplicates, "rejected": 0,
                   "erased": unit.erased},
        "dead_letters": [],
    }
