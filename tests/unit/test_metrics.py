"""Metric families: names, store KPI gauges exported by the leader only, null ratios absent."""

from __future__ import annotations

from prometheus_client import generate_latest

from stream_app.stream.metrics import METRIC_NAMES, Metrics


def _samples(m: Metrics) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = generate_latest(m.registry).decode()
    return {f"{s.name}{sorted(s.labels.items())}": s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_kpis_set_then_cleared_when_not_leader() -> None:
    m = Metrics()
    m.set_kpis({"orders": 10, "revenue": 99.5, "guest_checkout_rate": 0.1, "repeat_purchase_rate": None})
    s = _samples(m)
    assert s["engagement_store_kpi[('kpi', 'orders')]"] == 10
    assert "engagement_store_kpi[('kpi', 'repeat_purchase_rate')]" not in s
    m.set_kpis({"orders": 0, "guest_checkout_rate": None})
    assert "engagement_store_kpi[('kpi', 'guest_checkout_rate')]" not in _samples(m)
    m.set_kpis(None)
    assert not any(k.startswith("engagement_store_kpi") for k in _samples(m))


def test_every_declared_family_is_registered() -> None:
    names = {f.name for f in Metrics().registry.collect()}
    # prometheus_client strips `_total` from counter family names
    assert {n.removesuffix("_total") for n in METRIC_NAMES} == names
