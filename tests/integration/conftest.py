"""Integration fixtures: one real (embedded Tansu) broker per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream_app.broker import EmbeddedBroker


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything under tests/integration needs the broker: mark it so `-m "not integration"`
    # deselects the lot.
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def broker() -> Iterator[EmbeddedBroker]:
    """A started broker on a free loopback port, stopped after the session.

    A broker that cannot start raises ``BrokerStartError`` (with its log tail) here, which
    errors every test that uses it: integration tests fail, never skip.
    """
    b = EmbeddedBroker(start_timeout=30.0)
    b.start()
    try:
        yield b
    finally:
        b.stop()
