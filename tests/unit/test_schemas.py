"""The JSON Schemas under schemas/ and their examples.

1. every schema is a valid draft 2020-12 schema with an `$id` matching its path;
2. every valid example validates and every invalid one fails (refs resolved through a registry of
   all the schema files, never over the network);
3. the scorer's own validator agrees on the input examples (replay wrapper lines through the
   replay's line decoder): it accepts the valid ones and rejects the invalid ones with the reason
   code and field given by the `<name>.expect.json` sidecar;
4. the valid output examples are consistent in the ways JSON Schema cannot express (arithmetic
   between fields, ordering of instants, cross-references inside a replay document).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from stream_app.engine.events import TOPIC_OF_TYPE, TYPES_BY_TOPIC
from tests.helpers.schemas import (
    REGISTRY,
    SCHEMA_DOCS,
    SCHEMA_FILES,
    SCHEMAS,
    load,
    validator,
)

EXAMPLES = SCHEMAS / "examples"
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
INPUT_SCHEMAS = {n for n, p in SCHEMA_FILES.items() if p.parent.name == "input"}
OUTPUT_SCHEMAS = {n for n, p in SCHEMA_FILES.items() if p.parent.name == "output"}


def _examples(kind: str) -> list[tuple[str, Path]]:
    return [
        (p.parent.parent.name, p)
        for p in sorted(EXAMPLES.glob(f"*/{kind}/*.json"))
        if not p.name.endswith(".expect.json")
    ]


VALID = _examples("valid")
INVALID = _examples("invalid")


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
    from stream_app.lines import DEFAULT_TOPIC_NAMES

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
    from stream_app.lines import decode_line

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


def _customer_record_faults(r: dict[str, Any]) -> list[str]:
    faults = []
    if not r["guest_orders_365d"] <= r["orders_365d"] <= r["orders_total"] <= r["events_total"]:
        faults.append("want guest_orders_365d <= orders_365d <= orders_total <= events_total")
    if r["orders_365d"] and not _close(r["aov_365d"], r["revenue_365d"] / r["orders_365d"]):
        faults.append("aov_365d != revenue_365d / orders_365d")
    chain = [r["first_order_at"], r["last_order_at"], r["last_activity_at"], r["as_of"]]
    present = [_instant(x) for x in chain if x is not None]
    if present != sorted(present):
        faults.append("want first_order_at <= last_order_at <= last_activity_at <= as_of")
    if (r["first_order_at"] is None) != (r["last_order_at"] is None):
        faults.append("first_order_at and last_order_at are null together")
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
    if not max(k["guest_orders"], k["identified_orders"]) <= orders <= k["guest_orders"] + k["identified_orders"]:
        faults.append("orders must lie between max and sum of guest_orders and identified_orders")
    if not k["repeat_customers"] <= customers <= k["identified_orders"]:
        faults.append("want repeat_customers <= customers <= identified_orders")
    ratios = {
        "guest_checkout_rate": (k["guest_orders"], orders),
        "average_order_value": (k["revenue"], orders),
        "purchase_frequency": (k["identified_orders"], customers),
        "repeat_purchase_rate": (k["repeat_customers"], customers),
    }
    for field, (num, den) in ratios.items():
        if den and not _close(k[field], num / den):
            faults.append(f"{field} != {num} / {den}")
    return faults


def _replay_document_faults(doc: dict[str, Any]) -> list[str]:
    faults = _kpi_faults(doc["kpis"])
    if doc["kpis"]["as_of"] != doc["as_of"]:
        faults.append("kpis.as_of != as_of")
    customers = doc["customers"]
    for key, record in customers.items():
        faults += [f"customers[{key}]: {f}" for f in _customer_record_faults(record)]
        if record["customer_id"] != key or record["as_of"] != doc["as_of"]:
            faults.append(f"customers[{key}]: key and as_of must match the record")
        changes = [c for c in doc["tier_changes"] if c["customer_id"] == key]
        if not changes or changes[0]["from_tier"] is not None:
            faults.append(f"customers[{key}]: its first tier change must come from null")
        elif (changes[-1]["to_tier"], changes[-1]["at"]) != (record["tier"], record["tier_since"]):
            faults.append(f"customers[{key}]: tier/tier_since must match its last tier change")
    for c in doc["tier_changes"]:
        faults += _tier_change_faults(c)
    for a in doc["alerts"]:
        faults += _alert_faults(a)
        if a["customer_id"] not in customers:
            faults.append(f"alert {a['alert_id']} for an unknown customer")
    if len({a["alert_id"] for a in doc["alerts"]}) != len(doc["alerts"]):
        faults.append("alert ids must be unique")
    if doc["as_of"] is not None and any(_instant(x) > _instant(doc["as_of"]) for x in _instants(doc)):
        faults.append("no instant may lie after as_of")
    counts = doc["counts"]
    if counts["rejected"] != len(doc["dead_letters"]):
        faults.append("counts.rejected != number of dead_letters")
    if counts["applied"] < sum(r["events_total"] for r in customers.values()):
        faults.append("counts.applied < total events_total of the customers")
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
