"""SPEC §10's segment schemas against the scorer's parser.

1. every valid `segments_file` example validates against the schema and `parse_segments` accepts it
   (default channels); the built-in definitions are one of them, and one example uses every
   field with every op it takes;
2. every invalid example (read as bytes: some are not JSON, or not UTF-8) is rejected by
   `parse_segments` with a message containing its sidecar's `message_contains`, and by the schema
   unless the sidecar says `"schema": false` (then the schema really does accept it, or the file
   does not load as JSON: the sidecar is not stale);
3. the schema's field, op, tier and channel lists are the code's;
4. a property test: for random one-segment files (any field × any op × a mix of values, and
   random names) the schema and `parse_segments` agree on accept/reject;
5. the `segment_change` examples validate / fail (tests/unit/test_schemas.py runs them too, with
   the other output schemas).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_app.engine.config import TIERS
from stream_app.engine.events import DEFAULT_CHANNELS
from stream_app.engine.segment_defs import (
    BUILTIN,
    COMPARISONS,
    FIELD_NAMES,
    MAX_SEGMENTS,
    NULLABLE_FIELDS,
    NUMERIC_FIELDS,
    OP_NAMES,
    SegmentError,
    parse_segments,
)
from tests.helpers.schemas import SCHEMA_DOCS, SCHEMAS, load, validator

EXAMPLES = SCHEMAS / "examples"
SEGMENTS = EXAMPLES / "segments_file"
CHANGES = EXAMPLES / "segment_change"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if not p.name.endswith(".expect.json"))


VALID = _files(SEGMENTS / "valid")
INVALID = _files(SEGMENTS / "invalid")
CHANGES_VALID = _files(CHANGES / "valid")
CHANGES_INVALID = _files(CHANGES / "invalid")


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


SEGMENTS_FILE = validator("segments_file")


def _schema_errors(instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in SEGMENTS_FILE.iter_errors(instance)]


def _parser_error(data: str | bytes) -> str | None:
    """parse_segments' message for `data`, or None when it accepts it."""
    try:
        parse_segments(data, DEFAULT_CHANNELS)
    except SegmentError as exc:
        return str(exc)
    return None


# -------------------------------------------------------------------------- (1) valid examples


def test_examples_were_found() -> None:
    assert len(VALID) >= 4 and len(INVALID) >= 30
    assert len(CHANGES_VALID) >= 2 and len(CHANGES_INVALID) >= 3


@pytest.mark.parametrize("path", VALID, ids=_ids(VALID))
def test_valid_example_passes_schema_and_parser(path: Path) -> None:
    assert _schema_errors(load(path)) == []
    assert _parser_error(path.read_bytes()) is None


def test_builtin_example_is_the_builtin_definitions() -> None:
    assert load(SEGMENTS / "valid" / "builtin.json") == BUILTIN
    assert _schema_errors(BUILTIN) == []
    assert [s.name for s in parse_segments(json.dumps(BUILTIN), DEFAULT_CHANNELS)] == [
        "new_customers", "loyal", "champions", "at_risk", "lapsed", "window_shoppers", "promoters",
        "detractors", "omnichannel", "vip_slipping"]


def test_off_example_turns_segments_off() -> None:
    assert parse_segments((SEGMENTS / "valid" / "off.json").read_bytes(), DEFAULT_CHANNELS) == ()


def _allowed_pairs() -> set[tuple[str, str]]:
    """(field, op) pairs that SPEC §10's table allows, from the parser's own constants."""
    pairs = set()
    for i, field in enumerate(FIELD_NAMES):
        if i in NUMERIC_FIELDS:
            ops = [OP_NAMES[o] for o in COMPARISONS]
            if i in NULLABLE_FIELDS:
                ops += ["is_null", "not_null"]
        elif field == "tier":
            ops = ["==", "!=", "in", "not_in"]
        else:
            ops = ["contains", "not_contains"]
        pairs |= {(field, op) for op in ops}
    return pairs


def test_every_field_and_op_example_covers_the_table() -> None:
    doc = load(SEGMENTS / "valid" / "every-field-and-op.json")
    preds = [p for s in doc["segments"] for p in s["when"]]
    assert {(f, op) for f, op, _ in preds} == _allowed_pairs()
    assert {v for f, _, v in preds if f == "channels_30d"} == {*DEFAULT_CHANNELS, "other"}
    assert {t for f, op, v in preds if f == "tier" for t in (v if op in ("in", "not_in") else [v])} == set(TIERS)


def test_sixty_four_segments_is_the_limit() -> None:
    doc = load(SEGMENTS / "valid" / "sixty-four-segments.json")
    assert len(doc["segments"]) == MAX_SEGMENTS
    assert max(len(s["name"]) for s in doc["segments"]) == 64


# ------------------------------------------------------------------------ (2) invalid examples


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_invalid_example_has_expectation(path: Path) -> None:
    expect = load(path.with_name(path.stem + ".expect.json"))
    assert set(expect) <= {"message_contains", "schema"} and expect["message_contains"]
    assert expect.get("schema", False) is False  # only ever says the schema cannot reject it


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_parser_rejects_invalid_example(path: Path) -> None:
    expect = load(path.with_name(path.stem + ".expect.json"))
    message = _parser_error(path.read_bytes())
    assert message is not None
    assert expect["message_contains"] in message, message


@pytest.mark.parametrize("path", INVALID, ids=_ids(INVALID))
def test_schema_rejects_invalid_example_unless_it_cannot(path: Path) -> None:
    expect = load(path.with_name(path.stem + ".expect.json"))
    try:
        instance = json.loads(path.read_bytes())
    except ValueError:  # not UTF-8, not JSON: no instance for a schema to judge
        assert expect.get("schema") is False
        return
    if expect.get("schema", True):
        assert _schema_errors(instance) != []
    else:  # the sidecar is not stale: JSON Schema really cannot tell (duplicate names, 1e400, NaN)
        assert _schema_errors(instance) == []


def test_every_rule_has_an_invalid_example() -> None:
    """The rules issue 19 lists, each with at least one example."""
    stems = {p.stem for p in INVALID}
    for rule in ("unknown-field", "op-points-is-null", "op-tier-less-than", "op-channels-equals", "boolean-number",
                 "string-number", "empty-when", "name-upper-case", "name-starts-with-digit", "name-too-long",
                 "duplicate-name", "unknown-tier", "unknown-channel", "extra-top-level-key", "extra-segment-key",
                 "non-finite-number", "not-json", "too-many-segments", "predicate-two-items", "predicate-four-items",
                 "missing-name", "missing-when"):
        assert rule in stems, rule
    assert (SEGMENTS / "invalid" / "non-finite-number.json").read_bytes().count(b"1e400") == 1


# ------------------------------------------------------------------ (3) the schema is the code's


def test_schema_lists_are_the_code_lists() -> None:
    defs = SCHEMA_DOCS["segments_file"]["$defs"]
    numeric = defs["numericField"]["enum"]
    assert numeric == [FIELD_NAMES[i] for i in sorted(NUMERIC_FIELDS)]
    assert defs["nullableField"]["enum"] == [FIELD_NAMES[i] for i in sorted(NULLABLE_FIELDS)]
    assert defs["comparison"]["prefixItems"][1]["enum"] == [OP_NAMES[o] for o in sorted(COMPARISONS)]
    assert defs["channel"]["enum"] == [*DEFAULT_CHANNELS, "other"]
    assert SCHEMA_DOCS["defs"]["$defs"]["tier"]["enum"] == list(TIERS)
    assert SCHEMA_DOCS["segments_file"]["properties"]["segments"]["maxItems"] == MAX_SEGMENTS
    groups = [defs[r["$ref"].removeprefix("#/$defs/")]["prefixItems"] for r in defs["predicate"]["anyOf"]]
    pairs = set()
    for field, op, _ in groups:
        if "$ref" in field:
            field = defs[field["$ref"].removeprefix("#/$defs/")]
        fields = field["enum"] if "enum" in field else [field["const"]]
        pairs |= {(f, o) for f in fields for o in op["enum"]}
    assert pairs == _allowed_pairs()


# ------------------------------------------------------------- (4) schema and parser agree

FIELDS = st.sampled_from([*FIELD_NAMES, "revenue", "Score", "tier ", "", "channels"])
OPS = st.sampled_from([*OP_NAMES, "=", "<>", "IN", "contains ", "is null", ""])
WORDS = st.sampled_from([*TIERS, *DEFAULT_CHANNELS, "other", "Gold", "diamond", "Web", "tiktok", "", "null", "1"])
ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**18), max_value=10**18),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, 1, -1, 0.5, 9, 60, 1e308, -0.0]),
    WORDS,
    st.text(max_size=6),
)
VALUES = st.one_of(ATOMS, st.lists(st.one_of(WORDS, ATOMS), max_size=4), st.dictionaries(WORDS, ATOMS, max_size=2))
TRIPLES = st.tuples(FIELDS, OPS, VALUES).map(list)
NUMBERS = st.one_of(st.integers(min_value=-(10**18), max_value=10**18), st.floats(allow_nan=False, allow_infinity=False))
NUMERIC_NAMES = {FIELD_NAMES[i] for i in NUMERIC_FIELDS}
NULLABLE_NAMES = {FIELD_NAMES[i] for i in NULLABLE_FIELDS}
COMPARISON_NAMES = {OP_NAMES[o] for o in COMPARISONS}


def _values_for(field: str, op: str) -> st.SearchStrategy[Any]:
    """Values of the kinds the field or the op takes, some of them refused (unknown tiers and
    channels, empty arrays)."""
    kinds: list[st.SearchStrategy[Any]] = []
    if op in ("is_null", "not_null") or field in NULLABLE_NAMES:
        kinds.append(st.none())
    if op in COMPARISON_NAMES or field in NUMERIC_NAMES:
        kinds.append(NUMBERS)
    if field in ("tier", "channels_30d") or op in ("==", "!=", "contains", "not_contains"):
        kinds.append(WORDS)
    if field == "tier" or op in ("in", "not_in"):
        kinds.append(st.lists(WORDS, max_size=3))
    return st.one_of(kinds)


#: a field with an op it takes (SPEC §10's table), with a value of a kind the field or op takes, or any
#: value (numbers are finite and within a double: 1e400 is a known gap, see the non-finite examples)
FITTING = st.sampled_from(sorted(_allowed_pairs())).flatmap(
    lambda pair: st.one_of(_values_for(*pair), _values_for(*pair), VALUES).map(lambda v: [*pair, v]))
#: any field with any op, with a value of a kind the field or op takes
ANY_PAIR = st.tuples(st.sampled_from(FIELD_NAMES), st.sampled_from(OP_NAMES)).flatmap(
    lambda pair: _values_for(*pair).map(lambda v: [*pair, v]))
PREDICATES = st.one_of(FITTING, FITTING, FITTING, ANY_PAIR, TRIPLES, st.lists(st.one_of(FIELDS, OPS, ATOMS), max_size=5),
                       ATOMS)
#: mostly one predicate; sometimes several, none, or not an array
WHEN = st.one_of(PREDICATES.map(lambda p: [p]), PREDICATES.map(lambda p: [p]), st.lists(PREDICATES, max_size=3), VALUES)
GOOD_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,63}", fullmatch=True)
NAMES = st.one_of(st.just("s"), GOOD_NAMES, GOOD_NAMES.map(lambda n: n + "\n"), GOOD_NAMES.map(lambda n: n + "_x"),
                  st.text(alphabet="aZ09_-\n é", max_size=66), st.integers(), st.none())


def _agree(doc: Any) -> bool:
    """The schema and the parser agree on `doc` (as its JSON text); True: both accept it."""
    text = json.dumps(doc)
    message = _parser_error(text)
    instance = json.loads(text)
    if (message is None) != SEGMENTS_FILE.is_valid(instance):
        raise AssertionError((doc, message, _schema_errors(instance)))
    return message is None


@settings(max_examples=500, deadline=None)
@given(when=WHEN)
def test_schema_and_parser_agree_on_predicates(when: Any) -> None:
    _agree({"segments": [{"name": "s", "when": when}]})


#: SPEC §10's kinds of value, each with values refused: a number of each kind, booleans, strings
#: (numeric, tier, channel, near misses), null, arrays (of tiers, empty, mixed, nested), an object
SAMPLE_VALUES: list[Any] = [
    0, -1, 0.3, -0.0, 1e308, 10**18, True, False, None, "60", "", "bronze", "platinum", "Gold", "diamond", "web",
    "social", "other", "Web", "tiktok", [], ["gold"], list(TIERS), ["gold", "gold"], ["gold", "Platinum"], ["gold", 1],
    [None], [["gold"]], ["web"], [1, 2], {"tier": "gold"},
]


def test_schema_and_parser_agree_on_every_field_op_and_kind_of_value() -> None:
    """Exhaustively: every field × every op × SAMPLE_VALUES (unknown fields and ops: the property
    tests). For speed the schema judges the predicate alone (its `$defs/predicate`; the rest of
    the one-segment file is valid)."""
    predicate = SEGMENTS_FILE.evolve(schema={"$ref": SCHEMA_DOCS["segments_file"]["$id"] + "#/$defs/predicate"})
    accepted = 0
    for field in FIELD_NAMES:
        for op in OP_NAMES:
            for value in SAMPLE_VALUES:
                p = [field, op, value]
                message = _parser_error(json.dumps({"segments": [{"name": "s", "when": [p]}]}))
                assert (message is None) == predicate.is_valid(p), (p, message)
                accepted += message is None
    assert accepted > 300  # not vacuous: both accept many


@settings(max_examples=300, deadline=None)
@given(name=NAMES, extra=st.dictionaries(st.sampled_from(["name", "when", "description", "Name"]), ATOMS,
                                         max_size=1))
def test_schema_and_parser_agree_on_names_and_keys(name: Any, extra: dict[str, Any]) -> None:
    _agree({"segments": [{"name": name, "when": [["score", ">=", 1]], **extra}]})


# --------------------------------------------------------------------- (5) segment changes


@pytest.mark.parametrize("path", CHANGES_VALID, ids=_ids(CHANGES_VALID))
def test_valid_segment_change_validates(path: Path) -> None:
    assert [e.message for e in validator("segment_change").iter_errors(load(path))] == []


@pytest.mark.parametrize("path", CHANGES_INVALID, ids=_ids(CHANGES_INVALID))
def test_invalid_segment_change_fails(path: Path) -> None:
    assert not validator("segment_change").is_valid(load(path))


def test_segment_change_names_are_segment_names() -> None:
    """A change's segment obeys the definitions file's name rule (the same $def)."""
    change = load(CHANGES / "valid" / "entered-on-event.json")
    v = validator("segment_change")
    for seg in BUILTIN["segments"]:
        assert v.is_valid({**change, "segment": seg["name"]})
    for bad in ("Loyal", "1st", "a" * 65, "loyal\n", ""):
        assert not v.is_valid({**change, "segment": bad}), bad
