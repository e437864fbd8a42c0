"""`engagement` command line: replay (and, as they land, worker, demo, produce, simulate, audit)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

from stream_app.config import SettingsError
from stream_app.report import print_replay_summary


def cmd_replay(args: argparse.Namespace) -> int:
    from stream_app.config import Settings
    from stream_app.replay import ReplayError, replay_file

    try:
        # the engine's numbers come from ENGAGEMENT_* like the worker's, so the two agree
        config = Settings.from_env().engine_config()
    except ValueError as exc:  # an invalid ENGAGEMENT_* value (the message names it)
        print(f"engagement replay: error: {exc}", file=sys.stderr)
        return 2
    try:
        doc = replay_file(args.events, as_of=args.as_of, config=config)
    except ReplayError as exc:
        print(f"engagement replay: error: {exc}", file=sys.stderr)
        return 2
    if args.summary:
        print_replay_summary(doc, sys.stdout)
        return 0
    data = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE)
    if args.out:
        with open(args.out, "wb") as f:
            f.write(data)
    else:
        sys.stdout.buffer.write(data)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from stream_app.config import Settings
    from stream_app.stream.run import run_worker

    return run_worker(Settings.from_env())


def _broker_settings(command: str) -> Any:
    """Settings from the environment, or None (after saying why) when no broker is configured."""
    from stream_app.config import Settings

    settings = Settings.from_env()
    if not settings.broker:
        print(f"engagement {command}: set ENGAGEMENT_BROKER (kafka://host:port)", file=sys.stderr)
        return None
    return settings


def cmd_produce(args: argparse.Namespace) -> int:
    import asyncio

    from stream_app.produce import file_lines, produce_lines
    from stream_app.replay import ReplayError

    settings = _broker_settings("produce")
    if settings is None:
        return 2
    try:
        lines = file_lines(args.file)
    except ReplayError as exc:
        print(f"engagement produce: error: {exc}", file=sys.stderr)
        return 2
    sent = asyncio.run(produce_lines(settings, lines, rate=args.rate, progress=True, total=len(lines)))
    print(f"produced {sent:,} events", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import asyncio
    import itertools
    import time

    from stream_app.produce import produce_lines
    from stream_app.simulate import Simulator, live_lines

    settings = _broker_settings("simulate")
    if settings is None:
        return 2
    sim = Simulator(customers=args.customers, seed=args.seed, bad_rate=args.bad_rate)
    lines = live_lines(sim, speed=args.speed)
    if args.duration:
        lines = itertools.islice(lines, int(args.rate * args.duration))
    t0 = time.monotonic()
    sent = asyncio.run(produce_lines(settings, lines, rate=args.rate, progress=True))
    print(f"simulated {sent:,} events in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    import asyncio

    from aiokafka.errors import KafkaError

    from stream_app.erase import erasure_event, send_erasures

    try:  # every id checked before anything is sent: all or nothing on bad input
        events = [erasure_event(cid) for cid in dict.fromkeys(args.customer_ids)]
    except ValueError as exc:
        print(f"engagement erase: error: {exc}", file=sys.stderr)
        return 2
    settings = _broker_settings("erase")
    if settings is None:
        return 2
    try:
        sent = asyncio.run(send_erasures(settings, events))
    except KafkaError as exc:
        print(f"engagement erase: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    # what was sent, on stdout only (the operator's own input; never in the logs)
    for ev in sent:
        sys.stdout.buffer.write(orjson.dumps(ev, option=orjson.OPT_APPEND_NEWLINE))
    print(f"sent {len(sent)} erasure request(s) to {settings.topic_privacy}", file=sys.stderr)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from stream_app.audit import audit_main

    settings = _broker_settings("audit")
    if settings is None:
        return 2
    return audit_main(settings)


def cmd_demo(args: argparse.Namespace) -> int:
    from stream_app.demo import run_demo

    return run_demo(duration=args.duration, customers=args.customers, rate=args.rate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engagement", description="Real-time customer-engagement scorer")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("replay", help="replay a JSONL(.gz) event file through the engine (SPEC §8)")
    r.add_argument("events", help="events file (.jsonl, .jsonl.gz) or - for stdin")
    r.add_argument("--as-of", dest="as_of", help="RFC 3339 instant to read scores at (default: final watermark)")
    r.add_argument("--out", help="write the JSON document here instead of stdout")
    r.add_argument("--summary", action="store_true", help="print KPIs and tiers as a table instead of JSON")
    r.set_defaults(func=cmd_replay)
    w = sub.add_parser("worker", help="run a scoring worker (ENGAGEMENT_* settings; bundled broker if none)")
    w.set_defaults(func=cmd_worker)
    pr = sub.add_parser("produce", help="produce a JSONL(.gz) file to the input topics")
    pr.add_argument("file")
    pr.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    pr.set_defaults(func=cmd_produce)
    si = sub.add_parser("simulate", help="produce realistic live traffic")
    si.add_argument("--customers", type=int, default=1000)
    si.add_argument("--rate", type=float, default=200.0)
    si.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    si.add_argument("--seed", type=int, default=7)
    si.add_argument("--bad-rate", dest="bad_rate", type=float, default=0.01)
    si.add_argument("--speed", type=float, default=1.0, help="event time runs this many times faster than real time")
    si.set_defaults(func=cmd_simulate)
    er = sub.add_parser("erase", help="request the erasure of customers (SPEC §9; docs/PRIVACY.md)",
                        description="Send one customer_erased event per customer id to the privacy "
                                    "topic; prints each event sent as a JSON line.")
    er.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID")
    er.set_defaults(func=cmd_erase)
    au = sub.add_parser("audit", help="replay the re-keyed topic and compare with the published outputs")
    au.set_defaults(func=cmd_audit)
    de = sub.add_parser("demo", help="bundled broker + worker + simulator with a live view")
    de.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    de.add_argument("--customers", type=int, default=500)
    de.add_argument("--rate", type=float, default=300.0)
    de.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"engagement {args.command}: interrupted", file=sys.stderr)
        return 130
    except SettingsError as exc:  # a bad ENGAGEMENT_* value: say which, no traceback
        print(f"engagement {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader (`| head`) left: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
