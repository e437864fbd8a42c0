"""The worker's wiring without a broker: security mapping, the embedded profile, the worker
launcher, the web views' protocol, ingest routing and the store KPI document."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import faust
import orjson
import pytest

from stream_app.config import EMBEDDED_PROFILE, SecurityProtocol, Settings
from stream_app.report import format_number
from stream_app.stream import web
from stream_app.stream.ingest import IngestLoop
from stream_app.stream.kafka_io import client_options, faust_credentials, partition_for
from stream_app.stream.kpis import StoreKpis, is_kpi_leader
from stream_app.stream.launch import worker_command, worker_env
from stream_app.stream.metrics import Metrics
from stream_app.stream.worker import ScorerApp
from stream_app.validation import decode_rekeyed, validate_bytes

STREAM = Path(__file__).resolve().parents[3] / "stream_app" / "stream"


def test_plaintext_has_no_credentials() -> None:
    s = Settings(broker="kafka://h:1")
    assert faust_credentials(s) is None
    assert "ssl_context" not in client_options(s) and "sasl_mechanism" not in client_options(s)


def test_ssl_gives_the_same_context_settings_to_both_clients() -> None:
    creds = faust_credentials(Settings(broker="kafka://h:1", security_protocol="SSL"))
    assert isinstance(creds, faust.SSLCredentials)


@pytest.mark.parametrize("protocol, ssl", [("SASL_PLAINTEXT", False), ("SASL_SSL", True)])
def test_sasl_credentials_follow_the_client_options(protocol: SecurityProtocol, ssl: bool) -> None:
    s = Settings(broker="kafka://h:1", security_protocol=protocol, sasl_username="u", sasl_password="p")
    opts = client_options(s)
    creds = faust_credentials(s)
    assert isinstance(creds, faust.SASLCredentials)
    assert (creds.username, creds.password) == (opts["sasl_plain_username"], opts["sasl_plain_password"])
    assert creds.mechanism.value == opts["sasl_mechanism"] == "PLAIN"
    assert (creds.ssl_context is not None) is ssl


def test_embedded_profile_overrides_only_the_group_and_fetch_timeouts() -> None:
    s = dataclasses.replace(Settings(), **EMBEDDED_PROFILE)
    assert (s.session_timeout_s, s.heartbeat_interval_s, s.fetch_max_wait_ms) == (2.0, 0.5, 50)
    assert dataclasses.replace(s, **{k: getattr(Settings(), k) for k in EMBEDDED_PROFILE}) == Settings()


def test_worker_env_carries_the_settings_then_the_extras() -> None:
    s = Settings(broker="kafka://h:1", web_port=7001, partitions=3)
    env = worker_env(s, ENGAGEMENT_PARTITIONS="5", ENGAGEMENT_FAILPOINT="x")
    assert env["ENGAGEMENT_BROKER"] == "kafka://h:1" and env["ENGAGEMENT_WEB_PORT"] == "7001"
    assert env["ENGAGEMENT_PARTITIONS"] == "5" and env["ENGAGEMENT_FAILPOINT"] == "x"
    assert worker_command() == [sys.executable, "-m", "stream_app", "worker"]


def test_the_scorer_app_is_what_the_web_views_read() -> None:
    members = [n for n in vars(web.WorkerView) if not n.startswith("_")]
    assert set(members) == {"ready", "owned_partitions", "customer_partition", "customer_record",
                            "kpi_document", "segment_document", "overview", "owner_url", "metrics_registry"}
    for name in members:
        assert hasattr(ScorerApp, name), name
        proto = getattr(web.WorkerView, name)
        if callable(proto):
            assert list(inspect.signature(proto).parameters) == \
                list(inspect.signature(getattr(ScorerApp, name)).parameters), name


def test_web_does_not_import_the_worker() -> None:
    tree = ast.parse((STREAM / "web.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    # the views see a worker only through the WorkerView protocol; the library seam is allowed, and
    # so are the dashboard's pure helpers (its data shapes, its static files)
    allowed = {"stream_app.stream.compat", "stream_app.panels", "stream_app.web_assets"}
    assert not {m for m in imported if m and m.startswith("stream_app")} - allowed


class _Sender:
    def __init__(self) -> None:
        self.records: list[tuple[str, int, bytes | None, bytes | None]] = []

    def add(self, topic: str, partition: int, key: bytes | None, value: bytes | None) -> None:
        self.records.append((topic, partition, key, value))


def test_ingest_rekeys_accepted_events_and_dead_letters_the_rest() -> None:
    s = Settings(broker="kafka://h:1", partitions=4)
    good = orjson.dumps({"event_id": "e1", "type": "page_view", "customer_id": "c1",
                         "occurred_at": "2024-01-01T00:00:00Z", "channel": "web"})
    ts = 1704067200000  # the records' Kafka timestamp (ms), the received time of SPEC §1
    records = [SimpleNamespace(value=good, key=b"c1", offset=7, timestamp=ts),
               SimpleNamespace(value=b"{", key=None, offset=8, timestamp=ts)]
    sender = _Sender()
    rejected = IngestLoop(s, Metrics()).ingest_records("clicks", s.topic_clicks, 2, records,
                                                       sender)  # type: ignore[arg-type]
    assert rejected == len([r for r in sender.records if r[0] == s.topic_dead_letter]) == 1
    dead = [orjson.loads(v) for t, _, _, v in sender.records if t == s.topic_dead_letter and v]
    assert dead[-1]["source"] == {"topic": s.topic_clicks, "partition": 2, "offset": 8}
    routed = [r for r in sender.records if r[0] == s.topic_events]
    assert len(routed) == 1
    for _, p, key, value in routed:
        assert key == b"c1" and p == partition_for(b"c1", 4)
        ev = decode_rekeyed(value or b"")
        assert ev == validate_bytes(good, "clicks") and ev.topic == "clicks"  # the validated event itself


async def test_store_kpis_without_partials_publish_nothing() -> None:
    kpis = StoreKpis(Settings(), Metrics(), Settings().engine_config())
    assert kpis.document()["as_of"] is None

    async def no_producer() -> Any:
        raise AssertionError("nothing to publish")

    await kpis.publish(True, {0, 1}, no_producer)
    assert is_kpi_leader({0, 3}) and not is_kpi_leader({1, 2})


def test_format_number() -> None:
    assert (format_number(None), format_number(1234), format_number(2.5), format_number(0.125, pct=True)) == \
        ("n/a", "1,234", "2.50", "12.5 %")


def test_partition_for_is_kafkas_default_partitioner_with_or_without_its_cache() -> None:
    from aiokafka.partitioner import DefaultPartitioner

    from stream_app.stream import kafka_io

    keys = [f"customer-{i}".encode() for i in range(3 * kafka_io._PARTITION_CACHE_MAX // 2)] + [b"", b"\xff\x00"]
    for n in (1, 4, 7):
        parts = list(range(n))
        want = [DefaultPartitioner()(k, parts, parts) for k in keys]
        assert [partition_for(k, n) for k in keys] == want  # misses, then a clear past the bound
        assert [partition_for(k, n) for k in keys] == want  # hits
        assert len(kafka_io._PARTITION_CACHE[n]) <= kafka_io._PARTITION_CACHE_MAX


def test_get_segments_lists_each_definition_with_the_merged_member_count(tmp_path: Path) -> None:
    from stream_app.engine import Unit
    from stream_app.engine.clock import parse_rfc3339
    from stream_app.engine.events import Event
    from tests.helpers.schemas import validator

    defs = {"segments": [{"name": "big_spenders", "when": [["revenue_total", ">=", 100]]},
                         {"name": "web_or_app", "when": [["channels_30d", "contains", "web"], ["score", ">", 0]]},
                         {"name": "nobody", "when": [["orders_total", ">", 1000000]]}]}
    path = tmp_path / "segments.json"
    path.write_bytes(orjson.dumps(defs))
    app = ScorerApp(Settings(broker="kafka://h:1", segments_file=str(path), data_dir=str(tmp_path)))
    t0 = parse_rfc3339("2024-03-01T00:00:00Z")
    assert t0 is not None
    # two partitions' KPI partials, as the KPI reader holds them: a, b (big spenders) and c
    for p, orders in ((0, [("a", 150.0), ("b", 120.0)]), (1, [("c", 20.0)])):
        unit = Unit(app.engine_config)
        for i, (cid, amount) in enumerate(orders):
            unit.offer(Event(f"e{p}{i}", "order_placed", "orders", cid, t0 + i, channel="web", order_id=f"o{p}{i}",
                             amount=amount))
        unit.drain()
        app.kpis.partials[p] = (unit.watermark, unit.kpis)
    doc = app.segment_document()
    assert doc == {"segments": [{**d, "members": n} for d, n in zip(defs["segments"], (2, 3, 0), strict=True)]}
    assert {s["name"]: s["members"] for s in doc["segments"]} == app.kpi_document()["segments"]
    validator("http_segments").validate(orjson.loads(orjson.dumps(doc)))
    # segments off: an empty list, and the KPI document's map is empty too
    off = tmp_path / "off.json"
    off.write_bytes(b'{"segments": []}')
    app = ScorerApp(Settings(broker="kafka://h:1", segments_file=str(off), data_dir=str(tmp_path)))
    assert app.segment_document() == {"segments": []}
