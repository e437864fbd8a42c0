"""Every encoding of state and wire records, and the only place that knows their layouts.

The records (docs/STREAM.md, "Record formats"): a customer's state, the unit record (watermark,
KPI partial, counters, offset, id sequence), a batch of remembered event ids, the KPI partial
(inside the unit record, and published between workers) and the re-keyed event. Each is a JSON
array that leads with its format number, then its fields in the order of a field-name tuple; the
index constants are derived from those tuples, never written as bare numbers. Decoding dispatches
on the format number. Records written before the numbers existed are *format 0* (no leading
number) and are decoded here and nowhere else.

The rule for a change: a record that gains, loses or reorders a field gets the next format number
and its own field tuple; encoding writes the newest, decoding keeps every older format it still
meets in a committed changelog (or drops one, with the bump and the reason in docs/STREAM.md).
Unknown format numbers raise `UnknownFormat` rather than being guessed at.
"""

from __future__ import annotations

from array import array
from typing import Any, Final, NamedTuple

import orjson

from stream_app.engine.customer import CartTimer, Customer
from stream_app.engine.events import DEFAULT_CHANNELS, TOPIC_OF_TYPE, Event
from stream_app.engine.kpis import KpiPartial, TopOrderDays
from stream_app.engine.unit import UnitCore


class UnknownFormat(ValueError):
    """A record with a format number this version does not read (written by a newer one)."""

    def __init__(self, record: str, value: Any) -> None:
        super().__init__(f"{record}: unknown format {str(value)[:32]!r}")


# -- state keys: `<p>|<kind>[|<name>]` in the partition's changelog ----------------------------
CUSTOMER, EVENT_ID, EVENT_IDS, UNIT = "c", "e", "E", "u"


def state_key(partition: int, kind: str, name: str = "") -> bytes:
    return f"{partition}|{kind}|{name}".encode() if name else f"{partition}|{kind}".encode()


def parse_state_key(key: bytes) -> tuple[int, str, str]:
    p, _, rest = key.decode().partition("|")
    kind, _, name = rest.partition("|")
    return int(p), kind, name


# -- customer state `<p>|c|<customer_id>`: [2, *CUSTOMER_FIELDS] --------------------------------
#: 2 added `segments` (SPEC §10); format 1 is read with no segment held
#: 3 added `order_day_values` (SPEC §11); formats 1 and 2 are read with none: such a customer's
#: purchase summary starts at the upgrade (docs/CLV.md)
CUSTOMER_FORMAT: Final = 3
#: the fields after the format number (Customer.__slots__, same order; tests check both)
CUSTOMER_FIELDS: Final = (
    "customer_id", "s_ref", "t_ref", "points", "events_total", "orders_total", "revenue_total",
    "first_order_at", "last_order_at", "order_buckets", "activity_buckets", "tier", "tier_since",
    "top_order_days", "cart", "latest_checkout_at", "order_instants", "feedback_at",
    "churn_alerted", "due_day", "last_activity", "channel_days", "message_buckets", "last_nps",
    "last_nps_at", "segments", "order_day_values",
)
#: Customer slots after CUSTOMER_FIELDS that are not persisted: evaluation shortcuts whose
#: defaults (evaluate everything) are always exact
DERIVED_FIELDS: Final = ("segments_live", "segments_quiet", "segments_tier_held", "segments_wait", "segments_wait_n",
                              "segments_due")
#: field name -> its index in the record
CUSTOMER_INDEX: Final = {name: i + 1 for i, name in enumerate(CUSTOMER_FIELDS)}
#: format 0: the fields without the leading number; its first 20-slot form predates SPEC §1's
#: non-activity types (the fields from `last_activity` on were added with them)
_CUSTOMER_V0_SHORT: Final = CUSTOMER_FIELDS.index("last_activity")
#: format 1 (and the longer format 0): the fields before `segments`
_CUSTOMER_V1_LEN: Final = CUSTOMER_FIELDS.index("segments") + 1
#: format 2: the fields before `order_day_values`
_CUSTOMER_V2_LEN: Final = CUSTOMER_FIELDS.index("order_day_values") + 1


def encode_customer(c: Customer) -> bytes:
    return orjson.dumps([
        CUSTOMER_FORMAT, c.customer_id, c.s_ref, c.t_ref, c.points, c.events_total,
        c.orders_total, c.revenue_total, c.first_order_at, c.last_order_at,
        c.order_buckets, c.activity_buckets, c.tier, c.tier_since,
        list(c.top_order_days), list(c.cart) if c.cart else None,
        c.latest_checkout_at, c.order_instants.tolist(), c.feedback_at,
        c.churn_alerted, c.due_day, c.last_activity, c.channel_days,
        c.message_buckets, c.last_nps, c.last_nps_at, c.segments, c.order_day_values,
    ])


def decode_customer(raw: bytes) -> Customer:
    s = orjson.loads(raw)
    head = s[0]
    if type(head) is str:  # format 0: the fields without a number, 20 or 25 of them
        if len(s) == _CUSTOMER_V0_SHORT:  # before non-activity types: every event was activity
            s.extend((s[CUSTOMER_INDEX["t_ref"] - 1], [], None, None, None))
        s.insert(0, 1)
        head = 1
    if head == 1 and len(s) == _CUSTOMER_V1_LEN:  # before segments: none held
        s.append(0)
        head = 2
    if head == 2 and len(s) == _CUSTOMER_V2_LEN:  # before the purchase summary: none kept
        s.append(None)
    elif head != CUSTOMER_FORMAT or len(s) != len(CUSTOMER_FIELDS) + 1:
        raise UnknownFormat("customer state", head)
    c = Customer(s[1], s[3])
    (_, c.customer_id, c.s_ref, c.t_ref, c.points, c.events_total, c.orders_total,
     c.revenue_total, c.first_order_at, c.last_order_at, c.order_buckets, c.activity_buckets,
     c.tier, c.tier_since, top, cart, c.latest_checkout_at, instants, c.feedback_at,
     c.churn_alerted, c.due_day, c.last_activity, c.channel_days, c.message_buckets, c.last_nps,
     c.last_nps_at, c.segments, c.order_day_values) = s
    c.top_order_days = TopOrderDays(top[0], top[1])
    c.cart = CartTimer(cart[0], cart[1], cart[2], cart[3]) if cart else None
    c.order_instants = array("q", instants)
    return c


# -- KPI partial: [1, *KPI_FIELDS], day maps keyed by the day as a string ---------------------
#: 2 added `segments` (SPEC §10: name -> customers holding it); format 1 is read with none
KPI_FORMAT: Final = 2
KPI_FIELDS: Final = (
    "window_days", "activity_days", "channels", "floor_day", "floor_day_activity", "buckets",
    "latest", "second", "feedback", "messages", "active", "by_channel", "omni", "segments",
)
KPI_INDEX: Final = {name: i + 1 for i, name in enumerate(KPI_FIELDS)}


def _days(h: dict[int, Any]) -> dict[str, Any]:
    return {str(d): v for d, v in h.items()}


def _int_days(h: dict[str, Any]) -> dict[int, Any]:
    return {int(d): v for d, v in h.items()}


def _int_days_lists(h: dict[str, Any]) -> dict[int, list[Any]]:
    return {int(d): list(v) for d, v in h.items()}


def kpi_state(k: KpiPartial) -> list[Any]:
    """The KPI partial as a JSON value (it is nested in the unit record and the partial message)."""
    return [
        KPI_FORMAT, k.window_days, k.activity_days, list(k.channels), k.floor_day,
        k.floor_day_activity, _days(k.buckets), _days(k.latest), _days(k.second), _days(k.feedback),
        _days(k.messages), _days(k.active), {ch: _days(h) for ch, h in k.by_channel.items()},
        _days(k.omni), k.segments,
    ]


def kpi_from_state(s: Any) -> KpiPartial:
    if type(s) is dict:  # format 0: an object; the activity parts were added later (empty if absent)
        s = [KPI_FORMAT, s["window_days"], s.get("activity_days", 30), s.get("channels", DEFAULT_CHANNELS),
             s["floor_day"], s.get("floor_day_activity", -(10**9)), s["buckets"], s["latest"],
             s["second"], s.get("feedback", {}), s.get("messages", {}), s.get("active", {}),
             s.get("by_channel", {}), s.get("omni", {}), {}]
    elif type(s) is list and s and s[0] == 1 and len(s) == len(KPI_FIELDS):  # format 1: no segments
        s = [KPI_FORMAT, *s[1:], {}]
    elif type(s) is not list or not s or s[0] != KPI_FORMAT or len(s) != len(KPI_FIELDS) + 1:
        raise UnknownFormat("KPI partial", s[0] if type(s) is list and s else s)
    (_, window_days, activity_days, channels, floor_day, floor_day_activity, buckets, latest,
     second, feedback, messages, active, by_channel, omni, segments) = s
    k = KpiPartial(window_days, activity_days, tuple(channels))
    k.floor_day = floor_day
    k.floor_day_activity = floor_day_activity
    k.buckets = _int_days_lists(buckets)
    k.latest = _int_days(latest)
    k.second = _int_days(second)
    k.feedback = _int_days_lists(feedback)
    k.messages = _int_days_lists(messages)
    k.active = _int_days(active)
    k.by_channel = {ch: _int_days(h) for ch, h in by_channel.items()}
    k.omni = _int_days(omni)
    k.segments = dict(segments)
    return k


#: the partial one worker publishes for the others (`<app>-kpi-partials`, keyed by partition)
KPI_MESSAGE_FORMAT: Final = 1
KPI_MESSAGE_FIELDS: Final = ("partition", "watermark", "kpis")


class KpiMessage(NamedTuple):
    partition: int
    watermark: int | None
    kpis: KpiPartial


def encode_kpi_message(partition: int, watermark: int | None, k: KpiPartial) -> bytes:
    return orjson.dumps([KPI_MESSAGE_FORMAT, partition, watermark, kpi_state(k)])


def decode_kpi_message(raw: bytes) -> KpiMessage:
    v = orjson.loads(raw)
    if type(v) is dict:  # format 0: {"partition", "watermark", "kpis"}
        return KpiMessage(v["partition"], v["watermark"], kpi_from_state(v["kpis"]))
    if type(v) is not list or not v or v[0] != KPI_MESSAGE_FORMAT or len(v) != len(KPI_MESSAGE_FIELDS) + 1:
        raise UnknownFormat("KPI partial message", v[0] if type(v) is list and v else v)
    return KpiMessage(v[1], v[2], kpi_from_state(v[3]))


# -- unit record `<p>|u`: [1, *UNIT_FIELDS]; written last in a batch (the commit marker) --------
#: 2 added `last_sweep` (SPEC §5), `first_sweep`, `segment_names` (what the customers' segment bits mean) and
#: `segment_digest` (the definitions); format 1 is read with none: no sweep is known until the next
#: midnight, and its customers are re-evaluated under the definitions now configured
UNIT_FORMAT: Final = 2
UNIT_FIELDS: Final = ("watermark", "kpis", "applied", "duplicates", "erasures", "offset", "id_seq",
                      "last_sweep", "first_sweep", "segment_names", "segment_digest")
UNIT_INDEX: Final = {name: i + 1 for i, name in enumerate(UNIT_FIELDS)}


class UnitRecord(NamedTuple):
    core: UnitCore
    #: the offset of the last re-keyed message applied (-1: none)
    offset: int
    #: the number of the last `<p>|E|<n>` record
    id_seq: int


def encode_unit(core: UnitCore, offset: int, id_seq: int) -> bytes:
    return orjson.dumps([UNIT_FORMAT, core.watermark, kpi_state(core.kpis), core.applied,
                         core.duplicates, core.erasures, offset, id_seq, core.last_sweep, core.first_sweep,
                         list(core.segment_names), core.segment_digest])


def decode_unit(raw: bytes) -> UnitRecord:
    v = orjson.loads(raw)
    if type(v) is dict:  # format 0: an object; `erasures` and `id_seq` were added later
        return UnitRecord(UnitCore(v["watermark"], kpi_from_state(v["kpis"]), v["applied"], v["duplicates"],
                                   v.get("erasures", 0), None, None, (), ""), v["offset"], v.get("id_seq", 0))
    if type(v) is list and v and v[0] == 1 and len(v) == len(UNIT_FIELDS) - 3:  # format 1
        v = [UNIT_FORMAT, *v[1:], None, None, [], ""]
    elif type(v) is not list or not v or v[0] != UNIT_FORMAT or len(v) != len(UNIT_FIELDS) + 1:
        raise UnknownFormat("unit record", v[0] if type(v) is list and v else v)
    _, watermark, kpis, applied, duplicates, erasures, offset, id_seq, last_sweep, first_sweep, names, digest = v
    return UnitRecord(UnitCore(watermark, kpi_from_state(kpis), applied, duplicates, erasures, last_sweep,
                               first_sweep, tuple(names), digest), offset, id_seq)


# -- remembered event ids `<p>|E|<n>`: [1, [event_id, watermark after it], ...] -----------------
IDS_FORMAT: Final = 1


def encode_ids(remembered: list[tuple[str, int]]) -> bytes:
    return orjson.dumps([IDS_FORMAT, *remembered])


def decode_ids(raw: bytes) -> list[tuple[str, int]]:
    v = orjson.loads(raw)
    if type(v) is not list or not v:
        raise UnknownFormat("event ids", v)
    head = v[0]
    if type(head) is list:  # format 0: the pairs without a number
        return [(eid, at) for eid, at in v]
    if head != IDS_FORMAT:
        raise UnknownFormat("event ids", head)
    return [(eid, at) for eid, at in v[1:]]


def decode_legacy_id(raw: bytes) -> int:
    """Format 0 of the remembered ids, no longer written: one `<p>|e|<event_id>` record per id,
    its value the watermark after it (read, and tombstoned once the id is forgotten)."""
    at = orjson.loads(raw)
    if type(at) is not int:
        raise UnknownFormat("event id", at)
    return at


# -- the re-keyed event: [1, *Event fields], occurred_at in integer µs --------------------------
#: Validated at ingest (with its Kafka timestamp as received time), so scoring checks only its
#: shape. Format 0 is the SPEC §8 wrapper line `{"topic": ..., "event": {...}}` (earlier versions,
#: or written by hand): an unvalidated input line, so `decode_rekeyed` leaves it (and anything else
#: that is not format 1) to `validation.decode_rekeyed`, which validates it as a line.
REKEYED_FORMAT: Final = 1
REKEYED_FIELDS: Final = Event._fields
REKEYED_INDEX: Final = {name: i + 1 for i, name in enumerate(REKEYED_FIELDS)}
_R_ID: Final = REKEYED_INDEX["event_id"]
_R_TYPE: Final = REKEYED_INDEX["type"]
_R_TOPIC: Final = REKEYED_INDEX["topic"]
_R_CUSTOMER: Final = REKEYED_INDEX["customer_id"]
_R_AT: Final = REKEYED_INDEX["occurred_at"]
_R_AMOUNT: Final = REKEYED_INDEX["amount"]
_REKEYED_LEN: Final = len(REKEYED_FIELDS) + 1
_new_tuple = tuple.__new__


def encode_rekeyed(ev: Event) -> bytes:
    return orjson.dumps((REKEYED_FORMAT, *ev))


def decode_rekeyed(raw: bytes) -> Event | None:
    """A format-1 re-keyed message -> Event; None for anything else (format 0 or not ours).

    Its type and topic must agree (`TOPIC_OF_TYPE`, every topic included)."""
    if raw[:1] == b"[":
        try:
            v = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        if (type(v) is list and len(v) == _REKEYED_LEN and v[0] == REKEYED_FORMAT
                and type(v[_R_ID]) is str and TOPIC_OF_TYPE.get(v[_R_TYPE]) == v[_R_TOPIC]
                and type(v[_R_AT]) is int and (v[_R_CUSTOMER] is None or type(v[_R_CUSTOMER]) is str)
                and type(v[_R_AMOUNT]) in (int, float)):
            return _new_tuple(Event, v[1:])  # tuple.__new__: skips the NamedTuple's Python-level __new__
    return None


def wrap_event(short_topic: str, raw: bytes) -> bytes:
    """A re-keyed message in format 0, the wrapper form (the original payload with its topic):
    no longer written by ingest, still read (`validation.decode_rekeyed`)."""
    return b'{"topic":"' + short_topic.encode() + b'","event":' + raw + b"}"
