"""HTTP API on the worker's web port: customers (routed to the owner), KPIs, segments, health,
readiness.

The views depend on `WorkerView`, what they read from a worker, not on the worker itself.
Requests for a customer another worker owns are forwarded with one HTTP session, opened when the
app starts and closed when it stops.

With a token (ENGAGEMENT_API_TOKEN), every route but the probes and the scrape (`OPEN_PATHS`)
requires `Authorization: Bearer <token>`, and forwarded requests carry it (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Collection, Mapping
from typing import Any, Protocol

import aiohttp
import aiohttp.web
import faust
import orjson
from faust.web import Request, Response, View
from prometheus_client import CollectorRegistry

from stream_app.stream.compat import add_web_middleware

ROUTED_HEADER = "X-Engagement-Routed"
#: answered without a token: the kubelet's probes and Prometheus carry none
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
REALM = "engagement-scorer"

log = logging.getLogger(__name__)

__all__ = ["OPEN_PATHS", "ROUTED_HEADER", "WorkerView", "bearer_ok", "register_views"]


def bearer_ok(header: str | None, token: str) -> bool:
    """Whether an `Authorization` header value carries `token` as a Bearer credential.

    Constant-time in the credential (hmac.compare_digest), so the answer time tells nothing about
    how much of a guess was right.
    """
    scheme, _, credential = (header or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credential.strip().encode(), token.encode())


class WorkerView(Protocol):
    """What the HTTP views read from a worker."""

    @property
    def ready(self) -> bool:
        """Every owned partition is restored."""

    def owned_partitions(self) -> Collection[int]:
        """The re-keyed partitions this worker scores (restored)."""

    def customer_partition(self, customer_id: str) -> int:
        """The partition that holds `customer_id`."""

    def customer_record(self, customer_id: str, as_of: str | None) -> tuple[int, Mapping[str, Any]]:
        """(HTTP status, body) for a customer of an owned partition, read at `as_of` (RFC 3339)."""

    def kpi_document(self) -> Mapping[str, Any]:
        """The store KPI document (every partition's partial, merged)."""

    def segment_document(self) -> Mapping[str, Any]:
        """`{"segments": [{name, when, members}, ...]}`: each defined segment in definition order,
        with its store-wide member count from the merged KPI document (SPEC §10)."""

    def owner_url(self, partition: int) -> str | None:
        """The web URL of the worker that scores `partition`, from the last group assignment."""

    def metrics_registry(self) -> CollectorRegistry:
        """The Prometheus registry, current as of the call."""


class Forwarder:
    """Sends a customer request on to the worker that owns the customer's partition."""

    def __init__(self, token: str | None = None) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.headers = {ROUTED_HEADER: "1"}
        if token is not None:  # every worker has the same token (one Secret): the owner checks it
            self.headers["Authorization"] = f"Bearer {token}"

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
                                    headers=self.headers) as resp:
            return resp.status, await resp.read()


def register_views(app: faust.App, worker: WorkerView, token: str | None = None) -> Forwarder:
    """Add the routes to `app`; with `token`, all but `OPEN_PATHS` require it. Returns the
    forwarder (its session runs as an app task)."""
    forwarder = Forwarder(token)
    app.task(forwarder.run)

    def reply(view: View, status: int, body: Any) -> Response:
        return view.bytes(orjson.dumps(body), content_type="application/json", status=status)

    # First, so it is the outermost: every error answer is JSON, an unknown route's included.
    add_web_middleware(app, _json_errors)
    if token is not None:
        # Deny by default: a middleware sees every route, Faust's own blueprints (/router, /stats,
        # ...) and any later page included, so none is left open by forgetting a check.
        add_web_middleware(app, _require_token(token))

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

    @app.page("/segments")
    class SegmentView(View):
        async def get(self, request: Request) -> Response:
            if not worker.ready:
                return reply(self, 503, {"error": "not ready"})
            return reply(self, 200, worker.segment_document())

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

    _ = (CustomerView, KpiView, SegmentView, HealthView, ReadyView, MetricsView)
    return forwarder


@aiohttp.web.middleware
async def _json_errors(request: aiohttp.web.Request, handler: Any) -> aiohttp.web.StreamResponse:
    """aiohttp middleware: the router's and aiohttp's error answers (404 for an unknown route, 405
    for a method a route does not serve, ...) as JSON `{"error": ...}` like the API's own, and an
    unexpected exception as a JSON 500 (logged with the route's pattern, never the path)."""
    try:
        return await handler(request)
    except aiohttp.web.HTTPException as exc:
        if exc.status < 400:
            raise  # a redirect is not an error
        if exc.status == 404:
            message = f"not found: {request.path}"
        elif exc.status == 405:
            message = f"method not allowed: {request.method}"
        else:
            message = (exc.reason or "error").lower()
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate")}
        return aiohttp.web.json_response({"error": message}, status=exc.status, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - answered as JSON; the traceback goes to the log
        resource = request.match_info.route.resource  # the route's pattern: a path may hold a customer id
        log.exception("error answering %s %s", request.method, resource.canonical if resource else "?")
        return aiohttp.web.json_response({"error": "internal server error"}, status=500)


def _require_token(token: str) -> Any:
    """aiohttp middleware: 401 (RFC 6750) for any path but `OPEN_PATHS` without the token."""

    @aiohttp.web.middleware
    async def require_token(request: aiohttp.web.Request, handler: Any) -> aiohttp.web.StreamResponse:
        header = request.headers.get("Authorization")
        if request.path in OPEN_PATHS or bearer_ok(header, token):
            return await handler(request)
        challenge = f'Bearer realm="{REALM}"'
        if header:  # a credential was offered and refused; say no more about it
            challenge += ', error="invalid_token"'
        return aiohttp.web.json_response({"error": "unauthorized: send Authorization: Bearer <token>"},
                                         status=401, headers={"WWW-Authenticate": challenge})

    return require_token
