"""HTTP API authentication: every route of the worker's web app (ours and Faust's own), with and
without a token, asked directly and forwarded to the key's owner; real HTTP between in-process
servers, the views fed by a stand-in worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import faust
import orjson
import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from stream_app.config import Settings, SettingsError, env_table
from stream_app.stream import web
from stream_app.stream.web import OPEN_PATHS, bearer_ok, register_views
from stream_app.stream.worker import ScorerApp, is_loopback

TOKEN = "t0k3n-5ecret-abcdef0123456789"


class StandIn:
    """A worker (web.WorkerView) owning `owned` of 4 partitions; customer c<N> is in partition N."""

    def __init__(self, owned: set[int], owner: str | None = None) -> None:
        self.owned = owned
        self.owner = owner
        self.records_read: list[str] = []

    @property
    def ready(self) -> bool:
        return True

    def owned_partitions(self) -> Collection[int]:
        return self.owned

    def customer_partition(self, customer_id: str) -> int:
        return int(customer_id[1:]) % 4

    def customer_record(self, customer_id: str, as_of: str | None) -> tuple[int, dict[str, Any]]:
        self.records_read.append(customer_id)
        return 200, {"customer_id": customer_id, "as_of": as_of}

    def kpi_document(self) -> dict[str, Any]:
        return {"orders_365d": 3}

    def segment_document(self) -> dict[str, Any]:
        return {"segments": [{"name": "loyal", "when": [["orders_365d", ">=", 3]], "members": 1}]}

    def owner_url(self, partition: int) -> str | None:
        return self.owner

    def metrics_registry(self) -> CollectorRegistry:
        return CollectorRegistry()


class Served:
    def __init__(self, app: faust.App, server: TestServer, standin: StandIn) -> None:
        self.app, self.server, self.standin = app, server, standin

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")


async def serve(standin: StandIn, token: str | None, name: str) -> AsyncIterator[Served]:
    app = faust.App(name, broker="kafka://h:1", autodiscover=False)
    forwarder = register_views(app, standin, token)
    app.web.init_server()  # Faust's own blueprints (/router, /stats, ...) as a worker serves them
    server = TestServer(app.web.web_app)
    await server.start_server()
    task = asyncio.create_task(forwarder.run())  # the app task that holds the forwarding session
    while forwarder.session is None:
        await asyncio.sleep(0)
    try:
        yield Served(app, server, standin)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()


async def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
    async with ClientSession() as session, session.get(url, headers=headers or {}) as resp:
        body = await resp.read()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            data = body
        return resp.status, data, dict(resp.headers)


def routes(app: faust.App) -> set[str]:
    """Every GET path the worker's web app serves, path parameters filled in."""
    out = set()
    for resource in app.web.web_app.router.resources():
        path = resource.canonical
        for name in ("customer_id", "name", "key"):
            path = path.replace("{" + name + "}", "c1")
        out.add(path)
    return out


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def protected() -> AsyncIterator[Served]:
    async for s in serve(StandIn({0, 1, 2, 3}), TOKEN, "protected"):
        yield s


@pytest.fixture
async def open_api() -> AsyncIterator[Served]:
    async for s in serve(StandIn({0, 1, 2, 3}), None, "open"):
        yield s


async def test_every_route_but_the_probes_and_scrape_needs_the_token(protected: Served) -> None:
    paths = routes(protected.app)
    assert {"/customers/c1", "/kpis", "/segments", "/healthz", "/readyz", "/metrics"} <= paths
    assert any(p.startswith("/router") for p in paths), "Faust's own blueprints are served too"
    for path in sorted(paths):
        status, body, headers = await get(protected.url + path)
        if path in OPEN_PATHS:
            assert status == 200, path
            continue
        assert status == 401, path
        assert body == {"error": "unauthorized: send Authorization: Bearer <token>"}, path
        assert headers["WWW-Authenticate"] == 'Bearer realm="engagement-scorer"', path
        assert headers["Content-Type"].startswith("application/json")
        status, _, _ = await get(protected.url + path, BEARER)
        assert status != 401, path


@pytest.mark.parametrize("header", [f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", "Bearer ", "Bearer",
                                    f"Basic {TOKEN}", TOKEN, f"Token {TOKEN}"])
async def test_a_wrong_credential_is_refused(protected: Served, header: str) -> None:
    for path in ("/customers/c1", "/kpis", "/segments"):
        status, body, headers = await get(protected.url + path, {"Authorization": header})
        assert status == 401 and "error" in body
        assert headers["WWW-Authenticate"] == 'Bearer realm="engagement-scorer", error="invalid_token"'
    assert protected.standin.records_read == [], "no record was read for a refused request"


async def test_the_right_token_reads_customers_kpis_and_segments(protected: Served) -> None:
    status, body, _ = await get(protected.url + "/customers/c2?as_of=2024-01-01T00:00:00Z", BEARER)
    assert (status, body) == (200, {"customer_id": "c2", "as_of": "2024-01-01T00:00:00Z"})
    status, body, _ = await get(protected.url + "/kpis", {"Authorization": f"bearer {TOKEN}"})  # scheme: any case
    assert (status, body) == (200, {"orders_365d": 3})
    status, body, _ = await get(protected.url + "/segments", BEARER)
    assert (status, body) == (200, protected.standin.segment_document())


async def test_without_a_token_every_route_is_open(open_api: Served) -> None:
    for path in sorted(routes(open_api.app)):
        status, _, _ = await get(open_api.url + path)
        assert status != 401, path
    status, body, _ = await get(open_api.url + "/customers/c3")
    assert (status, body["customer_id"]) == (200, "c3")


async def test_forwarding_to_the_owner_carries_the_token() -> None:
    async for owner in serve(StandIn({0, 1, 2, 3}), TOKEN, "owner"):
        async for front in serve(StandIn(set(), owner=owner.url), TOKEN, "front"):
            # the owner requires the token too: a 200 means the forwarded request carried it
            status, body, _ = await get(front.url + "/customers/c1?as_of=2024-02-01T00:00:00Z", BEARER)
            assert (status, body) == (200, {"customer_id": "c1", "as_of": "2024-02-01T00:00:00Z"})
            assert owner.standin.records_read == ["c1"] and front.standin.records_read == []
            # without the token the front refuses before forwarding anything
            status, _, _ = await get(front.url + "/customers/c2")
            assert status == 401 and owner.standin.records_read == ["c1"]


async def test_a_forwarded_request_with_another_token_is_refused_by_the_owner() -> None:
    """Workers configured with different tokens: the owner's 401 reaches the client."""
    async for owner in serve(StandIn({0, 1, 2, 3}), TOKEN + "-other", "owner"):
        async for front in serve(StandIn(set(), owner=owner.url), TOKEN, "front"):
            status, body, _ = await get(front.url + "/customers/c1", BEARER)
            assert status == 401 and "error" in body
            assert owner.standin.records_read == []


async def test_forwarding_without_tokens_stays_open() -> None:
    async for owner in serve(StandIn({0, 1, 2, 3}), None, "owner"):
        async for front in serve(StandIn(set(), owner=owner.url), None, "front"):
            status, body, _ = await get(front.url + "/customers/c1")
            assert (status, body["customer_id"]) == (200, "c1")


def test_the_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []

    def compare(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return a == b

    monkeypatch.setattr(web.hmac, "compare_digest", compare)
    assert bearer_ok(f"Bearer {TOKEN}", TOKEN)
    assert not bearer_ok("Bearer nope", TOKEN)
    assert calls == [(TOKEN.encode(), TOKEN.encode()), (b"nope", TOKEN.encode())]


@pytest.mark.parametrize("header, ok", [(f"Bearer {TOKEN}", True), (f"BEARER  {TOKEN} ", True),
                                        (None, False), ("", False), (f"Bearer {TOKEN} extra", False),
                                        (f"Bearer {TOKEN[:5]}", False)])
def test_bearer_header_parsing(header: str | None, ok: bool) -> None:
    assert bearer_ok(header, TOKEN) is ok


# -- the token setting -------------------------------------------------------------------------------

def test_token_from_the_variable_or_a_file(tmp_path: Path) -> None:
    assert Settings().read_api_token() is None
    assert Settings(api_token=TOKEN).read_api_token() == TOKEN
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")  # as `echo` and most Secret tooling write it
    assert Settings(api_token_file=str(f)).read_api_token() == TOKEN


@pytest.mark.parametrize("setup, message", [
    (lambda p: Settings(api_token="a", api_token_file=str(p)), "not both"),
    (lambda p: Settings(api_token_file=str(p / "missing")), "ENGAGEMENT_API_TOKEN_FILE=.*cannot read"),
    (lambda p: Settings(api_token_file=str(p)), "cannot read"),  # a directory
    (lambda p: Settings(api_token="two words"), "printable ASCII without spaces"),
])
def test_unusable_tokens_fail_at_start(tmp_path: Path, setup: Any, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        setup(tmp_path).read_api_token()


def test_an_empty_token_file_fails(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("\n")
    with pytest.raises(SettingsError, match="empty"):
        Settings(api_token_file=str(f)).read_api_token()


def test_the_token_is_never_printed() -> None:
    s = Settings(api_token=TOKEN)
    assert TOKEN not in repr(s) and TOKEN not in str(s)
    assert dict((n, d) for n, d, _ in env_table())["ENGAGEMENT_API_TOKEN"] == ""


# -- the warning at start -------------------------------------------------------------------------

@pytest.mark.parametrize("bind, token, warned", [("0.0.0.0", None, True), ("10.1.2.3", None, True),
                                                 ("worker-1", None, True), ("0.0.0.0", TOKEN, False),
                                                 ("127.0.0.1", None, False), ("localhost", None, False),
                                                 ("::1", None, False)])
def test_an_open_api_on_a_reachable_address_is_warned_about(caplog: pytest.LogCaptureFixture, bind: str,
                                                            token: str | None, warned: bool) -> None:
    with caplog.at_level(logging.WARNING, logger="stream_app.stream.worker"):
        ScorerApp(Settings(broker="kafka://h:1", web_bind=bind, api_token=token or ""))
    hits = [r for r in caplog.records if "ENGAGEMENT_API_TOKEN" in r.getMessage()]
    assert bool(hits) is warned
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_loopback_addresses() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("example.com")
