"""The one broker fixture: a real (bundled Tansu) broker per test session, for every broker test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stream_app.broker import EmbeddedBroker


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
