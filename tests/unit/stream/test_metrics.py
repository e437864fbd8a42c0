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


def _kpi_document() -> dict[str, object]:
    """A store KPI document with every SPEC §7 field (numbers consistent with each other)."""
    channels = {"web": 40, "app": 12, "store": 3, "email": 25, "sms": 2, "push": 9, "social": 7, "other": 0}
    return {
        "as_of": "2024-06-30T00:00:00Z", "window_days": 365,
        "orders": 120, "guest_orders": 10, "identified_orders": 110, "revenue": 4321.5,
        "customers": 50, "repeat_customers": 20, "guest_checkout_rate": 10 / 120,
        "average_order_value": 4321.5 / 120, "purchase_frequency": 110 / 50, "repeat_purchase_rate": 20 / 50,
        "survey_responses": 8, "promoters": 4, "passives": 1, "detractors": 3, "nps": 100 * (4 - 3) / 8,
        "reviews": 5, "satisfied_reviews": 4, "csat": 4 / 5, "average_rating": 19 / 5,
        "engagement_30d": {
            "window_days": 30,
            "email_sent": 200, "email_opened": 50, "email_clicked": 10, "push_sent": 0, "push_opened": 0,
            "sms_sent": 40, "sms_clicked": 4, "email_open_rate": 50 / 200, "email_click_rate": 10 / 200,
            "push_open_rate": None, "sms_click_rate": 4 / 40,
            "active_customers": 60, "customers_by_channel": channels,
            "omnichannel_customers": 15, "omnichannel_rate": 15 / 60,
        },
    }


def test_feedback_messaging_and_channel_kpis_exported() -> None:
    m = Metrics()
    m.set_kpis(_kpi_document())
    s = _samples(m)
    assert s["engagement_store_kpi[('kpi', 'nps')]"] == 12.5
    assert s["engagement_store_kpi[('kpi', 'csat')]"] == 0.8
    assert s["engagement_store_kpi[('kpi', 'average_rating')]"] == 3.8
    assert s["engagement_store_kpi[('kpi', 'detractors')]"] == 3
    assert s["engagement_store_engagement_30d[('kpi', 'email_open_rate')]"] == 0.25
    assert s["engagement_store_engagement_30d[('kpi', 'email_click_rate')]"] == 0.05
    assert s["engagement_store_engagement_30d[('kpi', 'sms_click_rate')]"] == 0.1
    assert s["engagement_store_engagement_30d[('kpi', 'push_sent')]"] == 0
    # push_open_rate has no denominator: no sample rather than a false 0
    assert "engagement_store_engagement_30d[('kpi', 'push_open_rate')]" not in s
    assert s["engagement_store_engagement_30d[('kpi', 'omnichannel_customers')]"] == 15
    assert s["engagement_store_engagement_30d[('kpi', 'omnichannel_rate')]"] == 0.25
    assert s["engagement_store_engagement_30d[('kpi', 'active_customers')]"] == 60
    # window_days and the nested map are not `kpi` values
    assert not any("window_days" in k or "customers_by_channel')" in k for k in s)
    by_channel = {k: v for k, v in s.items() if k.startswith("engagement_store_customers_by_channel")}
    assert by_channel == {f"engagement_store_customers_by_channel[('channel', '{c}')]": n
                          for c, n in _kpi_document()["engagement_30d"]["customers_by_channel"].items()}  # type: ignore[index]


def test_kpi_fields_gone_from_the_document_lose_their_samples() -> None:
    m = Metrics()
    m.set_kpis(_kpi_document())
    doc = _kpi_document()
    doc["nps"] = None  # no survey response in the window any more
    e30 = doc["engagement_30d"]
    assert isinstance(e30, dict)
    e30["customers_by_channel"] = {"web": 1, "other": 0}  # a leader restarted with fewer channels
    m.set_kpis(doc)
    s = _samples(m)
    assert "engagement_store_kpi[('kpi', 'nps')]" not in s
    assert {k for k in s if k.startswith("engagement_store_customers_by_channel")} == {
        "engagement_store_customers_by_channel[('channel', 'web')]",
        "engagement_store_customers_by_channel[('channel', 'other')]"}
    # a document without the nested object (an older engine): no 30-day samples at all
    del doc["engagement_30d"]
    m.set_kpis(doc)
    s = _samples(m)
    assert not any(k.startswith(("engagement_store_engagement_30d", "engagement_store_customers_by_channel"))
                   for k in s)
    assert s["engagement_store_kpi[('kpi', 'csat')]"] == 0.8
    m.set_kpis(_kpi_document())
    m.set_kpis(None)  # no longer the KPI leader
    assert not any(k.startswith("engagement_store_") for k in _samples(m))


def test_erasures_counted_per_batch() -> None:
    from stream_app.engine import Unit
    from stream_app.stream.processor import PartitionBatch, PartitionProcessor

    m = Metrics()
    proc = PartitionProcessor(0, Unit())
    assert _samples(m)["engagement_erasures_total[]"] == 0  # exported from the start, for rate()
    m.record_partition_batch(0, proc, PartitionBatch(erased=2))
    m.record_partition_batch(0, proc, PartitionBatch())
    m.record_partition_batch(0, proc, PartitionBatch(erased=1))
    assert _samples(m)["engagement_erasures_total[]"] == 3


def test_batch_histogram_exposes_what_prometheus_histogram_would() -> None:
    """The event-lag histogram is observed a batch at a time; its exposition must equal that of
    prometheus_client's own Histogram fed the same values one by one (bounds included: `le`)."""
    from prometheus_client import CollectorRegistry, Histogram, generate_latest

    from stream_app.stream.metrics import LAG_BUCKETS, BatchHistogram

    values = [0.0, 0.05, 0.0500001, 0.3, 1, 2.5, 7, 59.9, 86400, 604800, 1e7, -1.0]
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    batch = BatchHistogram("lag_seconds", "doc", LAG_BUCKETS, ours)
    batch.observe_many(values[:5])
    batch.observe_many(values[5:])
    reference = Histogram("lag_seconds", "doc", buckets=LAG_BUCKETS, registry=theirs)
    for v in values:
        reference.observe(v)

    def samples(r: CollectorRegistry) -> list[str]:
        return sorted(line for line in generate_latest(r).decode().splitlines()
                      if line.startswith("lag_seconds") and "_created" not in line)

    assert samples(ours) == samples(theirs)
    assert any('le="+Inf"} 12.0' in line for line in samples(ours))


def test_segment_members_follow_the_kpi_document_and_only_the_leader_exports_them() -> None:
    m = Metrics()
    m.set_kpis({**_kpi_document(), "segments": {"loyal": 4, "lapsed": 0, "promoters": 2}})
    members = {k: v for k, v in _samples(m).items() if k.startswith("engagement_segment_members")}
    assert members == {"engagement_segment_members[('segment', 'loyal')]": 4,
                       "engagement_segment_members[('segment', 'lapsed')]": 0,  # zeros included (SPEC §10)
                       "engagement_segment_members[('segment', 'promoters')]": 2}
    # a leader restarted with other definitions: a segment no longer defined loses its sample
    m.set_kpis({**_kpi_document(), "segments": {"loyal": 5}})
    members = {k: v for k, v in _samples(m).items() if k.startswith("engagement_segment_members")}
    assert members == {"engagement_segment_members[('segment', 'loyal')]": 5}
    m.set_kpis({**_kpi_document(), "segments": {}})  # segments off
    assert not any(k.startswith("engagement_segment_members") for k in _samples(m))
    m.set_kpis({**_kpi_document(), "segments": {"loyal": 5}})
    m.set_kpis(None)  # no longer the KPI leader
    assert not any(k.startswith("engagement_segment_members") for k in _samples(m))


def test_segment_changes_counted_per_published_change() -> None:
    from stream_app.engine import Unit
    from stream_app.engine.records import SegmentChange
    from stream_app.stream.processor import PartitionBatch, PartitionProcessor

    def change(segment: str, kind: str, reason: str) -> SegmentChange:
        return {"customer_id": "c1", "segment": segment, "change": kind, "at": "2024-01-01T00:00:00Z",
                "reason": reason}

    m = Metrics()
    proc = PartitionProcessor(0, Unit())
    m.record_partition_batch(0, proc, PartitionBatch(segment_changes=[
        change("loyal", "entered", "event"), change("promoters", "entered", "event"),
        change("loyal", "left", "sweep")]))
    m.record_partition_batch(0, proc, PartitionBatch(segment_changes=[
        change("loyal", "entered", "event"), change("loyal", "left", "erasure")]))
    counted = {k: v for k, v in _samples(m).items() if k.startswith("engagement_segment_changes_total")}
    assert counted == {
        "engagement_segment_changes_total[('change', 'entered'), ('reason', 'event'), ('segment', 'loyal')]": 2,
        "engagement_segment_changes_total[('change', 'entered'), ('reason', 'event'), ('segment', 'promoters')]": 1,
        "engagement_segment_changes_total[('change', 'left'), ('reason', 'sweep'), ('segment', 'loyal')]": 1,
        "engagement_segment_changes_total[('change', 'left'), ('reason', 'erasure'), ('segment', 'loyal')]": 1,
    }


def test_the_clv_model_info_has_the_loaded_version_or_no_sample() -> None:
    m = Metrics()
    assert not any(k.startswith("engagement_clv_model_info") for k in _samples(m))
    m.set_clv_model("35b8bccfcf89")
    assert _samples(m)["engagement_clv_model_info[('version', '35b8bccfcf89')]"] == 1
    m.set_clv_model("v2")  # one sample: the model loaded now
    assert [k for k in _samples(m) if k.startswith("engagement_clv_model_info")] == [
        "engagement_clv_model_info[('version', 'v2')]"]
    m.set_clv_model(None)
    assert not any(k.startswith("engagement_clv_model_info") for k in _samples(m))
