"""deploy/grafana: provisioning and the dashboard's queries."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.ops_helpers import (
    DASHBOARD,
    GRAFANA_DIR,
    MetricCatalogue,
    check_expr,
    load_yaml,
    metric_catalogue,
    metric_names,
    run_promtool,
)

PROVISIONING = GRAFANA_DIR / "provisioning"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def catalogue() -> MetricCatalogue:
    return metric_catalogue()


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dashboard["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


def targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(p, t) for p in panels(dashboard) for t in p.get("targets", [])]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for v in dashboard.get("templating", {}).get("list", []):
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        if v.get("type") == "query" and q:
            out.append(q)
    return out


def as_promql(expr: str) -> str:
    """A dashboard query with Grafana's variables replaced, as Prometheus would receive it."""
    expr = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", expr)
    return re.sub(r"\$\{?\w+\}?", "x", expr)


def exprs(dashboard: dict[str, Any]) -> list[str]:
    out = [t["expr"] for _, t in targets(dashboard)]
    for q in variable_queries(dashboard):
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", q.strip())
        assert m, f"unexpected variable query {q!r}"
        out.append(m.group(1))
    return out


def test_datasource_provisioning(dashboard: dict[str, Any]) -> None:
    files = sorted((PROVISIONING / "datasources").glob("*.y*ml"))
    assert files, "no datasource provisioning file"
    sources = [d for f in files for d in load_yaml(f)["datasources"]]
    prom = [d for d in sources if d["type"] == "prometheus"]
    assert len(prom) == 1 and prom[0].get("uid")
    uid = prom[0]["uid"]
    for p, t in targets(dashboard):
        for ds in (p.get("datasource"), t.get("datasource")):
            if ds is not None:
                assert ds == {"type": "prometheus", "uid": uid}, f"panel {p['title']!r} uses datasource {ds}"
    for v in dashboard["templating"]["list"]:
        if v.get("type") == "query":
            assert v["datasource"]["uid"] == uid


def test_dashboard_provider() -> None:
    files = sorted((PROVISIONING / "dashboards").glob("*.y*ml"))
    providers = [p for f in files for p in load_yaml(f)["providers"]]
    assert len(providers) == 1 and providers[0]["type"] == "file"
    path = providers[0]["options"]["path"]
    assert Path(path).is_absolute()
    assert providers[0].get("disableDeletion") is True, "provisioned dashboards should not be deletable in the UI"
    # that docker-compose mounts deploy/grafana/dashboards at `path` is checked in test_ops_compose


def test_dashboard_identity_and_layout(dashboard: dict[str, Any]) -> None:
    assert dashboard.get("uid") and dashboard.get("title")
    ps = panels(dashboard)
    ids = [p["id"] for p in ps]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: dict[tuple[int, int], str] = {}
    for p in ps:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['title']!r} is wider than the grid"
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]!r} and {p['title']!r} overlap"
                cells[(x, y)] = p["title"]
    for p, t in targets(dashboard):
        assert t.get("expr", "").strip(), f"empty query in {p['title']!r}"
        assert t.get("refId")


def test_queries_are_valid_promql(dashboard: dict[str, Any], tmp_path: Path) -> None:
    """Every query, variables substituted, passes `promtool check rules` as a recording rule."""
    rules = [{"record": f"dashboard:query_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs(dashboard))]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = run_promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_queries_use_only_the_workers_metrics_and_labels(dashboard: dict[str, Any],
                                                         catalogue: MetricCatalogue) -> None:
    problems = [f"{e}: {p}" for e in exprs(dashboard) for p in check_expr(as_promql(e), catalogue)]
    assert not problems, "\n".join(problems)
    used = {catalogue.documented_name(n) for e in exprs(dashboard) for n in metric_names(as_promql(e))} - {None}
    missing = catalogue.documented - used
    assert not missing, f"metrics the dashboard shows nowhere: {sorted(missing)}"


def test_legends_name_labels_the_query_has(dashboard: dict[str, Any], catalogue: MetricCatalogue) -> None:
    for p, t in targets(dashboard):
        expr = as_promql(t["expr"])
        labels = {"job", "instance"}
        for n in metric_names(expr):
            labels |= catalogue.exposed.get(n, frozenset())
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", t.get("legendFormat", "")):
            assert label in labels, f"{p['title']!r}: legend uses {label!r}, not a label of {expr}"


def test_histogram_quantiles_keep_the_le_label(dashboard: dict[str, Any]) -> None:
    quantiles = [t["expr"] for _, t in targets(dashboard) if "histogram_quantile" in t["expr"]]
    assert quantiles, "no latency percentiles"
    for e in quantiles:
        m = re.search(r"histogram_quantile\(\s*0?\.\d+\s*,\s*sum\s+by\s*\(([^)]*)\)\s*\(rate\((\w+)\{", e)
        assert m, f"expected histogram_quantile(q, sum by (le, ...) (rate(<metric>_bucket{{...}}[...]))): {e}"
        assert "le" in [x.strip() for x in m.group(1).split(",")], e
        assert m.group(2).endswith("_bucket"), e


@pytest.mark.parametrize(("topic", "pattern"), [
    ("throughput by outcome", r"sum by \(outcome\) \(rate\(engagement_events_total"),
    ("consumer lag", r"engagement_consumer_lag_messages"),
    ("event lag percentiles", r"histogram_quantile\([^,]+, sum by \(le\) \(rate\(engagement_event_lag_seconds_bucket"),
    ("batch latency percentiles", r"histogram_quantile\(.*engagement_batch_duration_seconds_bucket"),
    ("tiers", r"sum by \(tier\) \(engagement_customers"),
    ("alerts raised", r"engagement_alerts_total"),
    ("store KPIs", r"engagement_store_kpi"),
    ("recovery", r"engagement_recovery_duration_seconds"),
    ("recovering / ready", r"engagement_recovering"),
    ("dead letters", r"engagement_dead_letters_total"),
    ("erasures rate", r"rate\(engagement_erasures_total"),
    ("NPS", r'engagement_store_kpi\{[^}]*kpi="nps"'),
    ("CSAT", r'engagement_store_kpi\{[^}]*kpi="csat"'),
    ("email open and click rates", r'engagement_store_engagement_30d\{[^}]*kpi=~"email_open_rate\|email_click_rate"'),
    ("push and SMS rates", r'engagement_store_engagement_30d\{[^}]*kpi=~"push_open_rate\|sms_click_rate"'),
    ("omnichannel customers", r'engagement_store_engagement_30d\{[^}]*omnichannel_customers'),
    ("customers by channel", r"max by \(channel\) \(engagement_store_customers_by_channel"),
])
def test_dashboard_shows(topic: str, pattern: str, dashboard: dict[str, Any]) -> None:
    assert any(re.search(pattern, t["expr"]) for _, t in targets(dashboard)), f"no panel for {topic}"


def test_kpi_label_values_are_fields_the_workers_export(dashboard: dict[str, Any]) -> None:
    """A `kpi` matcher names SPEC §7 fields as metrics.py exports them: a misspelt or moved field
    would leave a panel empty without any error."""
    from stream_app.stream.metrics import ENGAGEMENT_30D_FIELDS, KPI_FIELDS

    exported = {"engagement_store_kpi": set(KPI_FIELDS), "engagement_store_engagement_30d": set(ENGAGEMENT_30D_FIELDS)}
    seen = set()
    for p, t in targets(dashboard):
        for metric, matchers in re.findall(r"(engagement_store_\w+)\{([^}]*)\}", t["expr"]):
            for op, values in re.findall(r'\bkpi\s*(=~|=)\s*"([^"]*)"', matchers):
                names = values.split("|") if op == "=~" else [values]
                assert metric in exported, f"{p['title']!r}: {metric} has no kpi label"
                unknown = set(names) - exported[metric]
                assert not unknown, f"{p['title']!r}: {metric} exports no kpi {sorted(unknown)}"
                seen |= {(metric, n) for n in names}
    for metric in exported:
        assert any(m == metric for m, _ in seen), f"no panel reads {metric}"
