"""One crash policy for the worker: an unexpected exception in any long-running task stops the
process at once, with one exit code.

Every task the worker runs goes through a `Supervisor`: the ingest loop, the scoring loop (with
the KPI partials it publishes between batches), the KPI reader, the KPI publisher's ticks, and the
scoring group's rebalance callbacks. Left to the libraries, each would end differently: mode
crashes the Faust app for a task (another exit path and code), aiokafka logs and swallows an
exception in a rebalance listener, and faust-streaming swallows one in `on_recover`
(docs/BROKER.md).

A crash is logged once, at CRITICAL with its traceback (the exception's type in the message,
never a payload), and the process exits with `EXIT_CRASH` (70, `EX_SOFTWARE`) without a clean
stop: the state decides where the restart resumes (docs/RELIABILITY.md). A cancelled task (a
clean stop, SIGTERM) is not a crash.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import NoReturn

log = logging.getLogger(__name__)

__all__ = ["EXIT_CRASH", "Supervisor", "exit_now"]

#: the exit code of a worker stopped by an unexpected exception (sysexits.h EX_SOFTWARE)
EXIT_CRASH = 70

Task = Callable[[], Awaitable[object]]


def exit_now(code: int) -> NoReturn:
    """Flush the log, then end the process at once: no cleanup, no Faust shutdown."""
    logging.shutdown()
    os._exit(code)


class Supervisor:
    """`exit_process` is `exit_now` in the worker; tests pass a recorder."""

    def __init__(self, exit_process: Callable[[int], object] = exit_now) -> None:
        self.exit_process = exit_process

    def crash(self, name: str, exc: BaseException) -> None:
        """Log `exc` once and stop the process with `EXIT_CRASH`."""
        log.critical("%s failed (%s): stopping the worker with exit code %d", name, type(exc).__name__,
                     EXIT_CRASH, exc_info=exc)
        self.exit_process(EXIT_CRASH)

    @contextmanager
    def guard(self, name: str) -> Iterator[None]:
        """Any exception in the block is a crash of `name` (for callbacks a library would swallow)."""
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the one place a worker's bug is handled
            self.crash(name, exc)

    def task(self, name: str, run: Task, *, periodic: bool = False) -> Callable[[], Awaitable[None]]:
        """`run` supervised: an exception is a crash, and so is a return unless `periodic` (one run
        of a timer's body); a long-running task runs until it is cancelled."""

        async def supervised() -> None:
            with self.guard(name):
                await run()
                if not periodic:
                    raise RuntimeError(f"{name} returned")

        supervised.__name__ = supervised.__qualname__ = name.replace(" ", "_")  # Faust's task label
        return supervised
