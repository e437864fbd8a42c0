"""Named crash points for the chaos suite: `ENGAGEMENT_FAILPOINT=name:n` SIGKILLs the process the
n-th time the worker passes `name` (1 = the first time).

A failpoint is a real kill -9 at an exact place in the write order (between outputs and state,
between two record batches of one partition's state, during recovery, ...), which random timing
alone reaches only by luck. Unset, `hit` is a dictionary miss; nothing else changes.
"""

from __future__ import annotations

import os
import signal

#: every name the worker passes; the chaos suite arms them one at a time
POINTS = (
    "ingest_after_send",      # re-keyed + dead letters delivered, input offsets not committed
    "score_after_outputs",    # outputs delivered, no state record sent
    "score_mid_state",        # part of one partition's state records delivered
    "score_after_state",      # state delivered, local store not written
    "recovery_mid",           # while a partition's changelog is being read
    "kpi_publish",            # before the store KPI document is sent
)


def _armed() -> dict[str, int]:
    spec = os.environ.get("ENGAGEMENT_FAILPOINT", "")
    if not spec:
        return {}
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"ENGAGEMENT_FAILPOINT: unknown point {name!r}; one of {', '.join(POINTS)}")
    return {name: int(count or 1)}


_countdown = _armed()


def armed(name: str) -> bool:
    return name in _countdown


def hit(name: str) -> None:
    """Kill the process (SIGKILL: no cleanup, no flush) when `name` is armed and its count is up."""
    left = _countdown.get(name)
    if left is None:
        return
    if left <= 1:
        os.kill(os.getpid(), signal.SIGKILL)
    _countdown[name] = left - 1
