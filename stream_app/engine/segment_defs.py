"""Segment definitions (SPEC §10): the fields and ops, the built-in set, and the parser that
checks every rule of a definitions file before anything is processed.

`parse_segments` raises `SegmentError` on the first fault, naming the segment and the predicate.
Predicates are compiled to (field id, op id, value) so that evaluation (`segments.py`) reads no
JSON and looks nothing up by name.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from stream_app.engine.config import TIERS

# -- fields and ops ------------------------------------------------------------------------------
# field ids: Final, so that the compiled engine compares with constants, not module lookups
SCORE: Final = 0
POINTS: Final = 1
ORDERS_365D: Final = 2
GUEST_ORDERS_365D: Final = 3
REVENUE_365D: Final = 4
AOV_365D: Final = 5
ORDERS_TOTAL: Final = 6
REVENUE_TOTAL: Final = 7
CLICKS_30D: Final = 8
SOCIAL_30D: Final = 9
EVENTS_TOTAL: Final = 10
LAST_NPS: Final = 11
CHANNEL_COUNT_30D: Final = 12
DAYS_SINCE_LAST_ORDER: Final = 13
DAYS_SINCE_LAST_ACTIVITY: Final = 14
TIER: Final = 15
CHANNELS_30D: Final = 16
FIELD_NAMES: tuple[str, ...] = (
    "score", "points", "orders_365d", "guest_orders_365d", "revenue_365d", "aov_365d", "orders_total",
    "revenue_total", "clicks_30d", "social_30d", "events_total", "last_nps", "channel_count_30d",
    "days_since_last_order", "days_since_last_activity", "tier", "channels_30d",
)
FIELD_IDS: dict[str, int] = {name: i for i, name in enumerate(FIELD_NAMES)}
NUMERIC_FIELDS = frozenset(range(TIER))  # every field before `tier` compares with numbers
NULLABLE_FIELDS = frozenset((AOV_365D, LAST_NPS, DAYS_SINCE_LAST_ORDER, DAYS_SINCE_LAST_ACTIVITY))
ORDER_WINDOW_FIELDS = frozenset((ORDERS_365D, GUEST_ORDERS_365D, REVENUE_365D, AOV_365D))
ACTIVITY_WINDOW_FIELDS = frozenset((CLICKS_30D, SOCIAL_30D))
CHANNEL_FIELDS = frozenset((CHANNEL_COUNT_30D, CHANNELS_30D))

LT: Final = 0
LE: Final = 1
GT: Final = 2
GE: Final = 3
EQ: Final = 4
NE: Final = 5
IS_NULL: Final = 6
NOT_NULL: Final = 7
IN: Final = 8
NOT_IN: Final = 9
CONTAINS: Final = 10
NOT_CONTAINS: Final = 11
OP_NAMES: tuple[str, ...] = ("<", "<=", ">", ">=", "==", "!=", "is_null", "not_null", "in", "not_in",
                             "contains", "not_contains")
OP_IDS: dict[str, int] = {name: i for i, name in enumerate(OP_NAMES)}
COMPARISONS = frozenset((LT, LE, GT, GE, EQ, NE))

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}\Z")
MAX_SEGMENTS = 64

#: SPEC §10's built-in definitions, in their order
BUILTIN: dict[str, Any] = {"segments": [
    {"name": "new_customers", "when": [["orders_total", "==", 1], ["days_since_last_order", "<=", 30]]},
    {"name": "loyal", "when": [["orders_365d", ">=", 3]]},
    {"name": "champions", "when": [["orders_365d", ">=", 5], ["days_since_last_order", "<=", 30],
                                   ["score", ">=", 60]]},
    {"name": "at_risk", "when": [["orders_total", ">=", 2], ["days_since_last_order", ">=", 90],
                                 ["days_since_last_order", "<", 365]]},
    {"name": "lapsed", "when": [["orders_total", ">=", 1], ["days_since_last_order", ">=", 365]]},
    {"name": "window_shoppers", "when": [["orders_total", "==", 0], ["clicks_30d", ">=", 10]]},
    {"name": "promoters", "when": [["last_nps", ">=", 9]]},
    {"name": "detractors", "when": [["last_nps", "<=", 6]]},
    {"name": "omnichannel", "when": [["channel_count_30d", ">=", 2]]},
    {"name": "vip_slipping", "when": [["tier", "in", ["gold", "platinum"]], ["days_since_last_activity", ">=", 14]]},
]}


class SegmentError(ValueError):
    """A definitions file that breaks a rule of SPEC §10; the message names the segment and the
    predicate where there is one (the shell adds the file's name)."""


class Predicate:
    """`[field, op, value]`, compiled: numbers rounded to 9 places once, tiers as indexes."""

    __slots__ = ("field", "op", "number", "tiers", "channel", "source", "tier_bits", "dead_if_false", "timed",
                 "quiet", "count_target", "whole",
                 "window_threshold")

    def __init__(self, field: int, op: int, number: float, tiers: frozenset[int], channel: str,
                 source: list[Any]) -> None:
        self.field = field
        self.op = op
        self.number = number
        self.tiers = tiers
        self.channel = channel
        self.source = source  # as written: GET /segments shows it
        #: `tier`: bit i set when tier i satisfies the predicate (`!=` and `not_in` inverted here)
        bits = sum(1 << t for t in tiers)
        self.tier_bits = bits ^ ((1 << len(TIERS)) - 1) if op == NE or op == NOT_IN else bits
        #: set by `segments.SegmentSet`: once false, only an event can make it true
        self.dead_if_false = False
        #: set by `segments.SegmentSet`: time alone can change it (a midnight, the score's decay)
        self.timed = False
        #: set by `segments.SegmentSet`: no clicks-topic event changes its field
        self.quiet = False
        #: set by `segments.SegmentSet`: the least whole count that satisfies a `>=` or `>` on a
        #: count no event raises by more than one (`segments.count_target`); -1: another predicate
        self.count_target = -1
        #: set by `segments.SegmentSet`: floor(number), for day counts (compared as whole days)
        self.whole = 0
        #: set by `segments.SegmentSet`: <, <=, > or >= on an order-window count (`_window_count_holds`)
        self.window_threshold = False

    def test(self, x: float) -> bool:
        """A numeric field's predicate against its value, NaN standing for null (`holds`)."""
        op = self.op
        if op == IS_NULL:
            return x != x
        if op == NOT_NULL:
            return x == x
        if x != x:  # null fails every comparison, != included
            return False
        n = self.number
        if x != n and -1e-6 < x - n < 1e-6:  # rounding moves x by at most 5e-10: only near n can it matter
            x = round(x, 9)
        if op == LT:
            return x < n
        if op == LE:
            return x <= n
        if op == GT:
            return x > n
        if op == GE:
            return x >= n
        if op == EQ:
            return x == n
        return x != n


class Segment:
    __slots__ = ("name", "when", "fields")

    def __init__(self, name: str, when: list[Predicate]) -> None:
        self.name = name
        self.when = when
        self.fields = frozenset(p.field for p in when)

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "when": [p.source for p in self.when]}


# -- parsing ---------------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    raise SegmentError(f"not JSON: {name} is not a JSON number")


def parse_segments(text: str | bytes, channels: tuple[str, ...]) -> tuple[Segment, ...]:
    """Definitions from a file's text; raises SegmentError on the first fault (SPEC §10)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SegmentError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise SegmentError(f"not JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    except ValueError as exc:  # an integer of more digits than Python converts
        raise SegmentError(f"not JSON the scorer can read: {exc}") from None
    return definitions_from(doc, channels)


def definitions_from(doc: Any, channels: tuple[str, ...]) -> tuple[Segment, ...]:
    if not isinstance(doc, dict):
        raise SegmentError('the top level must be an object {"segments": [...]}')
    extra = sorted(set(doc) - {"segments"})
    if extra:
        raise SegmentError(f"unknown top-level key {extra[0]!r} (only \"segments\" is allowed)")
    if "segments" not in doc:
        raise SegmentError('missing "segments"')
    items = doc["segments"]
    if not isinstance(items, list):
        raise SegmentError('"segments" must be an array')
    if len(items) > MAX_SEGMENTS:
        raise SegmentError(f"{len(items)} segments: at most {MAX_SEGMENTS} are allowed")
    known = (*channels, "other")
    out: list[Segment] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        where = f"segment #{i + 1}"
        if not isinstance(item, dict):
            raise SegmentError(f"{where}: must be an object with \"name\" and \"when\"")
        name = item.get("name")
        if isinstance(name, str) and NAME.match(name):
            where = f"segment {name!r}"
        extra = sorted(set(item) - {"name", "when"})
        if extra:
            raise SegmentError(f"{where}: unknown key {extra[0]!r} (only \"name\" and \"when\" are allowed)")
        if "name" not in item:
            raise SegmentError(f"{where}: missing \"name\"")
        if not isinstance(name, str) or not NAME.match(name):
            raise SegmentError(f"{where}: name {name!r} must match [a-z][a-z0-9_]{{0,63}}")
        if name in names:
            raise SegmentError(f"{where}: duplicate name")
        names.add(name)
        if "when" not in item:
            raise SegmentError(f"{where}: missing \"when\"")
        when = item["when"]
        if not isinstance(when, list) or not when:
            raise SegmentError(f"{where}: \"when\" must be a non-empty array of predicates")
        preds = [_predicate(p, f"{where}, predicate #{k + 1}", known) for k, p in enumerate(when)]
        out.append(Segment(name, preds))
    return tuple(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _predicate(p: Any, where: str, channels: tuple[str, ...]) -> Predicate:
    if not isinstance(p, list) or len(p) != 3:
        raise SegmentError(f"{where}: must be a [field, op, value] array, got {json.dumps(p)}")
    field_name, op_name, value = p
    where = f"{where} {json.dumps(p)}"
    if not isinstance(field_name, str) or field_name not in FIELD_IDS:
        raise SegmentError(f"{where}: unknown field {field_name!r}")
    field = FIELD_IDS[field_name]
    op = OP_IDS.get(op_name, -1) if isinstance(op_name, str) else -1
    number, tiers, channel = 0.0, frozenset[int](), ""
    if field in NUMERIC_FIELDS:
        if op in COMPARISONS:
            if not _is_number(value):
                raise SegmentError(f"{where}: {op_name} needs a number (not a boolean or a string)")
            try:
                number = round(float(value), 9)
            except OverflowError:  # an integer beyond a double
                number = math.inf
            if not math.isfinite(number):
                raise SegmentError(f"{where}: {value} is not a finite number")
        elif op in (IS_NULL, NOT_NULL) and field in NULLABLE_FIELDS:
            if value is not None:
                raise SegmentError(f"{where}: {op_name} takes null as its value")
        else:
            allowed = "<, <=, >, >=, ==, !=" + (", is_null, not_null" if field in NULLABLE_FIELDS else "")
            raise SegmentError(f"{where}: op {op_name!r} does not fit {field_name} (use {allowed})")
    elif field == TIER:
        if op in (EQ, NE):
            if not isinstance(value, str) or value not in TIERS:
                raise SegmentError(f"{where}: unknown tier {value!r} (tiers: {', '.join(TIERS)})")
            tiers = frozenset((TIERS.index(value),))
        elif op in (IN, NOT_IN):
            if not isinstance(value, list) or not value:
                raise SegmentError(f"{where}: {op_name} needs a non-empty array of tier names")
            for t in value:
                if not isinstance(t, str) or t not in TIERS:
                    raise SegmentError(f"{where}: unknown tier {t!r} (tiers: {', '.join(TIERS)})")
            tiers = frozenset(TIERS.index(t) for t in value)
        else:
            raise SegmentError(f"{where}: op {op_name!r} does not fit tier (use ==, !=, in, not_in)")
    else:  # channels_30d
        if op not in (CONTAINS, NOT_CONTAINS):
            raise SegmentError(f"{where}: op {op_name!r} does not fit channels_30d (use contains, not_contains)")
        if not isinstance(value, str) or value not in channels:
            raise SegmentError(f"{where}: unknown channel {value!r} (channels: {', '.join(channels)})")
        channel = value
    return Predicate(field, op, number, tiers, channel, [field_name, op_name, value])


BUILTIN_SOURCE = json.dumps(BUILTIN)


def builtin_segments(channels: tuple[str, ...]) -> tuple[Segment, ...]:
    return definitions_from(json.loads(BUILTIN_SOURCE), channels)
