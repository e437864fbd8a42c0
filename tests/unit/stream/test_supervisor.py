"""One crash policy (stream/supervisor.py): whichever long-running task of the worker fails, the
process stops the same way, with one CRITICAL line and exit code 70. The exit is a recorder here;
one test runs the real exit in a child process."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest

from stream_app.config import Settings
from stream_app.stream import ingest, kpis, scoring, worker
from stream_app.stream.owned import RebalanceListener
from stream_app.stream.supervisor import EXIT_CRASH, Supervisor
from stream_app.stream.worker import ScorerApp
from tests.helpers.kafka_stubs import NoopClient

SECRET = "cust-secret-42"


class Boom(Exception):
    pass


class Exits(list[int]):
    def __call__(self, code: int) -> None:
        self.append(code)


class BrokenClient(NoopClient):
    """A consumer or producer that starts, then fails on the first fetch."""

    def pause(self, *args: Any) -> None:
        raise Boom(SECRET)

    async def getmany(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        raise Boom(SECRET)


@pytest.fixture
def exits(monkeypatch: pytest.MonkeyPatch) -> Exits:
    for module in (ingest, scoring, kpis):
        monkeypatch.setattr(module, "AIOKafkaConsumer", BrokenClient)
    monkeypatch.setattr(worker, "AIOKafkaProducer", BrokenClient)
    return Exits()


def crash_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "stream_app.stream.supervisor"]


def assert_one_crash(caplog: pytest.LogCaptureFixture, exits: Exits, name: str) -> None:
    assert exits == [EXIT_CRASH] == [70]
    (line,) = crash_lines(caplog)
    assert line.levelno == logging.CRITICAL and line.exc_info is not None
    assert line.getMessage() == f"{name} failed (Boom): stopping the worker with exit code 70"
    assert SECRET not in line.getMessage()


def test_every_task_the_app_runs_is_supervised(tmp_path: Any) -> None:
    def names(role: str) -> set[str]:
        return set(ScorerApp(Settings(broker="kafka://h:1", role=role, data_dir=str(tmp_path))).tasks)  # type: ignore[arg-type]

    assert names("all") == {"ingest loop", "scoring loop", "KPI reader", "KPI publisher"}
    assert names("ingest") == {"ingest loop"}
    assert names("score") == {"scoring loop", "KPI reader", "KPI publisher"}


@pytest.mark.parametrize("name", ["ingest loop", "scoring loop", "KPI reader"])
async def test_a_crashing_loop_stops_the_worker(name: str, exits: Exits, caplog: pytest.LogCaptureFixture) -> None:
    app = ScorerApp(Settings(broker="kafka://h:1"), Supervisor(exits))
    with caplog.at_level(logging.INFO):
        await app.tasks[name]()  # its fetch fails
    assert_one_crash(caplog, exits, name)


async def test_a_crashing_kpi_publisher_tick_stops_the_worker(exits: Exits, caplog: pytest.LogCaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    app = ScorerApp(Settings(broker="kafka://h:1"), Supervisor(exits))
    ticks = []

    async def publish(*args: Any) -> None:
        ticks.append(args)
        if len(ticks) == 2:
            raise Boom(SECRET)

    monkeypatch.setattr(app.kpis, "publish", publish)
    await app.tasks["KPI publisher"]()  # a tick that returns is no crash
    assert exits == [] and not crash_lines(caplog)
    await app.tasks["KPI publisher"]()
    assert_one_crash(caplog, exits, "KPI publisher")


async def test_a_crash_publishing_kpi_partials_stops_the_worker(exits: Exits, caplog: pytest.LogCaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    app = ScorerApp(Settings(broker="kafka://h:1"), Supervisor(exits))

    async def no_records(*args: Any, **kwargs: Any) -> dict[Any, Any]:
        return {}

    async def publish(*args: Any) -> None:
        raise Boom(SECRET)

    monkeypatch.setattr(BrokenClient, "getmany", no_records)
    monkeypatch.setattr(app.scoring.partials, "publish", publish)  # between batches, in the scoring loop
    await app.tasks["scoring loop"]()
    assert_one_crash(caplog, exits, "scoring loop")


async def test_a_crash_in_a_rebalance_callback_stops_the_worker(exits: Exits,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # aiokafka would log and swallow it: the partition would never be restored
    app = ScorerApp(Settings(broker="kafka://h:1"), Supervisor(exits))
    listener = RebalanceListener(app.scoring.owned, BrokenClient(), app.supervisor)  # type: ignore[arg-type]
    await listener.on_partitions_assigned(set())  # pause() fails
    assert_one_crash(caplog, exits, "scoring rebalance (assign)")


async def test_a_long_running_task_that_returns_is_a_crash_and_a_cancelled_one_is_not(
        caplog: pytest.LogCaptureFixture) -> None:
    exits = Exits()
    supervisor = Supervisor(exits)

    async def returns() -> None:
        pass

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await supervisor.task("stopping", cancelled)()
    assert exits == []
    await supervisor.task("returning", returns)()
    assert exits == [70]
    assert [r.getMessage() for r in crash_lines(caplog)] == [
        "returning failed (RuntimeError): stopping the worker with exit code 70"]


def test_the_real_exit_ends_the_process_with_70_after_the_log_line() -> None:
    code = ("import asyncio, logging\n"
            "from stream_app.stream.supervisor import Supervisor\n"
            "logging.basicConfig()\n"
            "async def boom():\n"
            "    raise ValueError('x')\n"
            "asyncio.run(Supervisor().task('demo task', boom)())\n"
            "print('not reached')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 70, proc.stderr
    assert "CRITICAL:stream_app.stream.supervisor:demo task failed (ValueError)" in proc.stderr
    assert "Traceback" in proc.stderr and "not reached" not in proc.stdout
