"""HTTP API on the worker's web port: customers (routed to the owner), KPIs, health, readiness.

The views depend on `WorkerView`, what they read from a worker, not on the worker itself.
Requests for a customer another worker owns are forwarded with one HTTP session, opened when the
app starts and closed when it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, Protocol

import aiohttp
import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

ROUTED_HEADER = "X-Engagement-Routed"

__all__ = ["ROUTED_HEADER", "WorkerView", "register_views"]


class WorkerView(Protocol):
    """What the HTTP views read from a worker."""

    @property
    def ready(self) -> bool:
        """Every owned partition is restored."""

    def owned_partitions(self) -> Collection[int]:
        """The re-keyed partitions this worker scores (restored)."""

    def customer_partition(self, customer_id: str) -> int:
        """The partition that holds `customer_id`."""

    def customer_record(self, customer_id: str, as_of: str | None) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for a customer of an owned partition, read at `as_of` (RFC 3339)."""

    def kpi_document(self) -> dict[str, Any]:
        """The store KPI document (every partition's partial, merged)."""

    def owner_url(self, partition: int) -> str | None:
        """The web URL of the worker that scores `partition`, from the last group assignment."""

    def metrics_registry(self) -> CollectorRegistry:
        """The Prometheus registry, current as of the call."""


class Forwarder:
    """Sends a customer request on to the worker that owns the customer's partition."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    async def run(self) -> None:
        """An app task: the session lives as long as the app (Faust cancels its tasks on stop)."""
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            await asyncio.Event().wait()
        finally:
            session, self.session = self.session, None
            await session.close()

    async def get(self, owner: str, customer_id: str, as_of: str | None) -> tuple[int, bytes] | None:
        """(status, body) from the owner; None while the app is starting or stopping."""
        if self.session is None:
            return None
        params = {"as_of": as_of} if as_of else {}
        async with self.session.get(f"{owner.rstrip('/')}/customers/{customer_id}", params=params,
                                    headers={ROUTED_HEADER: "1"}) as resp:
            return resp.status, await resp.read()


def register_views(app: faust.App, worker: WorkerView) -> None:
    forwarder = Forwarder()
    app.task(forwarder.run)

    def reply(view: View, status: int, body: Any) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

    @app.page("/customers/{customer_id}")
    class CustomerView(View):
        async def get(self, request: Request, customer_id: str) -> Response:
            as_of = request.query.get("as_of")
            p = worker.customer_partition(customer_id)
            if p in worker.owned_partitions():
                status, body = worker.customer_record(customer_id, as_of)
                return reply(self, status, body)
            if request.headers.get(ROUTED_HEADER):
                return reply(self, 503, {"error": "partition is moving between workers; retry"})
            owner = worker.owner_url(p)
            if owner is None:
                return reply(self, 503, {"error": "no worker owns this customer's partition yet; retry"})
            answer = await forwarder.get(owner, customer_id, as_of)
            if answer is None:
                return reply(self, 503, {"error": "the worker is starting or stopping; retry"})
            status, data = answer
            return self.bytes(data, content_type="application/json", status=status)

    @app.page("/kpis")
    class KpiView(View):
        async def get(self, request: Request) -> Response:
            if not worker.ready:
                return reply(self, 503, {"error": "not ready"})
            return reply(self, 200, worker.kpi_document())

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return reply(self, 200, {"status": "ok"})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            if worker.ready:
                return reply(self, 200, {"status": "ready", "partitions": sorted(worker.owned_partitions())})
            return reply(self, 503, {"status": "recovering"})

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            return self.bytes(generate_latest(worker.metrics_registry()),
                              content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (CustomerView, KpiView, HealthView, ReadyView, MetricsView)
