"""What the dashboard and `engagement report` show, computed from customer records and the change
records (tier changes, alerts, segment changes): one JSON shape for both, so the worker's live page
and the report are drawn by the same script (`stream_app/web_assets/dashboard.js`,
docs/DASHBOARD.md).

No I/O and no clock. Every figure here adds up across workers (counts per tier, per day, per
histogram bin, sums), so the overviews of several workers merge by addition (`merge_overviews`).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from stream_app.engine.config import TIERS

__all__ = ["ALERT_TYPES", "CLV_EDGES", "LATEST_ALERTS", "MOVEMENT_DAYS", "P_ALIVE_EDGES", "LiveActivity",
           "Trends", "clv_summary", "merge_overviews", "movements", "replay_overview", "tier_distribution"]

ALERT_TYPES = ("churn_risk", "abandoned_cart", "negative_feedback")
TIER_MOVES = ("new", "promoted", "demoted")
#: the latest alerts shown, newest first
LATEST_ALERTS = 20
#: "recent movements": segment entries and exits, promotions and demotions over the UTC days
#: `day(as_of) - 6` .. `day(as_of)`
MOVEMENT_DAYS = 7
#: P(alive) histogram: ten bins of 0.1, the last one closed ([0.9, 1.0])
P_ALIVE_EDGES = tuple(round(i / 10, 1) for i in range(11))
#: predicted-CLV histogram, in the reporting currency: 0, 1-2-5 steps to 100,000, then open-ended.
#: Fixed, so that the histograms of several workers add up.
CLV_EDGES = (0.0, *(float(m * 10 ** e) for e in range(5) for m in (1, 2, 5)), 100_000.0)


def day_of(at: str) -> str:
    """The UTC day of an RFC 3339 instant as the contract writes them (`...Z`)."""
    return at[:10]


def _tier_move(change: Mapping[str, Any]) -> str:
    before = change.get("from_tier")
    if before is None or before not in TIERS:
        return "new"
    return "promoted" if TIERS.index(change["to_tier"]) > TIERS.index(before) else "demoted"


class Trends:
    """Counts per UTC day of each change's `at`: tier changes (new, promoted, demoted), alerts by
    type, and segment entries and exits by segment. With `keep_days`, days more than that before
    the latest one are dropped (the worker's memory stays bounded)."""

    def __init__(self, keep_days: int | None = None) -> None:
        self.keep_days = keep_days
        self.tiers: dict[str, Counter[str]] = {}
        self.alerts: dict[str, Counter[str]] = {}
        #: day -> (segment, "entered" | "left") -> n
        self.segments: dict[str, Counter[tuple[str, str]]] = {}

    @staticmethod
    def _bucket(table: dict[str, Counter[Any]], at: str) -> Counter[Any]:
        d = day_of(at)
        bucket = table.get(d)
        if bucket is None:
            bucket = table[d] = Counter()
        return bucket

    def add_tier_changes(self, changes: Iterable[Mapping[str, Any]]) -> None:
        for c in changes:
            self._bucket(self.tiers, c["at"])[_tier_move(c)] += 1
        self._prune()

    def add_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        for a in alerts:
            self._bucket(self.alerts, a["at"])[a["type"]] += 1
        self._prune()

    def add_segment_changes(self, changes: Iterable[Mapping[str, Any]]) -> None:
        for c in changes:
            self._bucket(self.segments, c["at"])[(c["segment"], c["change"])] += 1
        self._prune()

    def last_day(self) -> str | None:
        days = [max(t) for t in (self.tiers, self.alerts, self.segments) if t]
        return max(days) if days else None

    def _prune(self) -> None:
        if self.keep_days is None:
            return
        last = self.last_day()
        if last is None:
            return
        first = (dt.date.fromisoformat(last) - dt.timedelta(days=self.keep_days - 1)).isoformat()
        for table in (self.tiers, self.alerts, self.segments):
            for d in [d for d in table if d < first]:
                del table[d]

    def to_json(self, segment_names: Sequence[str] = ()) -> dict[str, Any]:
        """`{"days": [every day from the first to the last], "tier_changes": {move: [n per day]},
        "alerts": {type: [...]}, "segments": {name: {"entered": [...], "left": [...]}}}`; the
        segments are `segment_names` in that order, then any other seen, sorted."""
        first_days = [min(t) for t in (self.tiers, self.alerts, self.segments) if t]
        last = self.last_day()
        days: list[str] = []
        if first_days and last is not None:
            d, end = dt.date.fromisoformat(min(first_days)), dt.date.fromisoformat(last)
            while d <= end:
                days.append(d.isoformat())
                d += dt.timedelta(days=1)
        seen = {name for bucket in self.segments.values() for name, _ in bucket}
        names = [*segment_names, *sorted(seen - set(segment_names))]
        empty: Counter[Any] = Counter()
        return {
            "days": days,
            "tier_changes": {m: [self.tiers.get(d, empty)[m] for d in days] for m in TIER_MOVES},
            "alerts": {t: [self.alerts.get(d, empty)[t] for d in days] for t in ALERT_TYPES},
            "segments": {n: {ch: [self.segments.get(d, empty)[(n, ch)] for d in days] for ch in ("entered", "left")}
                         for n in names},
        }


def movements(trends: Mapping[str, Any], as_of: str | None, days: int = MOVEMENT_DAYS) -> dict[str, Any]:
    """Entries and exits per segment, and tier moves, over the `days` UTC days up to `as_of`'s
    (inclusive), from a `Trends.to_json()` document."""
    all_days: list[str] = trends["days"]
    if as_of is None:
        as_of = all_days[-1] if all_days else None
    if as_of is None:
        return {"from": None, "to": None, "days": days, "segments": {}, "tier_changes": dict.fromkeys(TIER_MOVES, 0),
                "alerts": dict.fromkeys(ALERT_TYPES, 0)}
    to = day_of(as_of)
    start = (dt.date.fromisoformat(to) - dt.timedelta(days=days - 1)).isoformat()
    idx = [i for i, d in enumerate(all_days) if start <= d <= to]

    def total(series: Sequence[int]) -> int:
        return sum(series[i] for i in idx)

    return {
        "from": start, "to": to, "days": days,
        "segments": {name: {"entered": total(s["entered"]), "left": total(s["left"])}
                     for name, s in trends["segments"].items()},
        "tier_changes": {m: total(s) for m, s in trends["tier_changes"].items()},
        "alerts": {t: total(s) for t, s in trends["alerts"].items()},
    }


def tier_distribution(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    counts = Counter(r["tier"] for r in records)
    return {t: counts.get(t, 0) for t in TIERS}


def _histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts per bin `[edges[i], edges[i+1])`, the last bin closed; a value past the last edge
    counts in one more, open-ended bin (so there are `len(edges)` counts), one below the first
    in the first."""
    counts = [0] * len(edges)
    top = len(edges) - 1
    for v in values:
        if v >= edges[-1]:
            counts[top if v > edges[-1] else top - 1] += 1
            continue
        lo, hi = 0, top
        while hi - lo > 1:  # the bin whose lower edge is the largest one <= v
            mid = (lo + hi) // 2
            if edges[mid] <= v:
                lo = mid
            else:
                hi = mid
        counts[lo] += 1
    return counts


def clv_summary(clvs: Iterable[Any], sampled_from: int | None = None) -> dict[str, Any] | None:
    """The §11 `clv` objects of some records, summed up: None when none carries one (no model
    loaded, or no customer with an order). `p_alive` counts per `P_ALIVE_EDGES` bin (11 counts:
    the 11th, past 1.0, stays 0), `predicted_clv` per `CLV_EDGES` bin (the last open-ended)."""
    rows = [c for c in clvs if isinstance(c, Mapping)]
    if not rows:
        return None
    p_alive = [float(c["p_alive"]) for c in rows if _finite(c.get("p_alive"))]
    clv = [float(c["predicted_clv"]) for c in rows if _finite(c.get("predicted_clv"))]
    versions = Counter(str(c.get("model_version")) for c in rows)
    horizons = Counter(c.get("horizon_days") for c in rows)
    return {
        "customers": len(rows),
        "sampled_from": sampled_from if sampled_from is not None else len(rows),
        "model_version": versions.most_common(1)[0][0],
        "horizon_days": horizons.most_common(1)[0][0],
        "sum_p_alive": sum(p_alive),
        "total_predicted_clv": sum(clv),
        "sum_expected_orders": sum(float(c["expected_orders"]) for c in rows if _finite(c.get("expected_orders"))),
        "p_alive": {"edges": list(P_ALIVE_EDGES), "counts": _histogram(p_alive, P_ALIVE_EDGES)},
        "predicted_clv": {"edges": list(CLV_EDGES), "counts": _histogram(clv, CLV_EDGES)},
    }


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class LiveActivity:
    """What a worker saw go out since it started: the latest alerts, and the day counts of its
    tier changes, alerts and segment changes over the last `keep_days` event days. Fed after each
    committed batch (`commit.BatchCommitter`)."""

    def __init__(self, keep_days: int = 60, latest: int = LATEST_ALERTS) -> None:
        self.trends = Trends(keep_days)
        self.latest_alerts: deque[Mapping[str, Any]] = deque(maxlen=latest)

    def record(self, tier_changes: Sequence[Mapping[str, Any]], alerts: Sequence[Mapping[str, Any]],
               segment_changes: Sequence[Mapping[str, Any]]) -> None:
        if tier_changes:
            self.trends.add_tier_changes(tier_changes)
        if alerts:
            self.trends.add_alerts(alerts)
            self.latest_alerts.extend(alerts)
        if segment_changes:
            self.trends.add_segment_changes(segment_changes)

    def newest_alerts(self) -> list[Mapping[str, Any]]:
        return sorted(self.latest_alerts, key=lambda a: a["at"], reverse=True)


def overview(*, as_of: str | None, tiers: Mapping[str, int], latest_alerts: Sequence[Mapping[str, Any]],
             trends: Mapping[str, Any], clv: Mapping[str, Any] | None, scope: Mapping[str, Any]) -> dict[str, Any]:
    """The `GET /overview` document (and the report's): everything the dashboard shows that the
    KPI document does not."""
    return {
        "as_of": as_of,
        "scope": dict(scope),
        "customers": sum(tiers.values()),
        "tiers": dict(tiers),
        "latest_alerts": list(latest_alerts)[:LATEST_ALERTS],
        "movements": movements(trends, as_of),
        "trends": dict(trends),
        "clv": None if clv is None else dict(clv),
    }


def merge_overviews(docs: Sequence[Mapping[str, Any]], as_of: str | None) -> dict[str, Any]:
    """Several workers' overviews (each over its own partitions) as one: counts add up, the latest
    alerts are the newest of all, the day series are aligned on the union of their days."""
    tiers = {t: sum(d["tiers"].get(t, 0) for d in docs) for t in TIERS}
    alerts = sorted((a for d in docs for a in d["latest_alerts"]), key=lambda a: a["at"], reverse=True)
    trends = _merge_trends([d["trends"] for d in docs])
    clvs = [d["clv"] for d in docs if d.get("clv")]
    clv = None
    if clvs:
        clv = {
            **clvs[0],
            **{k: sum(c[k] for c in clvs) for k in ("customers", "sampled_from", "sum_p_alive", "total_predicted_clv",
                                                    "sum_expected_orders")},
            "p_alive": {"edges": clvs[0]["p_alive"]["edges"],
                        "counts": [sum(x) for x in zip(*(c["p_alive"]["counts"] for c in clvs), strict=True)]},
            "predicted_clv": {"edges": clvs[0]["predicted_clv"]["edges"],
                              "counts": [sum(x) for x in zip(*(c["predicted_clv"]["counts"] for c in clvs),
                                                             strict=True)]},
        }
    partitions = sorted({p for d in docs for p in d["scope"].get("partitions", [])})
    count = max((d["scope"].get("partition_count", 0) for d in docs), default=0)
    return overview(as_of=as_of, tiers=tiers, latest_alerts=alerts, trends=trends, clv=clv,
                    scope={"partitions": partitions, "partition_count": count, "workers": len(docs)})


def _merge_trends(all_trends: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    days = sorted({d for t in all_trends for d in t["days"]})
    if days:  # contiguous, as `Trends.to_json` writes them
        d, end, days = dt.date.fromisoformat(days[0]), dt.date.fromisoformat(days[-1]), []
        while d <= end:
            days.append(d.isoformat())
            d += dt.timedelta(days=1)
    pos = {d: i for i, d in enumerate(days)}

    def add(into: list[int], src_days: Sequence[str], series: Sequence[int]) -> None:
        for d, n in zip(src_days, series, strict=True):
            into[pos[d]] += n

    out: dict[str, Any] = {"days": days, "tier_changes": {m: [0] * len(days) for m in TIER_MOVES},
                           "alerts": {t: [0] * len(days) for t in ALERT_TYPES}, "segments": {}}
    for t in all_trends:
        for m, series in t["tier_changes"].items():
            add(out["tier_changes"].setdefault(m, [0] * len(days)), t["days"], series)
        for a, series in t["alerts"].items():
            add(out["alerts"].setdefault(a, [0] * len(days)), t["days"], series)
        for name, s in t["segments"].items():
            into = out["segments"].setdefault(name, {"entered": [0] * len(days), "left": [0] * len(days)})
            for ch in ("entered", "left"):
                add(into[ch], t["days"], s[ch])
    return out


def replay_overview(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The overview of a replay document (SPEC §8): every customer, every change."""
    trends = Trends()
    trends.add_tier_changes(doc.get("tier_changes", []))
    trends.add_alerts(doc.get("alerts", []))
    trends.add_segment_changes(doc.get("segment_changes", []))
    customers = doc.get("customers", {})
    names = list((doc.get("kpis") or {}).get("segments") or {})
    latest = sorted(doc.get("alerts", []), key=lambda a: a["at"], reverse=True)[:LATEST_ALERTS]
    return overview(as_of=doc.get("as_of"), tiers=tier_distribution(customers.values()), latest_alerts=latest,
                    trends=trends.to_json(names), clv=clv_summary(r.get("clv") for r in customers.values()),
                    scope={"source": "replay"})
