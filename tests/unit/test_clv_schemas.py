"""Issue 20: the model-file and clv schemas against their examples and the scorer's own parser
(`parse_model`), as tests/unit/test_segment_schemas.py does for the segments file. (The generic
checks of tests/unit/test_schemas.py also run over these schemas and examples.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stream_app.engine.clv import ModelError, load_model, parse_model
from tests.helpers.schemas import SCHEMAS, load, validator

MODELS = SCHEMAS / "examples" / "clv_model"
CLVS = SCHEMAS / "examples" / "clv"
MODEL_FILE = validator("clv_model")
CLV = validator("clv")
VALID = sorted((MODELS / "valid").glob("*.json"))
INVALID = sorted(p for p in (MODELS / "invalid").glob("*.json") if not p.name.endswith(".expect.json"))


def test_examples_were_found() -> None:
    assert len(VALID) >= 2 and len(INVALID) >= 10
    assert len(list((CLVS / "valid").glob("*.json"))) >= 2 and len(list((CLVS / "invalid").glob("*.json"))) >= 3


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_model_passes_schema_and_parser(path: Path) -> None:
    assert MODEL_FILE.is_valid(load(path))
    load_model(str(path))


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_model_is_refused_naming_the_field(path: Path) -> None:
    expect = load(path.with_name(path.stem + ".expect.json"))
    with pytest.raises(ModelError) as info:
        load_model(str(path))
    assert info.value.field == expect["field"]
    if expect.get("schema", True):
        assert not MODEL_FILE.is_valid(load(path))


def test_the_shipped_model_is_an_example() -> None:
    shipped = SCHEMAS.parent / "data" / "clv-model-online-retail.json"
    assert load(shipped) == load(MODELS / "valid" / "online-retail.json")
    assert MODEL_FILE.is_valid(load(shipped))


@pytest.mark.parametrize("path", sorted((CLVS / "valid").glob("*.json")), ids=lambda p: p.stem)
def test_valid_clv_is_consistent(path: Path) -> None:
    doc = load(path)
    assert CLV.is_valid(doc)
    assert doc["predicted_clv"] == pytest.approx(doc["expected_orders"] * doc["expected_order_value"], rel=1e-12)


@pytest.mark.parametrize("path", sorted((CLVS / "invalid").glob("*.json")), ids=lambda p: p.stem)
def test_invalid_clv_fails(path: Path) -> None:
    assert not CLV.is_valid(load(path))


def test_schema_and_parser_agree_on_single_faults() -> None:
    good = load(MODELS / "valid" / "near-boundary.json")
    for group, key in [("bgnbd", k) for k in ("r", "alpha", "a", "b")] + [("gamma_gamma", k) for k in "pqv"]:
        for value in (0, -1, 0.5, 1, 1.5, 2, 1e300, True, None, "1"):
            doc = json.loads(json.dumps(good))
            doc[group][key] = value
            try:
                parse_model(doc)
                accepted = True
            except ModelError:
                accepted = False
            assert MODEL_FILE.is_valid(doc) == accepted, (group, key, value)
