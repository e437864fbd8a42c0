"""Broker security settings reach every Kafka client: ingest, scoring (and its restorer), the KPI
reader, the worker's producer, topic admin, audit, produce and the Faust app. No broker: each
client class is replaced by a recorder that keeps its options and refuses to start.

What runs against the real bundled broker is in tests/integration/test_security_broker.py."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaConnectionError
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from stream_app import audit, produce
from stream_app.config import Settings, SettingsError
from stream_app.stream import ingest, kafka_io, kpis, scoring, worker
from stream_app.stream.kafka_io import BrokerConnectError, client_options, start_client
from stream_app.stream.worker import ScorerApp
from tests.helpers.kafka_stubs import NoopClient

TEST_CA = Path(__file__).parents[1] / "data" / "test-ca.pem"  # a self-signed CA certificate (no key)
CA_SUBJECT = ((("commonName", "engagement-scorer test CA"),),)

SECURITY = ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password")


class Refused(Exception):
    """Raised by a recorder's start(): the test has what it needs."""


class Recorder(NoopClient):
    made: list[tuple[str, dict[str, Any]]] = []
    kind = "client"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.made.append((self.kind, kwargs))

    async def start(self) -> None:
        raise Refused


def recorder(kind: str) -> type[Recorder]:
    return type(kind, (Recorder,), {"kind": kind})


@pytest.fixture
def made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    log: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(Recorder, "made", log)
    for module, name, kind in [(ingest, "AIOKafkaConsumer", "ingest consumer"),
                               (scoring, "AIOKafkaConsumer", "scoring consumer"),
                               (kpis, "AIOKafkaConsumer", "KPI reader"),
                               (kafka_io, "AIOKafkaConsumer", "read_topic consumer (audit)"),
                               (kafka_io, "AIOKafkaAdminClient", "topic admin"),
                               (worker, "AIOKafkaProducer", "worker producer"),
                               (produce, "AIOKafkaProducer", "produce/simulate producer")]:
        monkeypatch.setattr(module, name, recorder(kind))
    return log


async def start_every_client(s: Settings) -> None:
    scorer = ScorerApp(s)
    starts = [scorer.ingest.run(scorer.producer), scorer.scoring.run(None),  # type: ignore[arg-type]
              scorer.kpis.follow(), scorer.producer(), kafka_io.ensure_topics(s),
              audit.run_audit(s, idle_ms=10), produce.produce_lines(s, [])]
    for start in starts:
        with pytest.raises(Refused):
            await start


CASES = {
    "SSL": dict(security_protocol="SSL", ssl_cafile=str(TEST_CA)),
    "SASL_SSL": dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="scorer",
                     sasl_password="pw-1", ssl_cafile=str(TEST_CA)),
    "SASL_PLAINTEXT": dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                           sasl_username="scorer", sasl_password="pw-2"),
    "PLAINTEXT": dict(),
}


@pytest.mark.parametrize("case", CASES)
async def test_every_client_gets_the_security_settings(case: str, made: list[tuple[str, dict[str, Any]]],
                                                       tmp_path: Path) -> None:
    s = Settings(broker="kafka://broker-a:9093,broker-b:9093", data_dir=str(tmp_path), **CASES[case])
    await start_every_client(s)
    kinds = {kind for kind, _ in made}
    assert kinds == {"ingest consumer", "scoring consumer", "KPI reader", "read_topic consumer (audit)",
                     "topic admin", "worker producer", "produce/simulate producer"}
    tls = s.security_protocol.endswith("SSL")
    sasl = s.security_protocol.startswith("SASL")
    for kind, opts in made:
        assert opts["bootstrap_servers"] == "broker-a:9093,broker-b:9093", kind
        assert opts["security_protocol"] == s.security_protocol, kind
        if sasl:
            assert (opts["sasl_mechanism"], opts["sasl_plain_username"], opts["sasl_plain_password"]) == \
                (s.sasl_mechanism, s.sasl_username, s.sasl_password), kind
        else:
            assert "sasl_mechanism" not in opts, kind
        ctx = opts.get("ssl_context")
        assert (ctx is not None) is tls, kind
        if tls:
            assert_verifies_with_the_test_ca(ctx)


def assert_verifies_with_the_test_ca(ctx: ssl.SSLContext) -> None:
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert any(c["subject"] == CA_SUBJECT for c in ctx.get_ca_certs())


@pytest.mark.parametrize("case", CASES)
def test_the_faust_app_gets_the_same_settings(case: str, tmp_path: Path) -> None:
    s = Settings(broker="kafka://broker-a:9093", data_dir=str(tmp_path), **CASES[case])
    app = ScorerApp(s).app
    # what Faust's own aiokafka consumer and producer are given (its driver's mapping)
    faust_opts = credentials_to_aiokafka_auth(app.conf.broker_credentials)
    ours = client_options(s)
    for key in SECURITY:
        assert faust_opts.get(key) == ours.get(key), key
    assert (faust_opts.get("ssl_context") is not None) is ("ssl_context" in ours)
    if "ssl_context" in ours:
        assert_verifies_with_the_test_ca(faust_opts["ssl_context"])
    assert str(app.conf.broker[0]) == "kafka://broker-a:9093"


@pytest.mark.parametrize("overrides, variable", [
    (dict(security_protocol="SASL"), "ENGAGEMENT_SECURITY_PROTOCOL"),
    (dict(security_protocol="SASL_SSL", sasl_username="u", sasl_mechanism="GSSAPI"), "ENGAGEMENT_SASL_MECHANISM"),
    (dict(security_protocol="SASL_PLAINTEXT", sasl_password="p"), "ENGAGEMENT_SASL_USERNAME"),
    (dict(security_protocol="SSL", ssl_cafile="/nonexistent/ca.pem"), "ENGAGEMENT_SSL_CAFILE"),
])
def test_unusable_security_settings_fail_at_start_naming_the_variable(overrides: dict[str, str],
                                                                      variable: str) -> None:
    s = Settings(broker="kafka://h:1", **overrides)
    with pytest.raises(SettingsError, match=variable):
        client_options(s)


def test_sasl_without_a_mechanism_is_plain() -> None:
    opts = client_options(Settings(broker="kafka://h:1", security_protocol="SASL_PLAINTEXT", sasl_username="u"))
    assert opts["sasl_mechanism"] == "PLAIN"


class FailingClient:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
        self.stopped = False

    async def start(self) -> None:
        raise self.exc

    async def stop(self) -> None:
        self.stopped = True


@pytest.mark.parametrize("exc, expected", [
    # aiokafka's SCRAM client raises KeyError('v') when the broker's final message is an error
    (KeyError("v"), "authentication failed"),
    (KafkaConnectionError("Unable to bootstrap from [('h', 1)]"), "usually refused the mechanism"),
])
def test_a_refused_login_is_a_clear_error_without_the_password(exc: BaseException, expected: str) -> None:
    s = Settings(broker="kafka://h:1", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512",
                 sasl_username="scorer", sasl_password="hunter2-secret")
    client = FailingClient(exc)
    with pytest.raises(BrokerConnectError) as info:
        asyncio.run(start_client(client, s))
    message = str(info.value)
    assert expected in message and "h:1" in message and "'scorer'" in message
    assert "SCRAM-SHA-512" in message
    assert "hunter2" not in message
    assert client.stopped, "a client that failed to start is closed"


def test_an_unreachable_plaintext_broker_is_named() -> None:
    s = Settings(broker="kafka://h:1")
    with pytest.raises(BrokerConnectError, match=r"cannot connect to the Kafka broker at h:1 with "
                                                 r"ENGAGEMENT_SECURITY_PROTOCOL=PLAINTEXT: KafkaConnectionError"):
        asyncio.run(start_client(FailingClient(KafkaConnectionError("Unable to bootstrap")), s))


def test_faust_credentials_type_follows_the_protocol() -> None:
    creds = ScorerApp(Settings(broker="kafka://h:1", **CASES["SASL_SSL"])).app.conf.broker_credentials  # type: ignore[arg-type]
    assert isinstance(creds, faust.SASLCredentials) and creds.protocol.value == "SASL_SSL"
