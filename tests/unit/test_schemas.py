"""The JSON Schemas under schemas/ and their examples.

1. every schema is a valid draft 2020-12 schema with an `$id` matching its path;
2. every valid example validates and every invalid one fails (refs resolved through a registry of
   all the schema files, never over the network);
3. the scorer's own validator agrees on the input examples (replay wrapper lines through the
   replay's line decoder): it accepts the valid ones and rejects the invalid ones with the reason
   code and field given by the `<name>.expect.json` sidecar;
4. the valid output examples are consistent in the ways JSON Schema cannot express (arithmetic
   between fields, ordering of instants, cross-references inside a replay document);
5. real engine output (replay documents of a simulator workload and of the Online Retail sample,
   published records, merged store KPIs) passes the output schemas and the same checks.
"""

from __future__ import annotations

import copy
import gzip
import io
import itertools
import json
import math
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from stream_app.engine import DEFAULT_CONFIG
from stream_app.engine.clock import DAY
from stream_app.engine.events import TOPIC_OF_TYPE, TYPES_BY_TOPIC
from stream_app.engine.kpis import store_document
from stream_app.lines import iter_lines
from stream_app.replay import Replay
from stream_app.simulate import Simulator
from tests.helpers.schemas import (
    REGISTRY,
    SCHEMA_DOCS,
    SCHEMA_FILES,
    SCHEMAS,
    load,
    validator,
)

EXAMPLES = SCHEMAS / "examples"
ONLINE_RETAIL = Path(__file__).resolve().parents[2] / "data" / "online-retail-orders.jsonl.gz"
BASE_URI = "https://engagement-scorer.example/schemas/"
REASONS = {
    "invalid_json", "not_an_object", "too_large", "unknown_type", "missing_field", "invalid_field",
    "wrong_topic",
}
#: SPEC §1's fields in table order (envelope first): a message's first fault decides its dead letter.
INPUT_FIELDS = (
    "event_id", "type", "customer_id", "occurred_at", "channel", "schema_version", "order_id",
    "amount", "currency", "guest", "cart_id", "rating", "nps", "referred_customer_id",
)
#: SPEC §8: a replay wrapper's own fields, whose faults come before its event's.
WRAPPER_FIELDS = ("topic", "event", "received_at")
#: The wrapper schema's topic/type rule (marked by its `$comment`): SPEC §1 checks wrong_topic last.
WRONG_TOPIC_RULE = "wrong_topic"
FIELD_ORDER: tuple[str | None, ...] = (None, *WRAPPER_FIELDS, *INPUT_FIELDS, WRONG_TOPIC_RULE)
TIER_BOUNDS = {"bronze": 0, "silver": 20, "gold": 60, "platinum": 150}
TIER_RANK = {t: i for i, t in enumerate(TIER_BOUNDS)}


_load = load
#: Schemas that only hold `$defs` for others to reference: they constrain nothing, have no examples.
LIBRARIES = {
    name for name, doc in SCHEMA_DOCS.items()
    if not set(doc) - {"$schema", "$id", "title", "description", "$comment", "$defs"}
}
#: Input files that are not messages: settings files, checked against their parser by their own test
#: module (segments_file: tests/unit/test_segment_schemas.py; clv_model: tests/unit/test_clv_schemas.py).
SETTINGS_FILE_SCHEMAS = {"segments_file", "clv_model"}
INPUT_SCHEMAS = {n for n, p in SCHEMA_FILES.items() if p.parent.name == "input"} - SETTINGS_FILE_SCHEMAS
OUTPUT_SCHEMAS = {n for n, p in SCHEMA_FILES.items() if p.parent.name == "output"}


def _examples(kind: str) -> list[tuple[str, Path]]:
    return [
        (p.parent.parent.name, p)
        for p in sorted(EXAMPLES.glob(f"*/{kind}/*.json"))
        if not p.name.endswith(".expect.json")
    ]


def _schema_rejects(example: Path) -> bool:
    """False for an invalid example that only the scorer can reject (its sidecar says `"schema": false`:
    not JSON, a duplicate name, 1e400); its own test module checks the scorer rejects it."""
    sidecar = example.with_name(example.stem + ".expect.json")
    return not sidecar.exists() or load(sidecar).get("schema", True) is not False


VALID = _examples("valid")
INVALID = [(name, p) for name, p in _examples("invalid") if _schema_rejects(p)]


def _ids(cases: list[tuple[str, Path]]) -> list[str]:
    return [f"{name}/{p.stem}" for name, p in cases]


_validator = validator


def _expectation(example: Path) -> dict[str, Any]:
    return _load(example.with_name(example.stem + ".expect.json"))


# ----------------------------------------------------------------------------------- (1) schemas


def test_schemas_were_found() -> None:
    # the envelope, the 22 event types of SPEC §1 and the replay wrapper line of SPEC §8
    assert len(INPUT_SCHEMAS) == 24
    assert set(INPUT_SCHEMAS) - {"envelope", "replay_wrapper"} == set(TOPIC_OF_TYPE)
    assert set(SCHEMA_DOCS["envelope"]["$defs"]["eventType"]["enum"]) == set(TOPIC_OF_TYPE)
    assert OUTPUT_SCHEMAS >= {
        "customer_record", "tier_change", "alert", "kpis", "dead_letter", "replay_dead_letter",
        "replay_document",
    }


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    doc = SCHEMA_DOCS[name]
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(doc)
    rel = SCHEMA_FILES[name].relative_to(SCHEMAS).as_posix()
    assert doc["$id"] == BASE_URI + rel


@pytest.mark.parametrize("name", sorted(SCHEMA_FILES))
def test_every_ref_resolves(name: str) -> None:
    """Walk the schema and resolve each `$ref` against the registry (no network, no typos)."""
    resolver = REGISTRY.resolver(base_uri=SCHEMA_DOCS[name]["$id"])

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                resolver.lookup(node["$ref"])
            for key, value in node.items():
                if key not in ("const", "enum", "examples", "default"):
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(SCHEMA_DOCS[name])


@pytest.mark.parametrize("name", sorted(set(SCHEMA_FILES) - LIBRARIES))
def test_every_schema_has_examples(name: str) -> None:
    valid = [p for n, p in VALID if n == name]
    invalid = [p for n, p in INVALID if n == name]
    assert len(valid) >= 2 and len(invalid) >= 2, (name, len(valid), len(invalid))


def test_wrapper_schema_matches_the_topics_and_types_in_code() -> None:
    """The replay wrapper schema's topic names, topic/type rule and per-type dispatch are the code's
    tables (SPEC §1/§8), so a new type or topic cannot be forgotten there."""
    from stream_app.config import Settings
    from stream_app.validation import DEFAULT_TOPIC_NAMES

    doc = SCHEMA_DOCS["replay_wrapper"]
    assert DEFAULT_TOPIC_NAMES == Settings().input_topics
    assert set(doc["properties"]["topic"]["enum"]) == set(DEFAULT_TOPIC_NAMES) | set(DEFAULT_TOPIC_NAMES.values())
    rules = {tuple(r["if"]["properties"]["topic"]["enum"]): r["then"]["properties"]["event"]["properties"]["type"]
             for r in doc["allOf"]}
    assert {k: v["enum"] for k, v in rules.items()} == {
        (t, f"engagement.{t}"): list(ts) for t, ts in TYPES_BY_TOPIC.items()}
    assert all(WRONG_TOPIC_RULE in v["$comment"] for v in rules.values())
    dispatch = {r["if"]["properties"]["type"]["const"]: r["then"]["$ref"] for r in doc["$defs"]["event"]["allOf"]}
    assert dispatch == {t: f"{t}.schema.json" for t in TOPIC_OF_TYPE}


def test_every_example_folder_names_a_schema() -> None:
    folders = {p.name for p in EXAMPLES.iterdir() if p.is_dir()}
    assert folders <= set(SCHEMA_FILES) - LIBRARIES


# ---------------------------------------------------------------------------------- (2) examples


@pytest.mark.parametrize(("name", "path"), VALID, ids=_ids(VALID))
def test_valid_example_validates(name: str, path: Path) -> None:
    errors = [e.message for e in _validator(name).iter_errors(_load(path))]
    assert errors == []


@pytest.mark.parametrize(("name", "path"), INVALID, ids=_ids(INVALID))
def test_invalid_example_fails(name: str, path: Path) -> None:
    assert not _validator(name).is_valid(_load(path))


# ------------------------------------------------------------------ (3) the scorer's validator

INPUT_VALID = [(n, p) for n, p in VALID if n in INPUT_SCHEMAS]
INPUT_INVALID = [(n, p) for n, p in INVALID if n in INPUT_SCHEMAS]


@pytest.mark.parametrize(("name", "path"), INPUT_INVALID, ids=_ids(INPUT_INVALID))
def test_invalid_input_example_has_expectation(name: str, path: Path) -> None:
    expect = _expectation(path)
    assert set(expect) == {"reason", "field"}
    assert expect["reason"] in REASONS
    fields = INPUT_FIELDS + WRAPPER_FIELDS if name == "replay_wrapper" else INPUT_FIELDS
    assert expect["field"] is None or expect["field"] in fields


def _faulty_fields(errors: Any, wrapper: bool = False) -> set[str | None]:
    """Top-level fields the schema errors point at (None: the value as a whole). In a replay
    wrapper, a fault inside `event` names the event's field, and a fault of the topic/type rule
    is WRONG_TOPIC_RULE."""
    found: set[str | None] = set()
    for error in errors:
        if error.context:
            found |= _faulty_fields(error.context, wrapper)
            continue
        path = list(error.absolute_path)
        if error.validator == "required":
            paths = [[*path, f] for f in error.validator_value if f not in error.instance]
        else:
            paths = [path]
        for p in paths:
            if wrapper and p[:1] == ["event"] and len(p) > 1:
                p = p[1:]
                if p == ["type"] and WRONG_TOPIC_RULE in error.schema.get("$comment", ""):
                    found.add(WRONG_TOPIC_RULE)
                    continue
            found.add(p[0] if p else None)
    return found


@pytest.mark.parametrize(("name", "path"), INPUT_INVALID, ids=_ids(INPUT_INVALID))
def test_schema_faults_the_expected_field_first(name: str, path: Path) -> None:
    """Of the fields the schema finds at fault, the sidecar's is the first in SPEC §1's order
    (a wrapper's own fields first, wrong_topic last, SPEC §8)."""
    instance = _load(path)
    faulty = _faulty_fields(_validator(name).iter_errors(instance), wrapper=name == "replay_wrapper")
    first = min(faulty, key=FIELD_ORDER.index)
    expect = _expectation(path)
    assert first == (WRONG_TOPIC_RULE if expect["reason"] == "wrong_topic" else expect["field"]), faulty


@pytest.fixture(scope="module")
def validation() -> Any:
    import stream_app.validation

    return stream_app.validation


def _scorer_decode(validation: Any, name: str, path: Path) -> Any:
    """What the scorer makes of an example: a wrapper line as the replay reads it, else a message."""
    from stream_app.validation import decode_line

    if name == "replay_wrapper":
        return decode_line(path.read_bytes().strip())
    return validation.validate_bytes(path.read_bytes(), None)


@pytest.mark.parametrize(("name", "path"), INPUT_VALID, ids=_ids(INPUT_VALID))
def test_scorer_accepts_valid_input_example(validation: Any, name: str, path: Path) -> None:
    result = _scorer_decode(validation, name, path)
    assert not isinstance(result, validation.Rejection), result


@pytest.mark.parametrize(("name", "path"), INPUT_INVALID, ids=_ids(INPUT_INVALID))
def test_scorer_rejects_invalid_input_example(validation: Any, name: str, path: Path) -> None:
    expect = _expectation(path)
    result = _scorer_decode(validation, name, path)
    assert isinstance(result, validation.Rejection), result
    assert (result.reason, result.field) == (expect["reason"], expect["field"]), result.message
    assert result.message


# --------------------------------------------------------- (4) output examples are consistent


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))  # also checks calendar validity


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def _tier_of(score: float) -> str:
    return max((t for t, lo in TIER_BOUNDS.items() if lo <= score), key=TIER_RANK.__getitem__)


def _instants(node: Any) -> list[str]:
    """Every value in the document whose key names an instant."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (key in ("as_of", "at", "tier_since") or key.endswith("_at")):
                found.append(value)
            else:
                found.extend(_instants(value))
    elif isinstance(node, list):
        for value in node:
            found.extend(_instants(value))
    return found


ACTIVITY_DAYS = 30  # SPEC §4/§7: clicks_30d, channels_30d, messages_30d, engagement_30d
#: engagement_30d's message counts and each rate's (numerator, denominator)
MESSAGE_COUNTS = ("email_sent", "email_opened", "email_clicked", "push_sent", "push_opened", "sms_sent", "sms_clicked")
RATES = {
    "email_open_rate": ("email_opened", "email_sent"),
    "email_click_rate": ("email_clicked", "email_sent"),
    "push_open_rate": ("push_opened", "push_sent"),
    "sms_click_rate": ("sms_clicked", "sms_sent"),
}


def _in_window(at: str | None, as_of: str, days: int = ACTIVITY_DAYS) -> bool:
    """`at` lies in the `days`-day window at `as_of` (whole UTC days, SPEC §2)."""
    return at is not None and (_instant(as_of).date() - _instant(at).date()).days < days


def _channel_faults(channels: Any) -> list[str]:
    return [f"channel {c!r} is not lower-case" for c in channels if c != c.lower()]


def _customer_record_faults(r: dict[str, Any]) -> list[str]:
    faults = []
    if not r["guest_orders_365d"] <= r["orders_365d"] <= r["orders_total"] <= r["events_total"]:
        faults.append("want guest_orders_365d <= orders_365d <= orders_total <= events_total")
    if r["orders_365d"] and not _close(r["aov_365d"], r["revenue_365d"] / r["orders_365d"]):
        faults.append("aov_365d != revenue_365d / orders_365d")
    # orders are activity (SPEC §1), so they come before last_activity_at whenever there is one
    chain = [r["first_order_at"], r["last_order_at"], r["last_activity_at"], r["as_of"]]
    present = [_instant(x) for x in chain if x is not None]
    if present != sorted(present):
        faults.append("want first_order_at <= last_order_at <= last_activity_at <= as_of")
    if (r["first_order_at"] is None) != (r["last_order_at"] is None):
        faults.append("first_order_at and last_order_at are null together")
    channels, m = r["channels_30d"], r["messages_30d"]
    if channels != sorted(set(channels)):
        faults.append("channels_30d must be sorted and unique")
    faults += _channel_faults(channels)
    # opens and clicks are clicks-topic activity; sends, clicks, social and orders are disjoint
    responses = m["email"]["opened"] + m["email"]["clicked"] + m["push"]["opened"] + m["sms"]["clicked"]
    sent = m["email"]["sent"] + m["push"]["sent"] + m["sms"]["sent"]
    if responses > r["clicks_30d"]:
        faults.append("opens and clicks in messages_30d exceed clicks_30d")
    if r["orders_total"] + r["clicks_30d"] + r["social_30d"] + sent > r["events_total"]:
        faults.append("orders_total + clicks_30d + social_30d + sends exceed events_total")
    if r["last_activity_at"] is None:  # only *_sent events so far: none of them is activity
        if r["clicks_30d"] or r["social_30d"] or channels or responses or r["orders_total"]:
            faults.append("no activity (last_activity_at null) but activity counted")
        if r["last_nps"] is not None or r["points"] or r["score"]:
            faults.append("no activity (last_activity_at null) but last_nps, points or score")
    elif (r["clicks_30d"] or r["social_30d"] or channels) and not _in_window(r["last_activity_at"], r["as_of"]):
        faults.append("activity in the 30-day window but last_activity_at before it")
    if r["segments"] != sorted(set(r["segments"])):
        faults.append("segments must be sorted and unique")
    return faults


def _tier_change_faults(c: dict[str, Any]) -> list[str]:
    faults = []
    if _tier_of(c["score"]) != c["to_tier"]:
        faults.append(f"to_tier {c['to_tier']} is not tier_of({c['score']})")
    frm = c["from_tier"]
    if frm is not None and TIER_RANK[c["to_tier"]] < TIER_RANK[frm]:
        if not c["score"] < 0.8 * TIER_BOUNDS[frm]:
            faults.append("demotion needs score < 0.8 x the current tier's lower bound")
    return faults


def _alert_faults(a: dict[str, Any]) -> list[str]:
    d, at = a["details"], _instant(a["at"])
    if a["type"] == "abandoned_cart" and at != _instant(d["checkout_at"]) + timedelta(minutes=60):
        return ["abandoned_cart at != checkout_at + 60 min"]
    if a["type"] == "churn_risk":
        inactive = at - _instant(d["last_activity_at"])
        if inactive < timedelta(days=30):
            return ["churn_risk needs last_activity_at <= at - 30 days"]
        if not inactive / timedelta(days=1) - 1 < d["days_inactive"] <= math.ceil(inactive / timedelta(days=1)):
            return ["days_inactive does not match at - last_activity_at"]
    return []


def _kpi_faults(k: dict[str, Any]) -> list[str]:
    faults = []
    orders, customers = k["orders"], k["customers"]
    # not orders <= guest_orders + identified_orders: an erased customer's orders leave
    # identified_orders but stay in orders (SPEC §9); the replay document checks it without erasures
    if not max(k["guest_orders"], k["identified_orders"]) <= orders:
        faults.append("orders must be at least guest_orders and identified_orders")
    if not k["repeat_customers"] <= customers <= k["identified_orders"]:
        faults.append("want repeat_customers <= customers <= identified_orders")
    responses, reviews, satisfied = k["survey_responses"], k["reviews"], k["satisfied_reviews"]
    if k["promoters"] + k["passives"] + k["detractors"] != responses:
        faults.append("promoters + passives + detractors != survey_responses")
    if satisfied > reviews:
        faults.append("satisfied_reviews > reviews")
    # ratings are 1-5, satisfied ones 4-5: the sum of ratings lies between these bounds
    if reviews and not (4 * satisfied + (reviews - satisfied)) / reviews - 1e-9 <= k["average_rating"] \
            <= (5 * satisfied + 3 * (reviews - satisfied)) / reviews + 1e-9:
        faults.append("average_rating does not fit satisfied_reviews / reviews")
    e = k["engagement_30d"]
    active, omni, by_channel = e["active_customers"], e["omnichannel_customers"], e["customers_by_channel"]
    if omni > active or any(n > active for n in by_channel.values()):
        faults.append("omnichannel_customers and each customers_by_channel must be <= active_customers")
    if 2 * omni > sum(by_channel.values()):
        faults.append("each omnichannel customer counts in >= 2 customers_by_channel entries")
    faults += _channel_faults(by_channel)
    ratios = {
        "guest_checkout_rate": (k["guest_orders"], orders),
        "average_order_value": (k["revenue"], orders),
        "purchase_frequency": (k["identified_orders"], customers),
        "repeat_purchase_rate": (k["repeat_customers"], customers),
        "nps": (100 * (k["promoters"] - k["detractors"]), responses),
        "csat": (satisfied, reviews),
    }
    for field, (num, den) in ratios.items():
        if den and not _close(k[field], num / den):
            faults.append(f"{field} != {num} / {den}")
    rates = {f: (e[num], e[den]) for f, (num, den) in RATES.items()}
    for field, (num, den) in {**rates, "omnichannel_rate": (omni, active)}.items():
        if den and not _close(e[field], num / den):
            faults.append(f"engagement_30d.{field} != {num} / {den}")
    return faults


#: a record's messages_30d entry for each engagement_30d message count
RECORD_MESSAGE = {f: (f.split("_")[0], f.split("_")[1]) for f in MESSAGE_COUNTS}


def _records_vs_kpis(doc: dict[str, Any]) -> list[str]:
    """The KPI counts that the customer records determine (SPEC §7, §9: an erased customer leaves
    the customer counts but its orders and messages stay in the aggregates)."""
    k, records, erased = doc["kpis"], list(doc["customers"].values()), doc["counts"]["erased"]
    e = k["engagement_30d"]
    faults = []
    with_orders = [r["orders_365d"] for r in records if r["orders_365d"]]
    if (k["customers"], k["repeat_customers"]) != (len(with_orders), sum(n >= 2 for n in with_orders)):
        faults.append("kpis customers / repeat_customers != records with >= 1 / >= 2 orders_365d")
    sums = {"identified_orders": sum(with_orders),
            "guest_orders": sum(r["guest_orders_365d"] for r in records)}
    sums |= {f: sum(r["messages_30d"][m][c] for r in records) for f, (m, c) in RECORD_MESSAGE.items()}
    for field, total in sums.items():
        value = k[field] if field in k else e[field]
        if value < total or (field != "guest_orders" and not erased and value != total):
            faults.append(f"{field} {value} does not add up from the records ({total})")
    if not erased and k["orders"] > k["guest_orders"] + k["identified_orders"]:
        faults.append("orders > guest_orders + identified_orders with no erasure")
    active = [r for r in records if _in_window(r["last_activity_at"], doc["as_of"])]
    if e["active_customers"] != len(active):
        faults.append("active_customers != records with last_activity_at in the 30-day window")
    if e["omnichannel_customers"] != sum(len(r["channels_30d"]) >= 2 for r in records):
        faults.append("omnichannel_customers != records with >= 2 channels_30d")
    by_channel = {ch: 0 for ch in e["customers_by_channel"]}
    for r in records:
        for ch in r["channels_30d"]:
            by_channel[ch] = by_channel.get(ch, 0) + 1
    if by_channel != e["customers_by_channel"]:
        faults.append(f"customers_by_channel != channels_30d of the records {by_channel}")
    return faults


def _segment_faults(doc: dict[str, Any]) -> list[str]:
    """SPEC §10 inside a replay document: per customer and segment the changes alternate
    entered/left, a customer's are never dated before an earlier one, a record holds exactly the
    segments entered and not left (an erased customer none), and kpis.segments counts the records
    holding each. (Definition order within one evaluation is not checked here: two events at the
    same instant are two evaluations with the same `at` and reason.)"""
    faults = []
    defined = list(doc["kpis"]["segments"])
    held: dict[str, set[str]] = {}
    last: dict[str, dict[str, Any]] = {}
    for c in doc["segment_changes"]:
        cid, seg = c["customer_id"], c["segment"]
        if seg not in defined:
            faults.append(f"segment change for an undefined segment {seg}")
            continue
        mine = held.setdefault(cid, set())
        if (c["change"] == "entered") == (seg in mine):
            faults.append(f"{cid}: {c['change']} {seg} must alternate with the other change")
        (mine.add if c["change"] == "entered" else mine.discard)(seg)
        before = last.get(cid)
        if before is not None and _instant(c["at"]) < _instant(before["at"]):
            faults.append(f"{cid}: a segment change dated before an earlier one")
        last[cid] = c
    counts = dict.fromkeys(defined, 0)
    for key, record in doc["customers"].items():
        if set(record["segments"]) != held.get(key, set()):
            faults.append(f"customers[{key}]: segments != those entered and not left")
        for seg in record["segments"]:
            if seg not in counts:
                faults.append(f"customers[{key}]: holds an undefined segment {seg}")
            counts[seg] = counts.get(seg, 0) + 1
    for cid, segs in held.items():
        if cid not in doc["customers"] and segs:
            faults.append(f"{cid} has no record but still holds {sorted(segs)}")
    if counts != doc["kpis"]["segments"]:
        faults.append(f"kpis.segments != the records holding each segment {counts}")
    return faults


def _replay_document_faults(doc: dict[str, Any]) -> list[str]:
    faults = _kpi_faults(doc["kpis"])
    if doc["kpis"]["as_of"] != doc["as_of"]:
        faults.append("kpis.as_of != as_of")
    customers, counts = doc["customers"], doc["counts"]
    erased = counts["erased"]
    for key, record in customers.items():
        faults += [f"customers[{key}]: {f}" for f in _customer_record_faults(record)]
        if record["customer_id"] != key or record["as_of"] != doc["as_of"]:
            faults.append(f"customers[{key}]: key and as_of must match the record")
        changes = [c for c in doc["tier_changes"] if c["customer_id"] == key]
        if not changes or changes[0]["from_tier"] is not None:
            faults.append(f"customers[{key}]: its first tier change must come from null")
        elif (changes[-1]["to_tier"], changes[-1]["at"]) != (record["tier"], record["tier_since"]):
            faults.append(f"customers[{key}]: tier/tier_since must match its last tier change")
        # each change starts from the tier held, or from null when an erased id starts afresh
        held = [None, *(c["to_tier"] for c in changes[:-1])]
        if any(c["from_tier"] != h and not (erased and c["from_tier"] is None)
               for c, h in zip(changes, held, strict=True)):
            faults.append(f"customers[{key}]: a tier change must start from the tier held")
    for c in doc["tier_changes"]:
        faults += _tier_change_faults(c)
        if not erased and c["customer_id"] not in customers:
            faults.append(f"tier change for an unknown customer {c['customer_id']}")
    for a in doc["alerts"]:
        faults += _alert_faults(a)
        if not erased and a["customer_id"] not in customers:  # an erased customer's alerts stay
            faults.append(f"alert {a['alert_id']} for an unknown customer")
    if len({a["alert_id"] for a in doc["alerts"]}) != len(doc["alerts"]):
        faults.append("alert ids must be unique")
    if doc["as_of"] is not None and any(_instant(x) > _instant(doc["as_of"]) for x in _instants(doc)):
        faults.append("no instant may lie after as_of")
    if counts["rejected"] != len(doc["dead_letters"]):
        faults.append("counts.rejected != number of dead_letters")
    if erased > counts["applied"]:
        faults.append("counts.erased > counts.applied")
    # an erasure is applied but belongs to no record (it deletes its customer, SPEC §9)
    if counts["applied"] < sum(r["events_total"] for r in customers.values()) + erased:
        faults.append("counts.applied < total events_total of the customers + erased")
    if doc["as_of"] is not None:
        faults += _records_vs_kpis(doc)
    faults += _segment_faults(doc)
    lines = [d["line"] for d in doc["dead_letters"]]
    if lines != sorted(set(lines)):
        faults.append("dead letters must be in line order, one per line")
    return faults


SEMANTIC_CHECKS = {
    "customer_record": _customer_record_faults,
    "tier_change": _tier_change_faults,
    "alert": _alert_faults,
    "kpis": _kpi_faults,
    "replay_document": _replay_document_faults,
}
OUTPUT_VALID = [(n, p) for n, p in VALID if n in OUTPUT_SCHEMAS]


@pytest.mark.parametrize(("name", "path"), OUTPUT_VALID, ids=_ids(OUTPUT_VALID))
def test_valid_output_example_is_consistent(name: str, path: Path) -> None:
    doc = _load(path)
    for text in _instants(doc):
        assert _instant(text).utcoffset() == timedelta(0), text
    required = SCHEMA_DOCS[name].get("required", [])
    assert set(required) <= set(doc)
    assert _validator(name).is_valid(doc)
    check = SEMANTIC_CHECKS.get(name)
    assert (check(doc) if check else []) == []


def _tampered(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `doc` with the value at the dotted `path` replaced."""
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    node[last] = value
    return out


def _caught(faults: list[str], text: str) -> bool:
    """The check meant (its message mentions `text`) fired, not just any."""
    return any(text in f for f in faults)


def test_semantic_checks_catch_faults() -> None:
    """The consistency checks are not vacuous: a tampered valid example fails them."""
    record = _load(EXAMPLES / "customer_record" / "valid" / "with-orders.json")
    assert _customer_record_faults({**record, "aov_365d": record["aov_365d"] + 1})
    kpis = _load(EXAMPLES / "kpis" / "valid" / "typical.json")
    assert _kpi_faults({**kpis, "purchase_frequency": 2.0})
    doc = _load(EXAMPLES / "replay_document" / "valid" / "small-file.json")
    assert _replay_document_faults({**doc, "counts": {**doc["counts"], "rejected": 9}})
    change = _load(EXAMPLES / "tier_change" / "valid" / "sweep-demotion.json")
    assert _tier_change_faults({**change, "score": 50.0})


def test_semantic_checks_catch_faults_in_the_new_fields() -> None:
    """Issue #11's checks (SPEC §4 channels/messages, §7 feedback and engagement_30d, §8/§9
    erasure counts) each catch a tampered valid example."""
    record = _load(EXAMPLES / "customer_record" / "valid" / "with-orders.json")
    assert _caught(_customer_record_faults({**record, "channels_30d": record["channels_30d"][::-1]}), "sorted")
    assert _caught(_customer_record_faults({**record, "channels_30d": ["app", "app"]}), "sorted")
    assert _caught(_customer_record_faults({**record, "channels_30d": ["app", "Ünique"]}), "lower-case")
    assert _caught(_customer_record_faults(_tampered(record, "messages_30d.sms.clicked", record["clicks_30d"])),
                   "exceed clicks_30d")
    assert _caught(_customer_record_faults({**record, "last_activity_at": None}), "activity counted")  # orders
    late = {**record, "last_activity_at": record["last_order_at"], "as_of": "2024-04-30T00:00:00Z"}
    assert _caught(_customer_record_faults(late), "before it")
    sends = _load(EXAMPLES / "customer_record" / "valid" / "sends-only.json")
    assert sends["last_activity_at"] is None and _customer_record_faults(sends) == []
    assert _caught(_customer_record_faults({**sends, "clicks_30d": 1, "events_total": 9}), "activity counted")
    assert _caught(_customer_record_faults({**sends, "channels_30d": ["email"]}), "activity counted")
    assert _caught(_customer_record_faults({**sends, "last_nps": 9}), "last_nps")
    assert _caught(_customer_record_faults({**sends, "events_total": 1, "clicks_30d": 0,
                                            "messages_30d": _tampered(sends, "messages_30d.push.sent", 5)[
                                                "messages_30d"]}), "exceed events_total")

    kpis = _load(EXAMPLES / "kpis" / "valid" / "typical.json")
    assert _caught(_kpi_faults({**kpis, "nps": kpis["nps"] + 1}), "nps")
    assert _caught(_kpi_faults({**kpis, "passives": kpis["passives"] + 1}), "promoters + passives")
    assert _caught(_kpi_faults({**kpis, "satisfied_reviews": kpis["reviews"] + 1}), "satisfied_reviews > reviews")
    assert _caught(_kpi_faults({**kpis, "csat": 1.0}), "csat")
    assert _caught(_kpi_faults({**kpis, "average_rating": 1.0}), "average_rating")
    e = kpis["engagement_30d"]
    assert _caught(_kpi_faults(_tampered(kpis, "engagement_30d.email_open_rate", 0.99)), "email_open_rate")
    assert _caught(_kpi_faults(_tampered(kpis, "engagement_30d.sms_click_rate", 0.5)), "sms_click_rate")
    assert _caught(_kpi_faults(_tampered(kpis, "engagement_30d.omnichannel_rate", 0.01)), "omnichannel_rate")
    assert _caught(_kpi_faults(_tampered(kpis, "engagement_30d.omnichannel_customers", e["active_customers"] + 1)),
                   "<= active_customers")
    assert _caught(_kpi_faults(_tampered(kpis, "engagement_30d.customers_by_channel.web", e["active_customers"] + 1)),
                   "<= active_customers")

    doc = _load(EXAMPLES / "replay_document" / "valid" / "campaign-and-erasure.json")
    assert doc["counts"]["erased"] and _replay_document_faults(doc) == []
    assert _caught(_replay_document_faults(_tampered(doc, "counts.erased", doc["counts"]["applied"] + 1)),
                   "counts.erased > counts.applied")
    by_channel = doc["kpis"]["engagement_30d"]["customers_by_channel"]
    assert _caught(_replay_document_faults(_tampered(doc, "kpis.engagement_30d.customers_by_channel.other",
                                                     by_channel["other"] + 1)), "customers_by_channel")
    assert _caught(_replay_document_faults(_tampered(doc, "kpis.engagement_30d.email_sent", 0)), "email_sent")
    small = _load(EXAMPLES / "replay_document" / "valid" / "small-file.json")
    assert _caught(_replay_document_faults(_tampered(small, "kpis.orders", 3)), "no erasure")
    gone = {k: v for k, v in small["customers"].items() if k != "cust-0002"}
    assert _caught(_replay_document_faults({**small, "customers": gone}), "unknown customer")
    assert _replay_document_faults(  # after an erasure, the erased customer's alerts stay
        {**small, "customers": gone, "counts": {**small["counts"], "applied": 6, "erased": 1}}) == []


def test_semantic_checks_catch_faults_in_segments() -> None:
    """Issue #19's checks (SPEC §10: records' segments, kpis.segments, segment_changes) each catch
    a tampered valid example."""
    record = _load(EXAMPLES / "customer_record" / "valid" / "with-orders.json")
    assert record["segments"] and _customer_record_faults(record) == []
    assert _caught(_customer_record_faults({**record, "segments": record["segments"][::-1]}), "segments must be sorted")

    doc = _load(EXAMPLES / "replay_document" / "valid" / "campaign-and-erasure.json")
    changes = doc["segment_changes"]
    assert {c["reason"] for c in changes} == {"event", "erasure"} and _segment_faults(doc) == []
    assert _caught(_replay_document_faults(_tampered(doc, "kpis.segments.omnichannel", 3)), "kpis.segments")
    assert _caught(_replay_document_faults(_tampered(doc, "customers.cust-b.segments", ["new_customers"])),
                   "entered and not left")
    assert _caught(_replay_document_faults({**doc, "segment_changes": changes[:-1]}), "entered and not left")
    gone = {k: v for k, v in doc["customers"].items() if k != "cust-d"}  # erased, not back
    assert _caught(_segment_faults({**doc, "customers": gone, "segment_changes": changes[:-1]}), "still holds")
    assert _caught(_replay_document_faults({**doc, "segment_changes": [*changes[:2], changes[0], *changes[2:]]}),
                   "must alternate")
    assert _caught(_replay_document_faults({**doc, "segment_changes": [*changes, {**changes[-1], "change": "entered",
                                                                      "at": "2024-05-04T09:00:00Z"}]}), "dated before")
    assert _caught(_replay_document_faults({**doc, "segment_changes": [{**c, "segment": "vips"} for c in changes]}),
                   "undefined segment")
    small = _load(EXAMPLES / "replay_document" / "valid" / "small-file.json")
    assert [c["reason"] for c in small["segment_changes"]] == ["event", "sweep"] and _segment_faults(small) == []


# ------------------------------------------------------- (5) live engine output against the schemas
#
# The examples above are written by hand; these are what the engine really writes and publishes:
# the replay document (its customer records, KPI document, tier changes and alerts are validated
# through the document schema's $refs), every record the stream publishes (`Customer.snapshot`)
# and the store KPI document merged from per-partition partials.


def _schema_errors(name: str, instance: Any) -> list[str]:
    errors = itertools.islice(_validator(name).iter_errors(instance), 10)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def _simulated_lines() -> list[bytes]:
    """A simulator workload with campaigns (sends, opens, clicks), erasures, odd channels and a
    few bad lines; small enough for a unit test."""
    sim = Simulator(seed=11, customers=400, days=60, campaign_rate=0.05, erase_rate=0.02, bad_rate=0.005)
    return [line + b"\n" for line in sim.lines(4000)]


def _online_retail_lines() -> list[bytes]:
    with gzip.open(ONLINE_RETAIL) as f:
        return list(itertools.islice(f, 2000))


@pytest.fixture(scope="module", params=["simulated", "online_retail"])
def live_replay(request: pytest.FixtureRequest) -> tuple[str, Replay, dict[str, Any]]:
    lines = _simulated_lines() if request.param == "simulated" else _online_retail_lines()
    replay = Replay(DEFAULT_CONFIG)
    replay.feed(iter_lines(io.BytesIO(b"".join(lines))))  # as `engagement replay` reads a file
    watermark = replay.unit.watermark
    assert watermark is not None
    # 20 days past the file: sweeps run (churn, demotions) and part of the 30-day window is empty
    doc = replay.document(watermark + 20 * DAY)
    return request.param, replay, doc


def test_live_replay_document_is_valid_and_consistent(live_replay: tuple[str, Replay, dict[str, Any]]) -> None:
    workload, _, doc = live_replay
    assert _schema_errors("replay_document", doc) == []
    assert _replay_document_faults(doc) == []
    by_channel = doc["kpis"]["engagement_30d"]["customers_by_channel"]
    assert set(by_channel) == {*DEFAULT_CONFIG.channels, "other"}
    assert doc["customers"] and doc["tier_changes"] and doc["alerts"]
    if workload == "simulated":  # the workload reached what issue #11 added
        records = list(doc["customers"].values())
        assert doc["counts"]["erased"] > 0 and doc["counts"]["rejected"] > 0
        assert any(r["last_activity_at"] is None for r in records)  # created by a send
        assert any(r["last_nps"] is not None for r in records)
        assert any(len(r["channels_30d"]) >= 2 for r in records) and by_channel["other"] > 0
        fresh = [c["customer_id"] for c in doc["tier_changes"] if c["from_tier"] is None]
        assert len(fresh) > len(set(fresh))  # an erased id came back as a new customer
        assert {a["type"] for a in doc["alerts"]} == {"negative_feedback", "abandoned_cart", "churn_risk"}
        k = doc["kpis"]
        assert None not in (k["nps"], k["csat"], k["engagement_30d"]["email_open_rate"],
                            k["engagement_30d"]["push_open_rate"], k["engagement_30d"]["sms_click_rate"])
        # ... and what issue #19 added: segments entered and left by events, sweeps and erasures
        assert {c["reason"] for c in doc["segment_changes"]} == {"event", "sweep", "erasure"}
        assert any(r["segments"] for r in records) and sum(k["segments"].values()) > 0


def test_live_published_records_are_valid_and_consistent(live_replay: tuple[str, Replay, dict[str, Any]]) -> None:
    """What the stream publishes on engagement.scores for each customer: its snapshot at its own clock."""
    _, replay, _ = live_replay
    assert replay.unit.customers
    for cid in replay.unit.customers:
        record = replay.unit.record(cid)  # as_of None: at the customer's clock, as published
        assert record is not None
        assert _schema_errors("customer_record", record) == [], record["customer_id"]
        assert _customer_record_faults(record) == [], record["customer_id"]


def test_live_merged_store_kpis_are_valid_and_consistent() -> None:
    """The KPI document the stream publishes: partials of two units (customers split between
    them, as partitions do) merged at the largest watermark."""
    units = [Replay(DEFAULT_CONFIG), Replay(DEFAULT_CONFIG)]
    for number, line in enumerate(_simulated_lines(), 1):
        try:
            key = str(json.loads(line).get("customer_id"))
        except (ValueError, AttributeError):  # a bad line: any unit dead-letters it
            key = ""
        units[zlib.crc32(key.encode()) % 2].feed([(number, line.rstrip(b"\n"))])
    parts = [(r.unit.watermark, r.unit.kpis) for r in units]
    assert all(w is not None for w, _ in parts)
    names = units[0].unit.segment_set.names
    kpis = store_document(parts, DEFAULT_CONFIG.order_window_days, DEFAULT_CONFIG.activity_window_days,
                          DEFAULT_CONFIG.channels, names)
    assert _schema_errors("kpis", kpis) == []
    assert _kpi_faults(kpis) == []
    assert kpis["engagement_30d"]["active_customers"] > 0 and kpis["survey_responses"] > 0
    # SPEC §10: every defined segment, in definition order; the partitions' members add up
    held = [s for r in units for cid in r.unit.customers for s in (r.unit.record(cid) or {"segments": []})["segments"]]
    assert list(kpis["segments"]) == list(names) and len(names) == 10
    assert kpis["segments"] == {name: held.count(name) for name in names} and sum(kpis["segments"].values()) > 0
