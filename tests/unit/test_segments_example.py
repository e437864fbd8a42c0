"""The segment definitions the docs show (docs/examples/segments.json and the README's example)
are valid SPEC §10 files: the scorer's parser accepts them with the default channels and the
schema validates them, and together they use every kind of field."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stream_app.engine.events import DEFAULT_CHANNELS
from stream_app.engine.segment_defs import (
    CHANNELS_30D,
    NULLABLE_FIELDS,
    NUMERIC_FIELDS,
    TIER,
    parse_segments,
)
from tests.helpers.schemas import validator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "segments.json"


def _readme_example() -> str:
    """The JSON block of the README's Segments section."""
    section = ROOT.joinpath("README.md").read_text().split("\n## Segments\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```json\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the README's Segments section shows one definitions file"
    return blocks[0]


def test_the_example_file_parses_and_validates() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    segments = parse_segments(text, DEFAULT_CHANNELS)
    assert [s.name for s in segments] == [s["name"] for s in json.loads(text)["segments"]]
    assert list(validator("segments_file").iter_errors(json.loads(text))) == []
    fields = {p.field for s in segments for p in s.when}
    # numbers, a nullable field's null test, the tier and the channel list
    assert fields & NUMERIC_FIELDS and fields & NULLABLE_FIELDS and {TIER, CHANNELS_30D} <= fields
    ops = {p.source[1] for s in segments for p in s.when}
    assert {"==", ">=", "<", "in", "!=", "contains", "not_contains", "is_null"} <= ops


def test_the_readme_example_parses_and_validates() -> None:
    text = _readme_example()
    assert parse_segments(text, DEFAULT_CHANNELS)
    assert list(validator("segments_file").iter_errors(json.loads(text))) == []
