"""HTTP API on the worker's web port: customers (routed to the owner), KPIs, segments, the
dashboard's overview (merged across workers), health, readiness; and the dashboard page itself
(`/`, `/dashboard`: static files, no data; docs/DASHBOARD.md).

The views depend on `WorkerView`, what they read from a worker, not on the worker itself.
Requests for a customer another worker owns are forwarded with one HTTP session, opened when the
app starts and closed when it stops.

With a token (ENGAGEMENT_API_TOKEN), every route but the probes, the scrape and the dashboard's
static files (`OPEN_PATHS`) requires `Authorization: Bearer <token>`, and forwarded requests carry it (docs/SECURITY.md).
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

from stream_app.panels import merge_overviews
from stream_app.stream.compat import add_web_middleware
from stream_app.web_assets import asset

ROUTED_HEADER = "X-Engagement-Routed"
#: the dashboard: static HTML, CSS and script, the same for everyone and with no data in them; the
#: page asks for the token and sends it with its API requests (docs/SECURITY.md)
PAGE_PATHS = {"/": "dashboard.html", "/dashboard": "dashboard.html", "/dashboard.css": "dashboard.css",
              "/dashboard.js": "dashboard.js"}
#: answered without a token: the kubelet's probes and Prometheus carry none, and the dashboard's
#: static files (a browser cannot send a header with a page it navigates to)
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", *PAGE_PATHS})
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8"}
#: the page loads only its own files and talks only to its own worker; it may not be framed
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
REALM = "engagement-scorer"

log = logging.getLogger(__name__)

__all__ = ["OPEN_PATHS", "PAGE_PATHS", "ROUTED_HEADER", "WorkerView", "bearer_ok", "register_views"]


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

    def overview(self) -> Mapping[str, Any]:
        """This worker's part of the dashboard over its own partitions (`stream_app.panels.overview`)."""

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
        params = {"as_of": as_of} if as_of else {}
        return await self.get_path(owner, f"/customers/{customer_id}", params)

    async def get_path(self, owner: str, path: str, params: Mapping[str, str] | None = None) -> tuple[int, bytes] | None:
        """(status, body) of `path` on another worker; None while the app is starting or stopping."""
        if self.session is None:
            return None
        async with self.session.get(f"{owner.rstrip('/')}{path}", params=params or {}, headers=self.headers) as resp:
            return resp.status, await resp.read()

    async def overviews(self, owners: Collection[str]) -> list[Mapping[str, Any] | None]:
        """Each owner's own overview (`/overview` with the routed header: no fan-out there), None
        for one that did not answer 200 with a JSON object."""

        async def one(owner: str) -> Mapping[str, Any] | None:
            try:
                answer = await self.get_path(owner, "/overview")
            except (aiohttp.ClientError, TimeoutError, OSError):
                return None
            if answer is None or answer[0] != 200:
                return None
            try:
                doc = orjson.loads(answer[1])
            except orjson.JSONDecodeError:
                return None
            return doc if isinstance(doc, dict) else None

        return list(await asyncio.gather(*(one(o) for o in owners)))


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

    @app.page("/overview")
    class OverviewView(View):
        """The dashboard's figures that the KPI document does not carry, over every partition:
        this worker's own, plus the other owners' (asked once each, with the token), merged."""

        async def get(self, request: Request) -> Response:
            if not worker.ready:
                return reply(self, 503, {"error": "not ready"})
            local = worker.overview()
            if request.headers.get(ROUTED_HEADER):
                return reply(self, 200, local)
            count = int(local["scope"].get("partition_count", 0))
            owned = set(worker.owned_partitions())
            others: dict[str, list[int]] = {}
            missing: list[int] = []
            for p in range(count):
                if p in owned:
                    continue
                owner = worker.owner_url(p)
                if owner is None:
                    missing.append(p)
                else:
                    others.setdefault(owner, []).append(p)
            docs = [local]
            for parts, doc in zip(others.values(), await forwarder.overviews(list(others)), strict=True):
                if doc is None:
                    missing.extend(parts)
                else:
                    docs.append(doc)
            merged = merge_overviews(docs, local["as_of"])
            covered = set(merged["scope"]["partitions"])
            merged["scope"]["missing_partitions"] = sorted({*missing, *(set(range(count)) - covered)})
            return reply(self, 200, merged)

    def page(name: str) -> type[View]:
        body = asset(name)
        content_type = CONTENT_TYPES[name[name.rindex("."):]]

        class PageView(View):
            async def get(self, request: Request) -> Response:
                response = self.bytes(body, content_type=content_type.split(";")[0])
                response.headers["Content-Type"] = content_type
                response.headers.update(PAGE_HEADERS)
                return response

        PageView.__name__ = PageView.__qualname__ = f"Page_{name.replace('.', '_')}"
        return PageView

    for path, name in PAGE_PATHS.items():
        app.page(path)(page(name))

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

    _ = (CustomerView, KpiView, SegmentView, OverviewView, HealthView, ReadyView, MetricsView)
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
