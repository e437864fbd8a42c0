"""The JSON Schemas under schemas/, loaded once, with a registry that resolves every `$ref` locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


SCHEMA_FILES: dict[str, Path] = {
    p.name.removesuffix(".schema.json"): p for p in sorted(SCHEMAS.glob("*/*.schema.json"))
}
SCHEMA_DOCS: dict[str, dict[str, Any]] = {name: load(p) for name, p in SCHEMA_FILES.items()}
REGISTRY: Registry = Registry().with_resources(
    (doc["$id"], DRAFT202012.create_resource(doc)) for doc in SCHEMA_DOCS.values()
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMA_DOCS[name], registry=REGISTRY)
