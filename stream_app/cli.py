"""`engagement` command line: replay (and, as they land, worker, demo, produce, simulate, audit)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from typing import Any

import orjson

from stream_app.engine.config import TIERS


def _print_summary(doc: dict[str, Any], out: Any) -> None:
    k = doc["kpis"]

    def fmt(v: Any, pct: bool = False) -> str:
        if v is None:
            return "n/a"
        if pct:
            return f"{v * 100:.1f} %"
        return f"{v:,.2f}" if isinstance(v, float) else f"{v:,}"

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
    c = doc["counts"]
    print(f"\nEvents: {c['applied']:,} applied, {c['duplicates']:,} duplicates, "
          f"{c['rejected']:,} rejected", file=out)


def cmd_replay(args: argparse.Namespace) -> int:
    from stream_app.replay import ReplayError, replay_file

    try:
        doc = replay_file(args.events, as_of=args.as_of)
    except ReplayError as exc:
        print(f"engagement replay: error: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        _print_summary(doc, sys.stdout)
        return 0
    data = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
    if args.out:
        with open(args.out, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engagement", description="Real-time customer-engagement scorer")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="replay a JSONL(.gz) event file through the engine (SPEC §8)")
    r.add_argument("events", help="events file (.jsonl, .jsonl.gz) or - for stdin")
    r.add_argument("--as-of", dest="as_of", help="RFC 3339 instant to read scores at (default: final watermark)")
    r.add_argument("--out", help="write the JSON document here instead of stdout")
    r.add_argument("--summary", action="store_true", help="print KPIs and tiers as a table instead of JSON")
    r.set_defaults(func=cmd_replay)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
