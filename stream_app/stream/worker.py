"""The worker: a Faust app (lifecycle, signals, web server, timers) running three tasks.

- ingest (`ingest.py`): validate the input topics and re-key accepted events by customer;
- scoring (`scoring.py`): the owned partitions of the re-keyed topic (`owned.py`) ->
  `PartitionProcessor` -> outputs, then state (`commit.py`); the state decides where each
  partition resumes;
- KPIs (`kpis.py`): follow every partition's KPI partial, publish the merged store document.

The scoring is `PartitionProcessor` -> engine `Unit`, the same code as `engagement replay`.
This module only wires them: the app, one producer, the tasks, and what the web views read.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import faust
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from stream_app import panels
from stream_app.config import Settings
from stream_app.engine import AsOfBeforeClock
from stream_app.engine.clock import format_instant, parse_rfc3339
from stream_app.engine.config import TIERS
from stream_app.engine.records import CustomerRecord, KpiDocument
from stream_app.engine.segments import segment_set
from stream_app.stream.ingest import IngestLoop
from stream_app.stream.kafka_io import client_options, faust_credentials, partition_for
from stream_app.stream.kpis import StoreKpis
from stream_app.stream.metrics import Metrics
from stream_app.stream.processor import PartitionProcessor
from stream_app.stream.scoring import ScoringLoop
from stream_app.stream.state_store import open_store
from stream_app.stream.supervisor import Supervisor
from stream_app.stream.web import register_views

log = logging.getLogger(__name__)

__all__ = ["ScorerApp"]

#: the dashboard's CLV distributions read at most this many customer records (an even sample of
#: the owned ones), at most every `CLV_REFRESH_S`
CLV_SAMPLE = 2000
CLV_REFRESH_S = 10.0


class ScorerApp:
    """Builds the Faust app (lifecycle, web server, timers) and runs ingest, scoring and KPIs in it,
    each through the one `Supervisor` (`supervisor.py`: a crash stops the process, exit code 70).

    It is the `WorkerView` the HTTP views read (`web.py`).
    """

    def __init__(self, settings: Settings, supervisor: Supervisor | None = None) -> None:
        self.settings = s = settings
        self.supervisor = supervisor or Supervisor()
        self.engine_config = s.engine_config()
        self.app = faust.App(
            s.app_id,
            broker=s.broker,
            topic_partitions=s.partitions,
            topic_replication_factor=s.replication,
            broker_session_timeout=s.session_timeout_s,
            broker_heartbeat_interval=s.heartbeat_interval_s,
            broker_credentials=faust_credentials(s),
            web_host=s.web_host,
            web_port=s.web_port,
            web_bind=s.web_bind or s.web_host,
            datadir=s.data_dir,
            autodiscover=False,
            web_in_thread=False,
        )
        self.metrics = Metrics()
        self._announce_clv_model()
        self.store = open_store(s.store, s.data_dir)
        self.scoring = ScoringLoop(s, self.engine_config, self.metrics, self.store, self.supervisor)
        self.ingest = IngestLoop(s, self.metrics)
        self.scoring.on_ready = self._log_ready
        if s.role == "ingest":  # ready as soon as it reads; it scores no partitions
            self.ingest.on_started = lambda: log.info("ready: %s, role ingest (no partitions scored)",
                                                      self.where())
        self.kpis = StoreKpis(s, self.metrics, self.engine_config)
        self._producer: AIOKafkaProducer | None = None
        self._clv_cache: tuple[float, str | None, dict[str, Any] | None] | None = None
        self.api_token = s.read_api_token()  # a bad token file fails here, at start
        bind = s.web_bind or s.web_host
        if self.api_token is None and not is_loopback(bind):
            log.warning("the HTTP API on %s:%d is open to anyone who can reach it: set "
                        "ENGAGEMENT_API_TOKEN or ENGAGEMENT_API_TOKEN_FILE (docs/SECURITY.md)", bind, s.web_port)
        self._register()

    @property
    def ready(self) -> bool:
        return True if self.settings.role == "ingest" else self.scoring.ready

    @property
    def processors(self) -> dict[int, PartitionProcessor]:
        return self.scoring.owned.processors

    async def producer(self) -> AIOKafkaProducer:
        """One producer for every output, state record and dead letter of this worker."""
        if self._producer is None:
            producer = AIOKafkaProducer(acks="all", linger_ms=5, max_batch_size=1_000_000,
                                        max_request_size=1_048_576, request_timeout_ms=60_000,
                                        **client_options(self.settings))
            await producer.start()
            self._producer = producer
        return self._producer

    def _announce_clv_model(self) -> None:
        """The lifetime-value model loaded at start: one INFO line (its version, fit date and
        horizon; no customer data) and `engagement_clv_model_info{version}`."""
        model = self.engine_config.clv_model
        self.metrics.set_clv_model(None if model is None else model.version)
        if model is None:
            log.info("clv: no model (ENGAGEMENT_CLV_MODEL_FILE unset): every record's clv is null")
        else:
            log.info("clv: model %s (fitted %s) from %s, horizon %d days", model.version, model.fitted_at,
                     self.settings.clv_model_file, self.engine_config.clv_horizon_days)

    def where(self) -> str:
        """`broker kafka://..., HTTP http://host:port` for the log (no credentials)."""
        s = self.settings
        bind = s.web_bind or s.web_host
        http = f"http://{s.web_host}:{s.web_port}"
        if bind != s.web_host:
            http += f" (listening on {bind}:{s.web_port})"
        return f"broker {public_broker_url(s.broker)}, HTTP {http}"

    def _log_ready(self, partitions: list[int], first: bool) -> None:
        """The one INFO line that says the worker is ready, and again when a rebalance changes its
        partitions."""
        log.info("ready%s: %s, partitions %s of %s", "" if first else " (partitions changed)", self.where(),
                 partitions, self.settings.topic_events)

    # -- wiring ------------------------------------------------------------------------------
    def _register(self) -> None:
        """Every task the app runs, supervised (`tasks`: name -> what Faust runs)."""
        app, role, supervise = self.app, self.settings.role, self.supervisor.task
        self.tasks: dict[str, Callable[[], Awaitable[None]]] = {}
        if role in ("all", "ingest"):
            self.tasks["ingest loop"] = supervise("ingest loop", self._ingest_loop)
        if role in ("all", "score"):
            self.tasks["scoring loop"] = supervise("scoring loop", self._scoring_loop)
            self.tasks["KPI reader"] = supervise("KPI reader", self.kpis.follow)
        for task in self.tasks.values():
            app.task(task)
        if role in ("all", "score"):
            self.tasks["KPI publisher"] = tick = supervise("KPI publisher", self._kpi_publisher, periodic=True)
            app.timer(interval=1.0)(tick)
        register_views(app, self, self.api_token)

    async def _scoring_loop(self) -> None:
        try:
            await self.scoring.run(await self.producer())
        except asyncio.CancelledError:  # a clean stop (SIGTERM): the scoring consumer has left the group
            self.store.close()
            if self._producer is not None:
                await self._producer.stop()
            raise

    async def _ingest_loop(self) -> None:
        await self.ingest.run(self.producer)

    async def _kpi_publisher(self) -> None:
        await self.kpis.publish(self.ready, self.processors, self.producer)

    # -- what the web views read (web.WorkerView) ------------------------------------------------
    def owned_partitions(self) -> Collection[int]:
        return self.processors.keys()

    def customer_partition(self, customer_id: str) -> int:
        return partition_for(customer_id.encode(), self.settings.partitions)

    def customer_record(self, customer_id: str, as_of: str | None) -> tuple[int, CustomerRecord | dict[str, str]]:
        """(status, body) for a customer owned by this worker."""
        proc = self.processors.get(self.customer_partition(customer_id))
        if proc is None:
            return 503, {"error": "partition not ready on this worker"}
        c = proc.unit.customers.get(customer_id)
        if c is None:
            return 404, {"error": "unknown customer"}
        at = None
        if as_of is not None:
            at = parse_rfc3339(as_of)
            if at is None:
                return 400, {"error": "as_of must be an RFC 3339 date-time, e.g. 2024-01-31T00:00:00Z"}
        try:
            return 200, c.read(at, self.engine_config, proc.unit.segment_set.held(c.segments))
        except AsOfBeforeClock as exc:
            return 400, {"error": f"as_of is before the customer's clock {format_instant(exc.clock)}"}

    def kpi_document(self) -> KpiDocument:
        return self.kpis.document()

    def segment_document(self) -> dict[str, list[dict[str, Any]]]:
        """Each defined segment (SPEC §10), in definition order, with its predicates as written
        and its store-wide member count: the merged KPI document's, so `GET /kpis` agrees."""
        members = self.kpi_document()["segments"]
        return {"segments": [{**s.definition(), "members": members.get(s.name, 0)}
                             for s in segment_set(self.engine_config).segments]}

    def overview(self) -> dict[str, Any]:
        """This worker's part of the dashboard (`GET /overview`; web.py merges the workers'):
        customers per tier over its partitions, what its outputs were since it started (latest
        alerts, day counts) and the CLV distributions of a sample of its customers."""
        procs = dict(self.processors)
        tiers = dict.fromkeys(TIERS, 0)
        for proc in procs.values():
            for tier, n in proc.tier_counts.items():
                tiers[tier] += n
        as_of = self.kpi_document()["as_of"]
        activity = self.scoring.activity
        return panels.overview(as_of=as_of, tiers=tiers, latest_alerts=activity.newest_alerts(),
                               trends=activity.trends.to_json(segment_set(self.engine_config).names),
                               clv=self._clv_summary(procs, as_of),
                               scope={"partitions": sorted(procs), "partition_count": self.settings.partitions,
                                      "workers": 1})

    def _clv_summary(self, procs: dict[int, PartitionProcessor], as_of: str | None) -> dict[str, Any] | None:
        """The `clv` of an even sample of the owned customers' records at `as_of` (SPEC §11; None
        without a model), cached for `CLV_REFRESH_S`: reading records costs ~10 µs each."""
        now = time.monotonic()
        cached = self._clv_cache
        if cached is not None and cached[1] == as_of and now - cached[0] < CLV_REFRESH_S:
            return cached[2]
        total = sum(len(p.unit.customers) for p in procs.values())
        step = max(1, math.ceil(total / CLV_SAMPLE))
        clvs = []
        i = 0
        for proc in procs.values():
            for cid in list(proc.unit.customers):
                i += 1
                if i % step:
                    continue
                status, record = self.customer_record(cid, as_of)
                if status != 200:
                    status, record = self.customer_record(cid, None)
                clvs.append(record.get("clv") if status == 200 else None)
        summary = panels.clv_summary(clvs, sampled_from=total)
        self._clv_cache = (now, as_of, summary)
        return summary

    def owner_url(self, partition: int) -> str | None:
        return self.scoring.owner_url(partition)

    def metrics_registry(self) -> CollectorRegistry:
        self.metrics.set_tier_counts(self.processors)  # a revoke since the last batch
        return self.metrics.registry


def public_broker_url(broker: str) -> str:
    """The broker list without any `user:password@` part (credentials belong in the SASL settings)."""
    urls = []
    for url in broker.split(","):
        scheme, sep, rest = url.partition("://")
        if not sep:
            scheme, rest = "", url
        urls.append(scheme + sep + rest.rpartition("@")[2])
    return ",".join(urls)


def is_loopback(host: str) -> bool:
    """Whether a listen address reaches only this machine (`0.0.0.0` and names are not)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to any interface
