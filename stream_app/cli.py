"""`engagement` command line: replay (and, as they land, worker, demo, produce, simulate, audit)."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from stream_app.config import (
    ALL_SETTINGS,
    ENGINE_SETTINGS,
    INPUT_TOPIC_SETTINGS,
    KAFKA_SETTINGS,
    OUTPUT_TOPIC_SETTINGS,
    SettingsError,
    env_table,
    unknown_variable_warnings,
)
from stream_app.report import print_replay_summary

#: `engagement replay`'s exit status when no event was applied and some line was rejected (the
#: wrong file, most likely): the document is still written (README: Offline replay)
EXIT_NOTHING_APPLIED = 3


def out_problem(path: str) -> str | None:
    """Why `--out PATH` cannot be written, or None: checked before the replay runs."""
    if os.path.isdir(path):
        return f"--out {path}: is a directory"
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        return f"--out {path}: {folder} {'is not a folder' if os.path.exists(folder) else 'does not exist'}"
    if not os.access(folder, os.W_OK | os.X_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        return f"--out {path}: permission denied"
    return None


def cmd_replay(args: argparse.Namespace) -> int:
    from stream_app.config import Settings
    from stream_app.replay import ReplayError, replay_file

    try:
        # the engine's numbers come from ENGAGEMENT_* like the worker's, so the two agree
        engine = Settings.from_env().engine_config()
    except ValueError as exc:  # an invalid ENGAGEMENT_* value (the message names it)
        print(f"engagement replay: error: {exc}", file=sys.stderr)
        return 2
    problem = out_problem(args.out) if args.out else None
    if problem:
        print(f"engagement replay: error: {problem}", file=sys.stderr)
        return 2
    try:
        doc = replay_file(args.events, as_of=args.as_of, config=engine)
    except ReplayError as exc:
        print(f"engagement replay: error: {exc}", file=sys.stderr)
        return 2
    if args.out:  # the document to the file, and with --summary the table to stdout
        try:
            with open(args.out, "wb") as f:
                f.write(orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE))
        except OSError as exc:
            print(f"engagement replay: error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    if args.summary:
        print_replay_summary(doc, sys.stdout)
    elif not args.out:
        sys.stdout.buffer.write(orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE))
    counts = doc["counts"]
    if counts["applied"] == 0 and counts["rejected"] > 0:
        sys.stdout.flush()
        reasons = Counter(d["reason"] for d in doc["dead_letters"])
        why = ", ".join(f"{n:,} {reason}" for reason, n in reasons.most_common())
        print(f"engagement replay: error: {args.events}: no event applied, {counts['rejected']:,} line(s) "
              f"rejected ({why}); is it a JSON-lines events file?", file=sys.stderr)
        return EXIT_NOTHING_APPLIED
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`engagement report`: a replay document, or an events file replayed first, as one HTML file."""
    from stream_app.config import Settings
    from stream_app.html_report import NotADocument, load_document, looks_like_events, render_report
    from stream_app.replay import ReplayError, replay_file

    def fail(message: str) -> int:
        print(f"engagement report: error: {message}", file=sys.stderr)
        return 2

    problem = out_problem(args.out)
    if problem:
        return fail(problem)
    doc = None
    if not looks_like_events(args.input):
        try:
            doc = load_document(args.input)
        except NotADocument as exc:
            return fail(str(exc))
        except OSError as exc:
            return fail(f"{args.input}: {exc.strerror or exc}")
        if doc is not None and args.as_of:
            return fail("--as-of applies to an events file; a replay document is read as it is")
    if doc is None:  # an events file: the replay's own code, with the worker's settings
        try:
            engine = Settings.from_env().engine_config()
            doc = replay_file(args.input, as_of=args.as_of, config=engine)
        except (ReplayError, ValueError) as exc:
            return fail(str(exc))
        counts = doc["counts"]
        if counts["applied"] == 0 and counts["rejected"] > 0:
            return fail(f"{args.input}: no event applied, {counts['rejected']:,} line(s) rejected; "
                        "is it a JSON-lines events file or a replay document?")
    page = render_report(doc, source=args.input, max_customers=args.max_customers).encode()
    try:
        with open(args.out, "wb") as f:
            f.write(page)
    except OSError as exc:
        return fail(f"--out {args.out}: {exc.strerror or exc}")
    print(f"wrote {args.out} ({len(page) / 1e6:.1f} MB, {len(doc['customers']):,} customers, as of "
          f"{doc['as_of'] or 'n/a'}): one self-contained page, open it in a browser", file=sys.stderr)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    import time

    from stream_app.config import Settings
    from stream_app.fit import FitError, fit, fit_document, print_report, summaries_from_file
    from stream_app.replay import ReplayError

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    try:
        engine = Settings.from_env().engine_config()
    except ValueError as exc:
        print(f"engagement fit: error: {exc}", file=sys.stderr)
        return 2
    if args.version is not None and not 1 <= len(args.version) <= 64:
        print(f"engagement fit: error: --version must be 1-64 characters, got {len(args.version)}", file=sys.stderr)
        return 2
    problem = out_problem(args.out) if args.out else None
    if problem:
        print(f"engagement fit: error: {problem}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    progress(f"replaying {args.events}")
    try:
        rows, as_of = summaries_from_file(args.events, as_of=args.as_of, config=engine)
        if as_of is None:
            raise FitError(f"{args.events}: no event applied")
        progress(f"{len(rows):,} customers with an order at {as_of_text(as_of)} "
                 f"({time.monotonic() - t0:.1f}s)")
        result = fit(list(rows.values()), version=args.version, progress=progress)
    except (ReplayError, FitError) as exc:
        print(f"engagement fit: error: {exc}", file=sys.stderr)
        return 2
    from stream_app.engine.clv import model_document

    source = "-" if args.events == "-" else os.path.basename(args.events)
    doc = model_document(result.model, fit_document(result, source, as_of))
    data = orjson.dumps(doc, option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_INDENT_2)
    if args.out:
        try:
            with open(args.out, "wb") as f:
                f.write(data)
        except OSError as exc:
            print(f"engagement fit: error: --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print_report(result, sys.stdout)
        print(f"wrote {args.out}", file=sys.stderr)
    else:  # the model on stdout, the report beside the progress
        print_report(result, sys.stderr)
        sys.stdout.buffer.write(data)
    return 0


def as_of_text(us: int) -> str:
    from stream_app.engine.clock import format_instant

    return format_instant(us)


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
    # event time may run `--speed` times faster than the wall clock: each record carries it as
    # its Kafka timestamp, or the scorer would reject it as future-dated (SPEC §1)
    sent = asyncio.run(produce_lines(settings, lines, rate=args.rate, progress=True, event_timestamps=True))
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


def cmd_tail(args: argparse.Namespace) -> int:
    from stream_app.tail import tail_main

    settings = _broker_settings("tail")
    if settings is None:
        return 2
    return tail_main(settings, args.topic, from_beginning=args.from_beginning, follow=not args.no_follow,
                     key=args.key, limit=args.n)


def cmd_demo(args: argparse.Namespace) -> int:
    from stream_app.demo import run_demo

    return run_demo(duration=args.duration, customers=args.customers, rate=args.rate)


# -- --help: options with their defaults, and the settings each command reads ----------------------


class HelpFormatter(argparse.HelpFormatter):
    """Appends `(default: X)` to an option's help, unless its default is None or False (the help
    then says what happens), and keeps the layout of a text of several lines (the settings epilog)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and "%(default)" not in text and default is not None
                and default is not False and default is not argparse.SUPPRESS):
            text += " (default: %(default)s)"
        return text


#: the settings (Settings field names) each command reads; the worker reads them all
COMMAND_SETTINGS: dict[str, tuple[str, ...]] = {
    "replay": ENGINE_SETTINGS,
    "report": ENGINE_SETTINGS,
    "fit": ENGINE_SETTINGS,
    "worker": ALL_SETTINGS,
    "produce": (*KAFKA_SETTINGS, *INPUT_TOPIC_SETTINGS),
    "simulate": (*KAFKA_SETTINGS, *INPUT_TOPIC_SETTINGS),
    "erase": (*KAFKA_SETTINGS, "topic_privacy"),
    "audit": (*KAFKA_SETTINGS, "fetch_max_wait_ms", *INPUT_TOPIC_SETTINGS, *OUTPUT_TOPIC_SETTINGS,
              *ENGINE_SETTINGS),
    "tail": (*KAFKA_SETTINGS, "fetch_max_wait_ms", *INPUT_TOPIC_SETTINGS, *OUTPUT_TOPIC_SETTINGS,
             "topic_dead_letter"),
    "demo": (),
}


def settings_epilog(command: str) -> str:
    """The ENGAGEMENT_* variables `command` reads with their defaults, from `Settings` itself."""
    names = COMMAND_SETTINGS[command]
    if not names:
        return ("settings: ENGAGEMENT_CLV_MODEL_FILE only (default: the shipped Online Retail model,\n"
                "data/clv-model-online-retail.json; empty: none); otherwise it runs its own broker\n"
                "and worker with default settings")
    defaults = {name: default for name, default, _ in env_table()}
    env = [f"ENGAGEMENT_{name.upper()}" for name in names]
    width = max(map(len, env))
    rows = [f"  {var:<{width}}  {defaults[var] or '(empty)'}" for var in env]
    return "settings (environment variables, with their defaults):\n" + "\n".join(rows)


def _number(kind: Callable[[str], Any], ok: Callable[[Any], bool], want: str) -> Callable[[str], Any]:
    """An argparse `type`: `kind(text)` when `ok` holds, else an error saying `want`."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"{want}, got {text!r}")
        return value
    return parse


positive_float = _number(float, lambda v: v > 0 and math.isfinite(v), "expected a number greater than 0")
positive_int = _number(int, lambda v: v > 0, "expected a whole number greater than 0")
fraction = _number(float, lambda v: 0 <= v <= 1, "expected a number from 0 to 1")


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("engagement-scorer")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="engagement", description="Real-time customer-engagement scorer",
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, summary: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=kwargs.pop("description", summary),
                              epilog=settings_epilog(name), formatter_class=HelpFormatter, **kwargs)

    r = command("replay", "replay a JSONL(.gz) event file through the engine (SPEC §8)",
                description="Replay a JSONL(.gz) event file through the engine (SPEC §8) and write the "
                            "JSON document. Exit status: 0 done; 2 bad usage, an unreadable file or a "
                            "bad --as-of; 3 no event applied and some line rejected (the wrong file?).")
    r.add_argument("events", help="events file (.jsonl, .jsonl.gz) or - for stdin")
    r.add_argument("--as-of", dest="as_of", help="RFC 3339 instant to read scores at (default: final watermark)")
    r.add_argument("--out", help="write the JSON document to this file (checked before the replay) "
                                 "instead of stdout")
    r.add_argument("--summary", action="store_true",
                   help="print KPIs, tiers and rejections by reason as a table on stdout instead of the JSON "
                        "(with --out, the document still goes to the file)")
    r.set_defaults(func=cmd_replay)
    rp = command("report", "a replay document or an events file as one self-contained HTML page",
                 description="Write one self-contained HTML page (KPIs, tiers, segments, alerts, CLV when the "
                             "records carry it, trends per day, a customer search) from a replay document "
                             "(engagement replay --out) or from an events file, replayed first as "
                             "engagement replay does (then the settings below apply). It opens offline. Exit "
                             "status: 0 written; 2 bad usage, an unreadable or unrecognised input, an --out "
                             "that cannot be written.")
    rp.add_argument("input", metavar="DOC.json|EVENTS.jsonl",
                    help="a replay document (.json, .json.gz) or an events file (.jsonl, .jsonl.gz, - for stdin)")
    rp.add_argument("--out", default="report.html", help="the HTML file to write (checked first)")
    rp.add_argument("--as-of", dest="as_of",
                    help="an events file only: RFC 3339 instant to read it at (default: its final watermark)")
    rp.add_argument("--max-customers", dest="max_customers", type=positive_int, default=50_000,
                    help="customers searchable in the page (the highest scores first)")
    rp.set_defaults(func=cmd_report)
    fi = command("fit", "fit the lifetime-value model to a JSONL(.gz) event file (SPEC §11; docs/CLV.md)",
                 description="Replay a JSONL(.gz) event file (SPEC §8), summarise every customer with an "
                             "order at --as-of, and fit BG/NBD and Gamma-Gamma by maximum likelihood "
                             "(SPEC §11). Writes the model file (to --out, or stdout) and prints the "
                             "parameters and both log-likelihoods; progress on stderr. Exit status: 0 "
                             "done; 2 bad usage, an unreadable file, a bad --as-of, or fewer than 50 "
                             "customers with a repeat purchase day.")
    fi.add_argument("events", help="events file (.jsonl, .jsonl.gz) or - for stdin")
    fi.add_argument("--as-of", dest="as_of",
                    help="RFC 3339 instant the summaries are read at (default: final watermark)")
    fi.add_argument("--out", metavar="MODEL.json",
                    help="write the model file here (checked before the replay) instead of stdout")
    fi.add_argument("--version", dest="version", metavar="V",
                    help="the model's version, 1-64 characters (default: 12 hex digits of a hash of "
                         "the parameters)")
    fi.set_defaults(func=cmd_fit)
    w = command("worker", "run a scoring worker (ENGAGEMENT_* settings; bundled broker if none)")
    w.set_defaults(func=cmd_worker)
    pr = command("produce", "produce a JSONL(.gz) file to the input topics")
    pr.add_argument("file", help="events file (.jsonl, .jsonl.gz) or - for stdin")
    pr.add_argument("--rate", type=positive_float, default=None,
                    help="events per second (default: as fast as possible)")
    pr.set_defaults(func=cmd_produce)
    si = command("simulate", "produce realistic live traffic")
    si.add_argument("--customers", type=positive_int, default=1000, help="customers in the simulated population")
    si.add_argument("--rate", type=positive_float, default=200.0, help="events per second")
    si.add_argument("--duration", type=positive_float, default=None, help="seconds (default: until Ctrl-C)")
    si.add_argument("--seed", type=int, default=7, help="random seed (the same seed, the same traffic)")
    si.add_argument("--bad-rate", dest="bad_rate", type=fraction, default=0.01,
                    help="share of deliberately invalid events, from 0 to 1")
    si.add_argument("--speed", type=positive_float, default=1.0,
                    help="event time runs this many times faster than real time")
    si.set_defaults(func=cmd_simulate)
    er = command("erase", "request the erasure of customers (SPEC §9; docs/PRIVACY.md)",
                 description="Send one customer_erased event per customer id to the privacy "
                             "topic; prints each event sent as a JSON line.")
    er.add_argument("customer_ids", nargs="+", metavar="CUSTOMER_ID", help="a customer id to erase")
    er.set_defaults(func=cmd_erase)
    au = command("audit", "replay the re-keyed topic and compare with the published outputs")
    au.set_defaults(func=cmd_audit)
    ta = command("tail", "print a topic's records as JSON lines",
                 description="Print a topic's records as JSON lines {topic, partition, offset, timestamp, "
                             "key, value}: the value parsed when it is JSON, null for a tombstone. Follows "
                             "new records until Ctrl-C. Exit status 2: no ENGAGEMENT_BROKER, or no such topic.")
    ta.add_argument("topic", metavar="TOPIC",
                    help="a topic name, or orders, clicks, social, privacy, events, scores, tier-changes, "
                         "alerts, kpis, segment-changes, dead-letter (the configured ENGAGEMENT_TOPIC_*)")
    ta.add_argument("--from-beginning", dest="from_beginning", action="store_true",
                    help="start at each partition's first record (default: at the end, new records only)")
    ta.add_argument("--no-follow", dest="no_follow", action="store_true",
                    help="stop at the end of the topic instead of waiting for new records")
    ta.add_argument("--key", metavar="ID", default=None, help="only the records with this key (a customer id)")
    ta.add_argument("-n", type=positive_int, default=None, metavar="N", help="stop after printing N records")
    ta.set_defaults(func=cmd_tail)
    de = command("demo", "bundled broker + worker + simulator with a live view")
    de.add_argument("--duration", type=positive_float, default=None, help="seconds (default: until Ctrl-C)")
    de.add_argument("--customers", type=positive_int, default=500, help="customers in the simulated population")
    de.add_argument("--rate", type=positive_float, default=300.0, help="events per second")
    de.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for warning in unknown_variable_warnings():  # a misspelt name, which nothing would read
        print(f"engagement: warning: {warning}", file=sys.stderr)
    try:
        if COMMAND_SETTINGS.get(args.command, ALL_SETTINGS):  # demo reads none
            from stream_app.config import Settings

            Settings.from_env()  # every bad ENGAGEMENT_* value is refused here, at start
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"engagement {args.command}: interrupted", file=sys.stderr)
        return 130
    except SettingsError as exc:  # a bad ENGAGEMENT_* value: say which, no traceback
        print(f"engagement {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader (`| head`) left: stop quietly, as Unix tools do
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    raise SystemExit(main())
