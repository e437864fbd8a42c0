"""Prometheus metrics of a worker (served at /metrics on its web port).

Naming follows Prometheus conventions: `engagement_` prefix, base units (`_seconds`), counters end
in `_total`, and every label has a small fixed set of values (never a customer id).
"""

from __future__ import annotations

import math
import platform
import threading
import time
from bisect import bisect_left
from collections import Counter as Tally
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

import stream_app
from stream_app.engine import TIERS

if TYPE_CHECKING:
    from stream_app.stream.processor import PartitionBatch, PartitionProcessor

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 604800)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
#: top-level fields of the store KPI document (SPEC §7, 365-day window): `engagement_store_kpi{kpi}`
KPI_FIELDS = ("orders", "guest_orders", "identified_orders", "revenue", "customers", "repeat_customers",
              "guest_checkout_rate", "average_order_value", "purchase_frequency", "repeat_purchase_rate",
              "survey_responses", "promoters", "passives", "detractors", "nps",
              "reviews", "satisfied_reviews", "csat", "average_rating")
#: fields of the document's `engagement_30d` object (SPEC §7, 30-day window):
#: `engagement_store_engagement_30d{kpi}`; its `customers_by_channel` map is
#: `engagement_store_customers_by_channel{channel}`
ENGAGEMENT_30D_FIELDS = ("email_sent", "email_opened", "email_clicked", "push_sent", "push_opened",
                         "sms_sent", "sms_clicked", "email_open_rate", "email_click_rate", "push_open_rate",
                         "sms_click_rate", "active_customers", "omnichannel_customers", "omnichannel_rate")


class BatchHistogram(Collector):
    """A label-less histogram observed a batch of values at a time: `Histogram.observe` per
    applied event (a lock and two increments each) was ~5 % of a scoring process (py-spy,
    docs/BENCHMARKS.md). Exposed as a standard histogram (`_bucket{le}`, `_count`, `_sum`)."""

    def __init__(self, name: str, documentation: str, buckets: Iterable[float],
                 registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = sorted(float(b) for b in buckets)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf only)
        self.sum = 0.0
        self._lock = threading.Lock()  # a scrape may run on another thread
        registry.register(self)

    def observe_many(self, values: Iterable[float]) -> None:
        bounds, local = self.bounds, [0] * len(self.counts)
        total = 0.0
        for v in values:
            local[bisect_left(bounds, v)] += 1  # first bound >= v: Prometheus buckets are `le`
            total += v
        with self._lock:
            for i, n in enumerate(local):
                self.counts[i] += n
            self.sum += total

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            counts, total = list(self.counts), self.sum
        cumulative, acc = [], 0
        for bound, n in zip([*self.bounds, math.inf], counts, strict=True):
            acc += n
            cumulative.append(("+Inf" if bound == math.inf else repr(bound), acc))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=total)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry or CollectorRegistry()
        self.events = Counter("engagement_events_total", "Input events by topic and outcome",
                              ["topic", "outcome"], registry=r)
        self.dead_letters = Counter("engagement_dead_letters_total", "Dead letters by reason",
                                    ["reason"], registry=r)
        self.event_lag = BatchHistogram("engagement_event_lag_seconds",
                                        "Wall clock minus occurred_at when an event is applied",
                                        LAG_BUCKETS, r)
        self.batch_duration = Histogram("engagement_batch_duration_seconds",
                                         "Time to process one batch", ["stage"],
                                         buckets=BATCH_BUCKETS, registry=r)
        self.watermark = Gauge("engagement_watermark_seconds",
                               "Event-time watermark of each owned partition (Unix seconds)",
                               ["partition"], registry=r)
        self.consumer_lag = Gauge("engagement_consumer_lag_messages",
                                  "High-water mark minus position per topic partition",
                                  ["topic", "partition"], registry=r)
        self.customers = Gauge("engagement_customers", "Customers per tier in owned partitions",
                               ["tier"], registry=r)
        self.tier_changes = Counter("engagement_tier_changes_total", "Tier changes",
                                    ["from_tier", "to_tier", "reason"], registry=r)
        self.alerts = Counter("engagement_alerts_total", "Alerts raised", ["type", "severity"], registry=r)
        self.segment_changes = Counter("engagement_segment_changes_total",
                                       "Segment changes published (SPEC §10)", ["segment", "change", "reason"],
                                       registry=r)
        self.kpi = Gauge("engagement_store_kpi",
                         "Store KPIs over the 365-day window (exported by the KPI leader only)",
                         ["kpi"], registry=r)
        # The 30-day messaging and channel figures get their own families: a different window
        # than engagement_store_kpi, so a `kpi` value never silently means another period.
        self.engagement_30d = Gauge("engagement_store_engagement_30d",
                                    "Store messaging and channel KPIs over the 30-day window "
                                    "(exported by the KPI leader only)", ["kpi"], registry=r)
        self.customers_by_channel = Gauge("engagement_store_customers_by_channel",
                                          "Distinct customers with activity on each channel over the "
                                          "30-day window (exported by the KPI leader only)",
                                          ["channel"], registry=r)
        self.segment_members = Gauge("engagement_segment_members",
                                     "Customers holding each defined segment, store-wide (SPEC §10; "
                                     "exported by the KPI leader only)", ["segment"], registry=r)
        self.erasures = Counter("engagement_erasures_total", "customer_erased events applied (SPEC §9)",
                                registry=r)
        self.rebalances = Counter("engagement_rebalances_total", "Partition assignments received", registry=r)
        self.recovery_duration = Gauge("engagement_recovery_duration_seconds",
                                       "Duration of the last state recovery", registry=r)
        self.recovery_partitions = Gauge("engagement_recovery_partitions",
                                         "Partitions recovered in the last recovery", registry=r)
        self.recovering = Gauge("engagement_recovering", "1 while state is being recovered", registry=r)
        self.ready = Gauge("engagement_ready", "1 when the worker serves and scores", registry=r)
        self.build_info = Gauge("engagement_build_info", "Build information", ["version", "python"], registry=r)
        self.build_info.labels(version=stream_app.__version__, python=platform.python_version()).set(1)
        self.clv_model_info = Gauge("engagement_clv_model_info",
                                    "The lifetime-value model this worker loaded at start (SPEC §11): 1 "
                                    "with its version; no sample when none is loaded", ["version"], registry=r)

    def set_clv_model(self, version: str | None) -> None:
        """`engagement_clv_model_info{version}` = 1 for the model loaded, no sample without one."""
        self.clv_model_info.clear()
        if version is not None:
            self.clv_model_info.labels(version=version).set(1)

    def set_kpis(self, doc: Mapping[str, object] | None) -> None:
        """Leader: the store KPIs; other workers: none (so the group exports them once)."""
        if doc is None:
            self.kpi.clear()
            self.engagement_30d.clear()
            self.customers_by_channel.clear()
            self.segment_members.clear()
            return
        _set_labelled(self.kpi, KPI_FIELDS, doc)
        e30 = doc.get("engagement_30d")
        e30 = e30 if isinstance(e30, dict) else {}
        _set_labelled(self.engagement_30d, ENGAGEMENT_30D_FIELDS, e30)
        by_channel = e30.get("customers_by_channel")
        by_channel = by_channel if isinstance(by_channel, dict) else {}
        # the configured channels can change with a restart of the leader: drop channels gone
        _set_map(self.customers_by_channel, "channel", by_channel)
        segments = doc.get("segments")
        _set_map(self.segment_members, "segment", segments if isinstance(segments, dict) else {})

    # -- the scoring path ----------------------------------------------------------------------
    def record_partition_batch(self, p: int, proc: PartitionProcessor, out: PartitionBatch) -> None:
        """Counters and the watermark after one partition's batch was committed."""
        for (topic, outcome), n in out.outcomes.items():
            self.events.labels(topic=topic, outcome=outcome).inc(n)
        for _, rejection, _ in out.rejected:
            self.events.labels(topic="events", outcome="rejected").inc()
            self.dead_letters.labels(reason=rejection.reason).inc()
        if out.applied_at:
            now_us = time.time() * 1_000_000
            self.event_lag.observe_many([(now_us - at) / 1_000_000 for at in out.applied_at])
        for d in out.tier_changes:
            self.tier_changes.labels(from_tier=d["from_tier"] or "none", to_tier=d["to_tier"],
                                     reason=d["reason"]).inc()
        for a in out.alerts:
            self.alerts.labels(type=a["type"], severity=a["severity"]).inc()
        if out.segment_changes:  # a sweep can make thousands: one increment per label set
            for (segment, change, reason), n in Tally(
                    (sc["segment"], sc["change"], sc["reason"]) for sc in out.segment_changes).items():
                self.segment_changes.labels(segment=segment, change=change, reason=reason).inc(n)
        if out.erased:
            self.erasures.inc(out.erased)
        wm = proc.unit.watermark
        if wm is not None:
            self.watermark.labels(partition=str(p)).set(wm / 1_000_000)

    def set_tier_counts(self, processors: Mapping[int, PartitionProcessor]) -> None:
        """Customers per tier over the owned partitions."""
        totals: dict[str, int] = defaultdict(int)
        for proc in list(processors.values()):
            for tier, n in proc.tier_counts.items():
                totals[tier] += n
        for tier in TIERS:
            self.customers.labels(tier=tier).set(totals[tier])


def _set_map(gauge: Gauge, label: str, values: Mapping[str, int | float]) -> None:
    """One sample per key of `values` (channels, segments); keys no longer there lose theirs (the
    configured channels or segment definitions can change with a restart of the leader)."""
    exported = {sample.labels[label] for fam in gauge.collect() for sample in fam.samples}
    for gone in exported - values.keys():
        gauge.remove(gone)
    for name, n in values.items():
        gauge.labels(name).set(float(n))


def _set_labelled(gauge: Gauge, names: tuple[str, ...], doc: Mapping[str, object]) -> None:
    """One sample per field; a null or missing field has no sample (a ratio with no denominator,
    or a document from an older engine): absent, not 0, so no panel or rule reads a false value."""
    for name in names:
        value = doc.get(name)
        if value is None:
            try:
                gauge.remove(name)
            except KeyError:
                pass
        else:
            gauge.labels(kpi=name).set(float(value))  # type: ignore[arg-type]


METRIC_NAMES: tuple[str, ...] = (
    "engagement_events_total", "engagement_dead_letters_total", "engagement_event_lag_seconds",
    "engagement_batch_duration_seconds", "engagement_watermark_seconds", "engagement_consumer_lag_messages",
    "engagement_customers", "engagement_tier_changes_total", "engagement_alerts_total", "engagement_store_kpi",
    "engagement_store_engagement_30d", "engagement_store_customers_by_channel", "engagement_segment_members",
    "engagement_segment_changes_total", "engagement_erasures_total",
    "engagement_rebalances_total", "engagement_recovery_duration_seconds", "engagement_recovery_partitions",
    "engagement_recovering", "engagement_ready", "engagement_build_info", "engagement_clv_model_info",
)
