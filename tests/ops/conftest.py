"""The live Prometheus test needs the session broker, like the integration tests."""

from tests.integration.conftest import broker  # noqa: F401  (a fixture, re-exported)
