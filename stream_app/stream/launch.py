"""Starting and stopping worker processes: `python -m stream_app worker` configured only through
`ENGAGEMENT_*` variables (`Settings.to_env`). Used by the demo, the integration tests and the
bench, so they all start a worker the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from stream_app.broker import die_with_parent
from stream_app.config import Settings

__all__ = ["stop_process", "worker_command", "worker_env", "worker_process"]


def worker_command() -> list[str]:
    return [sys.executable, "-m", "stream_app", "worker"]


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """This process's environment with `settings` as ENGAGEMENT_* variables, then `extra`."""
    return {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1", **extra}


def worker_process(settings: Settings, log_path: str | os.PathLike[str], *, detach: bool = False,
                   **extra_env: str) -> subprocess.Popen[bytes]:
    """A worker writing its output (stdout and stderr) to `log_path`.

    `detach`: its own session, so a Ctrl-C in the terminal reaches only the caller, which stops
    the worker in order; and (Linux) it dies with the caller if the caller is killed.
    """
    with open(Path(log_path), "wb") as log:  # the child has its own descriptor
        return subprocess.Popen(
            worker_command(), env=worker_env(settings, **extra_env),
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=detach,
            preexec_fn=die_with_parent if detach and sys.platform == "linux" else None,  # noqa: PLW1509 - one prctl
        )


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float,
                 force: Callable[[], bool] = lambda: False) -> int:
    """SIGTERM, then SIGKILL after `timeout_s` (or as soon as `force()` is true); the exit code."""
    if proc.poll() is None:
        proc.terminate()
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline and not force():
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    return proc.wait()
