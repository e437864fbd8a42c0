"""Chaos suite: every test needs the bundled broker (the `broker` fixture in tests/conftest.py)."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)
