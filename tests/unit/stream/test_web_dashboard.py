"""The dashboard's routes on the worker's web app: the static page (open, with its security
headers, the package's files) and `GET /overview` (behind the token, merged across the workers
that own the other partitions); real HTTP between in-process servers, fed by stand-in workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from stream_app.panels import Trends, clv_summary, overview
from stream_app.stream.web import OPEN_PATHS, PAGE_PATHS
from stream_app.web_assets import ASSETS, asset
from tests.unit.stream.test_security_api import BEARER, TOKEN, Served, StandIn, get, routes, serve


class DashboardStandIn(StandIn):
    """Owns `owned` of 4 partitions; 10 bronze and 1 gold customer per partition, one alert each."""

    def __init__(self, owned: set[int], owner: str | None = None, ready: bool = True) -> None:
        super().__init__(owned, owner)
        self._ready = ready
        self.overviews = 0

    @property
    def ready(self) -> bool:
        return self._ready

    def overview(self) -> dict[str, Any]:
        self.overviews += 1
        alerts = [{"alert_id": f"a{p}", "type": "churn_risk", "severity": "high", "customer_id": f"c{p}",
                   "at": f"2024-01-0{p + 1}T00:00:00Z", "details": {}} for p in sorted(self.owned)]
        trends = Trends()
        trends.add_alerts(alerts)
        pred = {"p_alive": 0.5, "expected_orders": 1.0, "expected_order_value": 2.0, "predicted_clv": 2.0,
                "horizon_days": 365, "model_version": "m"}
        return overview(as_of="2024-01-04T12:00:00Z",
                        tiers={"bronze": 10 * len(self.owned), "silver": 0, "gold": len(self.owned), "platinum": 0},
                        latest_alerts=alerts[::-1], trends=trends.to_json(["loyal"]),
                        clv=clv_summary([pred] * len(self.owned)) if self.owned else None,
                        scope={"partitions": sorted(self.owned), "partition_count": 4, "workers": 1})


@pytest.fixture
async def protected() -> AsyncIterator[Served]:
    async for s in serve(DashboardStandIn({0, 1, 2, 3}), TOKEN, "dash-protected"):
        yield s


async def test_the_page_and_its_files_are_served_without_the_token(protected: Served) -> None:
    assert set(PAGE_PATHS) == {"/", "/dashboard", "/dashboard.css", "/dashboard.js"}
    assert set(PAGE_PATHS) <= OPEN_PATHS and set(PAGE_PATHS) <= routes(protected.app)
    for path, name in PAGE_PATHS.items():
        status, body, headers = await get(protected.url + path)  # no token
        assert status == 200, path
        assert body == asset(name), path  # the package's file, as is
        kind = {"html": "text/html", "css": "text/css", "js": "text/javascript"}[name.rsplit(".", 1)[1]]
        assert headers["Content-Type"] == f"{kind}; charset=utf-8"
        csp = headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "connect-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    assert protected.standin.overviews == 0 and protected.standin.records_read == []  # no data read


def test_the_assets_are_in_the_package_and_reach_nothing_outside() -> None:
    for name in ASSETS:
        text = asset(name).decode()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, name
        assert "//cdn" not in text and "@import" not in text, name
    html = asset("dashboard.html").decode()
    assert 'src="dashboard.js"' in html and 'href="dashboard.css"' in html  # relative: works under a prefix
    # the script talks to the worker it came from, relative to the page
    js = asset("dashboard.js").decode()
    for path in ('"kpis"', '"segments"', '"overview"', '"customers/"'):
        assert path in js


async def test_overview_needs_the_token(protected: Served) -> None:
    status, body, headers = await get(protected.url + "/overview")
    assert status == 401 and "error" in body and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, _ = await get(protected.url + "/overview", {"Authorization": "Bearer wrong"})
    assert status == 401
    assert protected.standin.overviews == 0
    status, body, _ = await get(protected.url + "/overview", BEARER)
    assert status == 200
    assert body["tiers"] == {"bronze": 40, "silver": 0, "gold": 4, "platinum": 0} and body["customers"] == 44
    assert body["scope"] == {"partitions": [0, 1, 2, 3], "partition_count": 4, "workers": 1, "missing_partitions": []}
    assert [a["customer_id"] for a in body["latest_alerts"]] == ["c3", "c2", "c1", "c0"]
    assert body["movements"]["alerts"]["churn_risk"] == 4 and body["clv"]["customers"] == 4


async def test_overview_is_503_until_ready() -> None:
    async for s in serve(DashboardStandIn({0, 1, 2, 3}, ready=False), None, "dash-recovering"):
        status, body, _ = await get(s.url + "/overview")
        assert (status, body) == (503, {"error": "not ready"})


async def test_overview_merges_the_other_owners_with_the_token() -> None:
    async for owner in serve(DashboardStandIn({2, 3}), TOKEN, "dash-owner"):
        async for front in serve(DashboardStandIn({0, 1}, owner=owner.url), TOKEN, "dash-front"):
            status, body, _ = await get(front.url + "/overview", BEARER)
            assert status == 200
            assert owner.standin.overviews == 1  # asked once, with the token (it requires it)
            assert body["tiers"] == {"bronze": 40, "silver": 0, "gold": 4, "platinum": 0}
            assert body["scope"] == {"partitions": [0, 1, 2, 3], "partition_count": 4, "workers": 2,
                                     "missing_partitions": []}
            assert [a["customer_id"] for a in body["latest_alerts"]] == ["c3", "c2", "c1", "c0"]
            assert body["trends"]["alerts"]["churn_risk"] == [1, 1, 1, 1]
            assert body["clv"]["customers"] == 4
            # the owner answers its own part only to a routed request: no fan-out from there
            status, own, _ = await get(owner.url + "/overview", {**BEARER, "X-Engagement-Routed": "1"})
            assert status == 200 and own["scope"]["partitions"] == [2, 3]


async def test_overview_says_which_partitions_did_not_answer() -> None:
    async for front in serve(DashboardStandIn({0, 1}, owner="http://127.0.0.1:9"), None, "dash-alone"):
        status, body, _ = await get(front.url + "/overview")
        assert status == 200
        assert body["tiers"]["bronze"] == 20
        assert body["scope"]["partitions"] == [0, 1] and body["scope"]["missing_partitions"] == [2, 3]
    async for front in serve(DashboardStandIn({1}, owner=None), None, "dash-unassigned"):
        status, body, _ = await get(front.url + "/overview")
        assert status == 200 and body["scope"]["missing_partitions"] == [0, 2, 3]


def test_the_assets_go_into_the_wheel() -> None:
    """pyproject's package data names every asset (a wheel built without them serves 500s)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    config = tomllib.loads((Path(__file__).parents[3] / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["stream_app.web_assets"]
    for name in ASSETS:
        assert any(fnmatch.fnmatch(name, p) for p in patterns), name
