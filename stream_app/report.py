"""What people read: the replay summary table, the demo's live view, and `format_number`.

Shared by `cli.py` and `demo.py`, so neither imports the other.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from stream_app.engine.config import TIERS

__all__ = ["DemoState", "format_number", "print_replay_summary", "render_compact", "render_full"]


def format_number(v: Any, pct: bool = False) -> str:
    """Counts with thousands separators, money with 2 decimals, ratios as percent; n/a for null."""
    if v is None:
        return "n/a"
    if pct:
        return f"{v * 100:.1f} %"
    return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}"


def print_replay_summary(doc: dict[str, Any], out: Any) -> None:
    """`engagement replay --summary`: store KPIs, tier distribution, alerts, counts and rejections."""
    k = doc["kpis"]
    fmt = format_number

    rows = [
        ("as of", doc["as_of"] or "n/a"),
        ("window (days)", str(k["window_days"])),
        ("orders", fmt(k["orders"])),
        ("  guest / identified", f"{fmt(k['guest_orders'])} / {fmt(k['identified_orders'])}"),
        ("revenue", fmt(k["revenue"])),
        ("customers / repeat", f"{fmt(k['customers'])} / {fmt(k['repeat_customers'])}"),
        ("guest checkout rate", fmt(k["guest_checkout_rate"], pct=True)),
        ("average order value", fmt(k["average_order_value"])),
        ("purchase frequency", fmt(k["purchase_frequency"])),
        ("repeat purchase rate", fmt(k["repeat_purchase_rate"], pct=True)),
    ]
    w = max(len(r[0]) for r in rows)
    print("Store KPIs (365-day window)", file=out)
    for name, value in rows:
        print(f"  {name:<{w}}  {value:>16}", file=out)
    tiers = Counter(c["tier"] for c in doc["customers"].values())
    total = sum(tiers.values()) or 1
    print("\nTier distribution", file=out)
    for t in TIERS:
        n = tiers.get(t, 0)
        print(f"  {t:<{w}}  {n:>8,}  {n / total * 100:5.1f} %", file=out)
    alerts = Counter(a["type"] for a in doc["alerts"])
    print("\nAlerts raised", file=out)
    for name in ("churn_risk", "abandoned_cart", "negative_feedback"):
        print(f"  {name:<{w}}  {alerts.get(name, 0):>8,}", file=out)
    segments = doc["kpis"].get("segments") or {}
    if segments:  # SPEC §10: members at as_of, and the changes that led there
        changes = Counter((s["segment"], s["change"]) for s in doc.get("segment_changes", []))
        sw = max(w, *(len(name) for name in segments))
        print("\nSegments (members, entered, left)", file=out)
        for name, n in segments.items():
            print(f"  {name:<{sw}}  {n:>8,}  {changes[(name, 'entered')]:>8,}  {changes[(name, 'left')]:>8,}",
                  file=out)
    c = doc["counts"]
    print(f"\nEvents: {c['applied']:,} applied, {c['duplicates']:,} duplicates, "
          f"{c['rejected']:,} rejected, {c.get('erased', 0):,} erased", file=out)
    reasons: Counter[str] = Counter()
    first: dict[str, dict[str, Any]] = {}  # reason -> its first dead letter, as an example
    for d in doc["dead_letters"]:
        reasons[d["reason"]] += 1
        first.setdefault(d["reason"], d)
    if reasons:
        print("\nRejected lines by reason (with the first one)", file=out)
        for reason, n in reasons.most_common():
            d = first[reason]
            message = d["message"] if len(d["message"]) <= 80 else d["message"][:79] + "…"
            print(f"  {reason:<{w}}  {n:>8,}  line {d['line']}: {message}", file=out)



@dataclass
class DemoState:
    """Everything the view shows; updated by the producer counter, the consumer and the KPI poller."""

    started: float = field(default_factory=time.monotonic)
    produced: int = 0
    customers: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (tier, events_total)
    scored: int = 0
    score_records: int = 0
    tier_changes: int = 0
    alerts: int = 0
    rejected: int = 0
    #: dead letters by (reason, field): what the view names when they run above the bad-line rate
    rejections: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: the share of lines the simulator spoils on purpose (SPEC §1 dead letters it expects)
    bad_rate: float = 0.0
    erased: int = 0  # tombstones on the scores topic: customers erased (SPEC §9)
    latest_alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=5))
    latest_scores: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=6))
    kpis: dict[str, Any] | None = None
    worker_ready_after: float | None = None
    first_score_after: float | None = None
    #: the accelerated event clock: (epoch seconds at the start, event-time seconds per second)
    clock: tuple[float, float] | None = None
    # (elapsed, produced, scored) at the last refreshes: rates over a few seconds, as the worker
    # publishes in batches
    samples: deque[tuple[float, int, int]] = field(default_factory=lambda: deque([(0.0, 0, 0)], maxlen=6))
    produce_rate: float = 0.0
    score_rate: float = 0.0
    interrupted: bool = False  # Ctrl-C or SIGTERM
    #: the worker's dashboard (`GET /` on its web port), shown beside the title
    dashboard: str | None = None
    #: each customer's latest `clv` object (SPEC §11; None without a model or an order)
    clv: dict[str, Any] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def on_score(self, record: dict[str, Any]) -> None:
        cid = record.get("customer_id")
        if not isinstance(cid, str):
            return
        total = int(record.get("events_total") or 0)
        _, before = self.customers.get(cid, ("", 0))
        self.customers[cid] = (str(record.get("tier")), total)
        self.clv[cid] = record.get("clv")
        self.scored += total - before
        self.score_records += 1
        self.latest_scores.append(record)
        if self.first_score_after is None:
            self.first_score_after = self.elapsed()

    def on_tombstone(self, customer_id: str) -> None:
        """An erased customer leaves the tier counts (its events stay in `scored`); a tombstone
        for a customer never scored (an erasure of an unknown id) changes nothing."""
        self.clv.pop(customer_id, None)
        if self.customers.pop(customer_id, None) is not None:
            self.erased += 1

    def on_dead_letter(self, doc: Any) -> None:
        self.rejected += 1
        if isinstance(doc, dict):
            self.rejections[(str(doc.get("reason")), str(doc.get("field") or "-"))] += 1

    def unexpected_rejections(self) -> bool:
        """More dead letters than the simulator's bad lines explain (with room for chance)."""
        return self.rejected > 1.5 * self.bad_rate * self.produced + 10

    def event_time(self) -> str | None:
        if self.clock is None:
            return None
        wall0, speed = self.clock
        at = wall0 + self.elapsed() * speed
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))

    def sample(self) -> None:
        now = self.elapsed()
        t, p, s = self.samples[0]
        dt = now - t
        if dt > 0:
            self.produce_rate = (self.produced - p) / dt
            self.score_rate = max(0, self.scored - s) / dt
        self.samples.append((now, self.produced, self.scored))

    def clv_summary(self) -> dict[str, Any] | None:
        """The dashboard's `clv_summary` (panels.py) of the customers' latest records; None when
        none carries a `clv` (no model loaded, or no order yet)."""
        from stream_app.panels import clv_summary

        return clv_summary(self.clv.values())

    def tier_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(TIERS, 0)
        for tier, _ in self.customers.values():
            counts[tier] = counts.get(tier, 0) + 1
        return counts


# -- the demo's live view ----------------------------------------------------------------------------

def _kpi_pairs(k: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        ("orders", format_number(k.get("orders"))),
        ("revenue", format_number(k.get("revenue"))),
        ("average order value", format_number(k.get("average_order_value"))),
        ("customers", format_number(k.get("customers"))),
        ("repeat purchase rate", format_number(k.get("repeat_purchase_rate"), pct=True)),
        ("purchase frequency", format_number(k.get("purchase_frequency"))),
        ("guest checkout rate", format_number(k.get("guest_checkout_rate"), pct=True)),
    ]


MISSING = "—"  # a field the worker's KPI document does not carry (an older worker)


def _engagement_pairs(k: dict[str, Any]) -> list[tuple[str, str]]:
    """Feedback (365-day window) and messaging/channel (30-day `engagement_30d`) figures; a null
    ratio (no denominator) reads n/a like the others, a missing field —."""
    e30 = k.get("engagement_30d")
    e30 = e30 if isinstance(e30, dict) else {}

    def show(doc: dict[str, Any], name: str, pct: bool = False) -> str:
        return format_number(doc[name], pct=pct) if name in doc else MISSING

    nps = k.get("nps")
    return [
        ("NPS", f"{nps:+.1f}" if isinstance(nps, int | float) else show(k, "nps")),
        ("CSAT", show(k, "csat", pct=True)),
        ("email open rate (30 d)", show(e30, "email_open_rate", pct=True)),
        ("omnichannel customers (30 d)", show(e30, "omnichannel_customers")),
    ]


def _segment_items(k: dict[str, Any]) -> list[str] | None:
    """`name members` for each defined segment (SPEC §10: the KPI document's `segments`, in
    definition order); None from a worker without segments (an older one)."""
    segments = k.get("segments")
    if not isinstance(segments, dict):
        return None
    return [f"{name} {format_number(n)}" for name, n in segments.items()]


def _segment_panel(st: DemoState, width: int, rows: int) -> list[str]:
    """The segment sizes wrapped into `width` columns and at most `rows` lines, title included;
    what does not fit is counted (`+3 more`) rather than cut."""
    items = None if st.kpis is None else _segment_items(st.kpis)
    if items is None:
        return []
    if not items:
        return ["segments: off"]
    body: list[list[str]] = [[]]
    for item in items:
        line = body[-1]
        if line and len("  ".join([*line, item])) > width:
            body.append([item])
        else:
            line.append(item)
    room = rows - 1
    if len(body) > room:
        shown = body[:room]
        last = shown[-1]
        while True:  # the last line ends with how many segments are not shown
            more = f"+{len(items) - sum(map(len, shown))} more"
            if not last or len("  ".join([*last, more])) <= width:
                break
            last.pop()
        last.append(more)
        body = shown
    return ["segments (customers holding each)", *("  ".join(line) for line in body)]


def _status_line(st: DemoState) -> str:
    return (f"produced {st.produced:,} ({st.produce_rate:,.0f}/s) | scored {st.scored:,} "
            f"({st.score_rate:,.0f}/s) | tier changes {st.tier_changes:,} | alerts {st.alerts:,} | "
            f"rejected {st.rejected:,} | erased {st.erased:,}")


def _clock_line(st: DemoState) -> str | None:
    if st.clock is None:
        return None
    speed = st.clock[1]
    pace = f"{speed / 3600:g} h" if speed >= 3600 else f"{speed:g} s"
    return f"event time runs {pace}/s, now {st.event_time()}, stamped on each Kafka record"


def _rejection_line(st: DemoState, top: int = 3) -> str | None:
    """The top dead-letter reasons, only when there are more than the bad lines explain."""
    if not st.unexpected_rejections():
        return None
    reasons = ", ".join(f"{reason} {field_} {n:,}" for (reason, field_), n in st.rejections.most_common(top))
    return f"unexpected dead letters: {reasons}"


def _tier_section(st: DemoState) -> list[str]:
    counts = st.tier_counts()
    total = sum(counts.values()) or 1
    lines = [f"{'tier':<10} {'customers':>10} {'share':>8}"]
    for tier in TIERS:
        n = counts.get(tier, 0)
        lines.append(f"{tier:<10} {n:>10,} {n / total * 100:>6.1f} %")
    return lines


def _kpi_section(st: DemoState, width: int) -> list[str]:
    if st.kpis is None:
        return ["store KPIs: waiting for the worker ..."]
    pairs = _kpi_pairs(st.kpis) + _engagement_pairs(st.kpis)
    names, values = (max(len(p[i]) for p in pairs) for i in (0, 1))
    cells = [f"{name:<{names}} {value:>{values}}" for name, value in pairs]
    lines = [f"store KPIs (365-day window, as of {st.kpis.get('as_of') or 'n/a'})"]
    if 1 + 2 * len(cells[0]) + 2 < width:  # two columns where they fit (an 80-column terminal)
        half = (len(cells) + 1) // 2
        for left, right in itertools.zip_longest(cells[:half], cells[half:], fillvalue=""):
            lines.append(f" {left}  {right}".rstrip())
    else:
        lines += [f"  {cell}" for cell in cells]
    return lines


SPARK = "▁▂▃▄▅▆▇█"


def _spark(counts: list[int]) -> str:
    """One character per bin, its height relative to the fullest bin (▁ for none)."""
    top = max(counts, default=0) or 1
    return "".join(SPARK[0] if n == 0 else SPARK[max(1, round(n / top * (len(SPARK) - 1)))] for n in counts)


def _clv_items(summary: dict[str, Any]) -> tuple[str, str, str]:
    """(title, P(alive) distribution, predicted-CLV distribution) of a `clv_summary`."""
    n = summary["customers"]
    title = (f"lifetime value (model {summary['model_version']}, {summary['horizon_days']} d): "
             f"{n:,} customers, {summary['total_predicted_clv']:,.0f} predicted")
    p_alive = (f"P(alive) 0 {_spark(summary['p_alive']['counts'][:-1])} 1 "
               f"mean {summary['sum_p_alive'] / n:.2f}")
    clv = f"CLV 0 {_spark(summary['predicted_clv']['counts'])} 100k+ mean {summary['total_predicted_clv'] / n:,.0f}"
    return title, p_alive, clv


def _clv_section(st: DemoState) -> list[str]:
    """The P(alive) and predicted-CLV distributions (SPEC §11), as on the dashboard; nothing
    without a model."""
    summary = st.clv_summary()
    if summary is None:
        return []
    title, p_alive, clv = _clv_items(summary)
    return [title, f"  {p_alive}   {clv}"]


def _alert_section(st: DemoState) -> list[str]:
    lines = ["latest alerts"]
    if not st.latest_alerts:
        lines.append("  (none yet)")
    for a in reversed(st.latest_alerts):
        lines.append(f"  {a.get('type')!s:<18} {a.get('severity')!s:<7} "
                     f"{a.get('customer_id')!s:<14} {a.get('at')}")
    return lines


def _score_section(st: DemoState) -> list[str]:
    lines = ["latest scores"]
    if not st.latest_scores:
        lines.append("  (none yet)")
    for r in reversed(st.latest_scores):
        lines.append(f"  {r.get('customer_id')!s:<14} {float(r.get('score') or 0):>9.2f}  {r.get('tier')}")
    return lines


def render_full(st: DemoState, header: str, width: int = 80, height: int = 24) -> str:
    """The terminal view (redrawn in place), fitted to `width` × `height`.

    The counters always show; then, while they fit, in this order: the clock line, the reasons of
    unexpected dead letters, tiers (with the segment sizes beside them), store KPIs, alerts and
    scores (those two shortened before they are dropped). Lines are cut at the width, so nothing
    wraps and the screen does not scroll.
    """
    status = _status_line(st)
    if len(status) >= width:  # two lines rather than a cut: every counter stays readable
        cut = status.index(" | tier changes")
        status = status[:cut] + "\n" + status[cut + 3:]
    title = f"engagement demo  {st.elapsed():5.0f}s   (Ctrl-C to stop)"
    top = [title, header, *status.split("\n")]
    if st.dashboard:  # beside the title where it fits, else on a line of its own
        with_url = f"{title}   dashboard {st.dashboard}"
        if len(with_url) < width:
            top[0] = with_url
        else:
            top.insert(1, f"dashboard {st.dashboard}")
    if st.worker_ready_after is None:
        top.append("worker starting ...")
    optional = [line for line in (_clock_line(st), _rejection_line(st)) if line is not None]
    # the segment sizes sit beside the tier table (both count customers per group) where there is
    # room, so they cost no line; on a narrow terminal they come last, and go first
    tiers = _tier_section(st)
    left = max(map(len, tiers)) + 3
    beside = _segment_panel(st, width - 1 - left, len(tiers)) if width - 1 - left >= 24 else []
    tiers = [f"{t:<{left}}{p}".rstrip() for t, p in itertools.zip_longest(tiers, beside, fillvalue="")]
    below = [] if beside else _segment_panel(st, width - 3, 8)
    below = [*below[:1], *(f"  {line}" for line in below[1:])]  # indented like the other sections
    # (section, smallest useful length): sections are separated by one blank line
    sections: list[tuple[list[str], int]] = [(tiers, 0), (_kpi_section(st, width), 0)]
    clv = _clv_section(st)
    if clv:  # before the alerts: at 80 × 24 they give way to it
        if len(clv[1]) >= width:  # the two distributions on two lines
            p_alive, dist = clv[1].split("   ", 1)
            clv = [clv[0], p_alive, f"  {dist}"]
        sections.append((clv, 0))
    sections += [(_alert_section(st), 2), (_score_section(st), 2)]
    if below:
        sections.append((below, 0))
    lines = top[:height]
    for line in optional:
        if len(lines) < height:
            lines.append(line)
    for body, shortest in sections:
        room = height - len(lines) - 1
        if room >= len(body):
            lines += ["", *body]
        elif shortest and room >= shortest:
            lines += ["", *body[:room]]
    return "\n".join(line[:width - 1] if len(line) >= width else line for line in lines)


def render_compact(st: DemoState) -> str:
    """One block per refresh for pipes and files."""
    counts = st.tier_counts()
    total = sum(counts.values()) or 1
    tiers = " | ".join(f"{t} {counts.get(t, 0):,} ({counts.get(t, 0) / total * 100:.1f} %)" for t in TIERS)
    lines = [f"[{st.elapsed():5.1f}s] {_status_line(st)}", f"  tiers: {tiers}"]
    for name, line in (("clock", _clock_line(st)), ("rejections", _rejection_line(st))):
        if line is not None:
            lines.append(f"  {name}: {line}")
    if st.latest_alerts:
        lines.append("  alerts: " + "; ".join(
            f"{a.get('type')}/{a.get('severity')} {a.get('customer_id')} {a.get('at')}"
            for a in reversed(st.latest_alerts)))
    if st.latest_scores:
        lines.append("  scores: " + "; ".join(
            f"{r.get('customer_id')} {float(r.get('score') or 0):.2f} {r.get('tier')}"
            for r in itertools.islice(reversed(st.latest_scores), 3)))
    if st.kpis is None:
        lines.append("  kpis: waiting for the worker")
    else:
        lines.append("  kpis: " + " | ".join(f"{n} {v}" for n, v in _kpi_pairs(st.kpis)))
        lines.append("  engagement: " + " | ".join(f"{n} {v}" for n, v in _engagement_pairs(st.kpis)))
        segments = _segment_items(st.kpis)
        if segments is not None:
            lines.append("  segments: " + (" | ".join(segments) or "off"))
    summary = st.clv_summary()
    if summary is not None:
        lines.append("  clv: " + " | ".join(_clv_items(summary)))
    return "\n".join(lines)
