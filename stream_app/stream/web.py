"""HTTP API on the worker's web port: customers (routed to the owner), KPIs, health, readiness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from faust.web import Request, Response, View

if TYPE_CHECKING:
    from stream_app.stream.worker import Scorer

ROUTED_HEADER = "X-Engagement-Routed"


def register_views(scorer: Scorer) -> None:
    app = scorer.app

    def reply(view: View, status: int, body: Any) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

    @app.page("/customers/{customer_id}")
    class CustomerView(View):
        async def get(self, request: Request, customer_id: str) -> Response:
            as_of = request.query.get("as_of")  # type: ignore[attr-defined]
            p = scorer.customer_partition(customer_id)
            if p in scorer.processors:
                status, body = scorer.local_record(customer_id, as_of)
                return reply(self, status, body)
            if request.headers.get(ROUTED_HEADER):  # type: ignore[attr-defined]
                return reply(self, 503, {"error": "partition is moving between workers; retry"})
            owner = owner_url(scorer, p)
            if owner is None:
                return reply(self, 503, {"error": "no worker owns this customer's partition yet; retry"})
            params = {"as_of": as_of} if as_of else {}
            async with aiohttp.ClientSession() as session:
                async with session.get(f"{owner.rstrip('/')}/customers/{customer_id}", params=params,
                                       headers={ROUTED_HEADER: "1"},
                                       timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    return self.bytes(await resp.read(), content_type="application/json", status=resp.status)

    @app.page("/kpis")
    class KpiView(View):
        async def get(self, request: Request) -> Response:
            if not scorer.ready:
                return reply(self, 503, {"error": "not ready"})
            return reply(self, 200, scorer.kpi_document())

    @app.page("/healthz")
    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return reply(self, 200, {"status": "ok"})

    @app.page("/readyz")
    class ReadyView(View):
        async def get(self, request: Request) -> Response:
            if scorer.ready:
                return reply(self, 200, {"status": "ready", "partitions": sorted(scorer.processors)})
            return reply(self, 503, {"status": "recovering"})

    @app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

            scorer.update_tier_gauges()
            return self.bytes(generate_latest(scorer.metrics.registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    _ = (CustomerView, KpiView, HealthView, ReadyView, MetricsView)


def owner_url(scorer: Scorer, partition: int) -> str | None:
    """The web URL of the worker that scores `partition`, from the last group assignment."""
    return scorer.scoring.owner_url(partition)
