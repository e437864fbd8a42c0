"""`engagement demo`: bundled broker + one worker + simulated shoppers, with a live view.

What runs:

- the embedded broker (Tansu) on a free loopback port, memory storage;
- one worker subprocess (``python -m stream_app worker``) configured through ``ENGAGEMENT_*``
  variables: the broker above, the short group timeouts the bundled broker needs, a free web port,
  log level ``warning``, its output in a log file in a temporary directory;
- the simulator producing endless live traffic (1 % bad lines) at ``rate`` events/s, its event
  time running an hour per second; each record's Kafka timestamp is its event time, so every
  event stays within the future rule (SPEC §1: at most ``future_tolerance`` after the received
  time, which in the stream is the Kafka timestamp) however long the demo runs;
- the worker's dashboard (``GET /`` on its web port, docs/DASHBOARD.md), whose URL is printed
  first and shown beside the view's title;
- a view refreshed every second: events produced and scored, tier counts (last tier per customer
  on the scores topic; a tombstone there removes an erased customer), the latest alerts and score
  records, and the store KPIs from the worker's ``GET /kpis``, with NPS, CSAT, the email open rate
  and the omnichannel customers, and the members of each segment (SPEC §10: the KPI document's
  ``segments``, beside the tier table); when more lines are dead-lettered than the simulator spoils on
  purpose, the top reasons; and the distributions of P(alive) and the predicted lifetime value
  over the customers' latest records (SPEC §11, the dashboard's `panels.clv_summary`). It fits the terminal: sections are dropped (alerts and scores first),
  never the counters. The view reads the output topics with a plain group-less
  consumer assigned to every partition, from the beginning.

"Events scored" is the sum of the latest ``events_total`` over the customers on the scores topic:
the events applied to identified customers (guest orders without a customer id are not in it).

On a terminal the view redraws in place; otherwise (a pipe, a file, a test) each refresh prints one
compact block. The demo stops after ``duration`` seconds or at Ctrl-C: it stops the producer, sends
SIGTERM to the worker (SIGKILL after 10 s; a second Ctrl-C kills at once), stops the broker, prints
a one-line summary and returns 0 (1 when the broker or the worker failed). The demo ignores the
caller's ``ENGAGEMENT_*`` variables: it always runs against its own broker with default settings,
except ``ENGAGEMENT_CLV_MODEL_FILE``: the lifetime-value model, by default the shipped fit of the
Online Retail orders (``data/clv-model-online-retail.json``, provenance in data/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson

from stream_app.broker import BrokerStartError, EmbeddedBroker, free_port
from stream_app.config import EMBEDDED_PROFILE, Settings
from stream_app.report import DemoState, render_compact, render_full
from stream_app.stream.launch import stop_process, worker_process

__all__ = ["run_demo"]

DEMO_SPEED = 3600.0  # event time runs an hour per second, so carts, sweeps and churn show up live
BAD_RATE = 0.01  # the share of lines the simulator spoils on purpose: the dead letters to expect
REFRESH_S = 1.0
WORKER_STOP_TIMEOUT_S = 10.0
CLEAR = "\x1b[H\x1b[2J"
#: the lifetime-value model the demo loads unless ENGAGEMENT_CLV_MODEL_FILE names another
SHIPPED_CLV_MODEL = Path(__file__).resolve().parents[1] / "data" / "clv-model-online-retail.json"
CLV_MODEL_VARIABLE = "ENGAGEMENT_CLV_MODEL_FILE"


def demo_clv_model_file(environ: dict[str, str] | None = None) -> str:
    """ENGAGEMENT_CLV_MODEL_FILE when set (empty: no model), else the shipped model when it is
    there (a source checkout), else none; an absolute path, as the worker runs elsewhere."""
    env = os.environ if environ is None else environ
    path = env.get(CLV_MODEL_VARIABLE)
    if path is None:
        path = str(SHIPPED_CLV_MODEL) if SHIPPED_CLV_MODEL.is_file() else ""
    return os.path.abspath(path) if path else ""


# -- the async part ------------------------------------------------------------------------------

def _counted(lines: Iterable[bytes], st: DemoState) -> Iterator[bytes]:
    for line in lines:
        st.produced += 1
        yield line


async def _produce(settings: Settings, customers: int, rate: float, st: DemoState) -> None:
    from stream_app.produce import produce_lines
    from stream_app.simulate import Simulator, live_lines

    st.clock = (time.time(), DEMO_SPEED)
    lines = _counted(live_lines(Simulator(customers=customers, bad_rate=BAD_RATE), speed=DEMO_SPEED), st)
    # Event time outruns the wall clock, so each record carries its event time as its Kafka
    # timestamp: against the send time every event would be more than `future_tolerance` (24 h)
    # ahead after 24 s and be dead-lettered (SPEC §1).
    await produce_lines(settings, lines, rate=rate, event_timestamps=True)


async def _consume(settings: Settings, st: DemoState) -> None:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream_app.stream.kafka_io import consumer_options

    topics = (settings.topic_scores, settings.topic_tier_changes, settings.topic_alerts,
              settings.topic_dead_letter)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                **consumer_options(settings))
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        while True:
            batches = await consumer.getmany(timeout_ms=250, max_records=5000)
            for tp, records in batches.items():
                for rec in records:
                    if tp.topic == settings.topic_dead_letter:
                        try:
                            st.on_dead_letter(orjson.loads(rec.value) if rec.value else None)
                        except orjson.JSONDecodeError:
                            st.on_dead_letter(None)
                        continue
                    if rec.value is None:  # a tombstone: the key's customer was erased
                        if tp.topic == settings.topic_scores and rec.key is not None:
                            st.on_tombstone(rec.key.decode("utf-8", "replace"))
                        continue
                    try:
                        doc = orjson.loads(rec.value)
                    except (orjson.JSONDecodeError, TypeError):
                        continue
                    if not isinstance(doc, dict):
                        continue
                    if tp.topic == settings.topic_scores:
                        st.on_score(doc)
                    elif tp.topic == settings.topic_tier_changes:
                        st.tier_changes += 1
                    else:
                        st.alerts += 1
                        st.latest_alerts.append(doc)
    finally:
        await consumer.stop()


async def _poll_kpis(web_url: str, st: DemoState) -> None:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=2)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            try:
                async with session.get(f"{web_url}/kpis") as resp:
                    if resp.status == 200:
                        st.kpis = orjson.loads(await resp.read())
                        if st.worker_ready_after is None:
                            st.worker_ready_after = st.elapsed()
            except (TimeoutError, aiohttp.ClientError, OSError, orjson.JSONDecodeError):
                pass
            await asyncio.sleep(REFRESH_S if st.worker_ready_after is not None else 0.3)


def _write(out: TextIO, text: str) -> bool:
    """Write and flush; False when the reader has gone (the stream then points at /dev/null)."""
    try:
        out.write(text)
        out.flush()
        return True
    except BrokenPipeError:
        # Point the descriptor at /dev/null, so the interpreter's final flush does not fail too.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, out.fileno())
            os.close(devnull)
        return False


class WorkerDied(RuntimeError):
    pass


async def _live(settings: Settings, st: DemoState, worker: subprocess.Popen[bytes], web_url: str,
                duration: float | None, customers: int, rate: float, out: TextIO, tty: bool,
                header: str) -> None:
    tasks = [asyncio.create_task(coro) for coro in (
        _produce(settings, customers, rate, st), _consume(settings, st), _poll_kpis(web_url, st))]
    # SIGTERM (kill, a service manager) stops the demo like Ctrl-C does; asyncio.run handles SIGINT.
    loop = asyncio.get_running_loop()
    terminated = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, terminated.set)
    try:
        deadline = None if duration is None else st.started + duration
        next_tick = time.monotonic() + REFRESH_S
        while not terminated.is_set():
            for t in tasks:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            if worker.poll() is not None:
                raise WorkerDied(f"worker exited with code {worker.returncode}")
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            wake = next_tick if deadline is None else min(next_tick, deadline)
            await asyncio.sleep(max(0.0, min(wake - now, 0.25)))
            if time.monotonic() >= next_tick:
                next_tick += REFRESH_S
                st.sample()
                if tty:
                    size = shutil.get_terminal_size()
                    view = CLEAR + render_full(st, header, size.columns, size.lines - 1)
                else:
                    view = render_compact(st)
                if not _write(out, view + "\n"):
                    st.interrupted = True  # nobody reads any more (`engagement demo | head`)
                    return
        st.interrupted = True
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        for t in tasks:
            t.cancel()
        # Let them run their cleanup (producer.stop(), consumer.stop(), session close).
        await asyncio.gather(*tasks, return_exceptions=True)


# -- processes -----------------------------------------------------------------------------------

def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_bytes()[-n:].decode("utf-8", "replace")
    except OSError:
        return ""


def run_demo(duration: float | None, customers: int, rate: float) -> int:
    # the model is read and checked first: a bad file stops the demo before anything starts
    # (SettingsError naming the variable and the field: exit 2)
    clv_model_file = Settings(clv_model_file=demo_clv_model_file()).clv_model_file
    out = sys.stdout
    tty = out.isatty()
    st = DemoState(bad_rate=BAD_RATE)
    tmp = Path(tempfile.mkdtemp(prefix="engagement-demo-"))
    worker_log = tmp / "worker.log"
    # Library warnings (aiokafka reconnects, ...) go to a file, not across the view.
    log_handler = logging.FileHandler(tmp / "demo.log")
    log_handler.setLevel(logging.WARNING)
    log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(log_handler)
    broker = EmbeddedBroker(log_dir=tmp / "broker")
    worker: subprocess.Popen[bytes] | None = None
    failure: str | None = None
    try:
        broker.start()
        web_port = free_port()
        settings = Settings(broker=broker.url, app_id="engagement-demo", data_dir=str(tmp / "data"),
                            web_port=web_port, kpi_interval_s=2.0, log_level="warning",
                            clv_model_file=clv_model_file, **EMBEDDED_PROFILE)
        from stream_app.stream.kafka_io import ensure_topics

        asyncio.run(ensure_topics(settings))
        # Its own session: a Ctrl-C in the terminal reaches only us, and we stop the worker in
        # order (producer first, broker last). It dies with us if we are killed.
        worker = worker_process(settings, worker_log, detach=True)
        web_url = f"http://{settings.web_host}:{web_port}"
        header = f"broker {broker.url} (pid {broker.pid})  worker {web_url} (pid {worker.pid})"
        st.dashboard = f"{web_url}/"
        if not _write(out, f"demo: {header}; worker log {worker_log}\n"
                           f"demo: dashboard {st.dashboard} (open it in a browser)\n"):
            raise KeyboardInterrupt  # nobody reads: stop as if interrupted
        asyncio.run(_live(settings, st, worker, web_url, duration, customers, rate, out, tty, header))
    except KeyboardInterrupt:
        st.interrupted = True
    except WorkerDied as exc:
        failure = f"{exc}\n--- {worker_log} (tail) ---\n{_tail(worker_log)}"
    except BrokerStartError as exc:
        failure = f"the bundled broker did not start: {exc}"
    except Exception as exc:  # noqa: BLE001 - reported below, after everything is stopped
        failure = f"{type(exc).__name__}: {exc}"
    # Stopping: a second Ctrl-C kills the worker at once instead of waiting (and no traceback).
    force = [False]

    def _on_sigint(signum: int, frame: Any) -> None:
        force[0] = True

    old_sigint = signal.signal(signal.SIGINT, _on_sigint)
    try:
        if tty:
            _write(out, "\nstopping ...\n")
        if worker is not None:
            stop_process(worker, WORKER_STOP_TIMEOUT_S, lambda: force[0])
        broker.stop()
        logging.getLogger().removeHandler(log_handler)
        log_handler.close()
        first = "n/a" if st.first_score_after is None else f"{st.first_score_after:.1f}s"
        ready = "n/a" if st.worker_ready_after is None else f"{st.worker_ready_after:.1f}s"
        # four lines under 80 columns: a newcomer's terminal does not wrap them
        _write(out, f"demo: {'interrupted' if st.interrupted else 'stopped'} after {st.elapsed():.1f}s; "
               f"worker and broker stopped\n"
               f"  produced {st.produced:,} events, scored {st.scored:,} for {len(st.customers):,} customers\n"
               f"  {st.tier_changes:,} tier changes, {st.alerts:,} alerts, {st.rejected:,} rejected, "
               f"{st.erased:,} erased\n"
               f"  worker ready after {ready}, first score after {first}\n")
        if failure is not None:
            print(f"engagement demo: error: {failure}", file=sys.stderr, flush=True)
            print(f"engagement demo: logs kept in {tmp}", file=sys.stderr, flush=True)
            return 1
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, old_sigint)
