"""Every error answer of the worker's web app is JSON `{"error": ...}` (schemas/output/
http_error.schema.json): unknown routes (404), methods a route does not serve (405), an exception
in a view (500), with or without a token; real HTTP to an in-process server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession

from tests.unit.stream.test_security_api import TOKEN, Served, StandIn, serve


async def call(method: str, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    async with ClientSession() as session, session.request(method, url, headers=headers or {}) as resp:
        body = await resp.read()
        return resp.status, orjson.loads(body) if body else None, dict(resp.headers)


@pytest.fixture
async def api() -> AsyncIterator[Served]:
    async for s in serve(StandIn({0, 1, 2, 3}), None, "errors"):
        yield s


@pytest.fixture
async def protected() -> AsyncIterator[Served]:
    async for s in serve(StandIn({0, 1, 2, 3}), TOKEN, "errors-token"):
        yield s


@pytest.mark.parametrize("path", ["/nope", "/customers/", "/kpis/", "/segments/loyal", "/customers/c1/extra",
                                  "/router"])
async def test_an_unknown_route_is_a_json_404(api: Served, path: str) -> None:
    status, body, headers = await call("GET", api.url + path)
    assert (status, body) == (404, {"error": f"not found: {path}"})
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("method, path", [("POST", "/kpis"), ("DELETE", "/customers/c1"), ("PUT", "/metrics"),
                                          ("PATCH", "/healthz"), ("POST", "/readyz"), ("POST", "/segments")])
async def test_a_method_a_route_does_not_serve_is_a_json_405(api: Served, method: str, path: str) -> None:
    status, body, headers = await call(method, api.url + path)
    assert (status, body) == (405, {"error": f"method not allowed: {method}"})
    assert headers["Content-Type"].startswith("application/json")
    assert "GET" in headers["Allow"]


async def test_the_routes_still_answer(api: Served) -> None:
    assert (await call("GET", api.url + "/kpis"))[:2] == (200, {"orders_365d": 3})
    status, _, headers = await call("HEAD", api.url + "/kpis")
    assert status == 200 and headers["Content-Type"].startswith("application/json")


async def test_with_a_token_the_token_is_asked_first_then_the_route(protected: Served) -> None:
    status, body, _ = await call("GET", protected.url + "/nope")
    assert status == 401 and "error" in body, "an unknown route tells nothing without the token"
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert (await call("GET", protected.url + "/nope", bearer))[:2] == (404, {"error": "not found: /nope"})
    assert (await call("POST", protected.url + "/kpis", bearer))[:2] == (405, {"error": "method not allowed: POST"})
    status, body, headers = await call("POST", protected.url + "/healthz")  # an open path
    assert (status, body) == (405, {"error": "method not allowed: POST"})


async def test_an_exception_in_a_view_is_a_json_500_logged_without_the_path(
        api: Served, caplog: pytest.LogCaptureFixture) -> None:
    def boom(customer_id: str, as_of: str | None) -> tuple[int, dict[str, Any]]:
        raise RuntimeError("bug")

    api.standin.customer_partition = lambda customer_id: 0  # type: ignore[method-assign]
    api.standin.customer_record = boom  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="stream_app.stream.web"):
        status, body, headers = await call("GET", api.url + "/customers/cust-private-7")
    assert (status, body) == (500, {"error": "internal server error"})
    assert headers["Content-Type"].startswith("application/json")
    (record,) = [r for r in caplog.records if r.name == "stream_app.stream.web"]
    assert record.getMessage() == "error answering GET /customers/{customer_id}" and record.exc_info
    assert "cust-private" not in record.getMessage()


async def test_kpis_and_segments_answer_503_until_the_worker_is_ready() -> None:
    class Recovering(StandIn):
        @property
        def ready(self) -> bool:
            return False

    async for s in serve(Recovering({0, 1, 2, 3}), None, "recovering"):
        for path in ("/kpis", "/segments"):
            status, body, headers = await call("GET", s.url + path)
            assert (status, body) == (503, {"error": "not ready"}), path
            assert headers["Content-Type"].startswith("application/json")
