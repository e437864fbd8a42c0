"""`engagement demo` end to end: bundled broker + worker + simulator, piped output, clean exit.

Each run carries a unique environment variable that the demo's children (worker, broker) inherit,
so leftovers are found by scanning /proc/*/environ, whoever their parent is by then.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

MARKER_VAR = "ENGAGEMENT_DEMO_TEST_MARKER"


def _marked_pids(marker: str) -> list[int]:
    """Live processes (not zombies) whose environment carries the marker."""
    needle = f"{MARKER_VAR}={marker}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            pids.append(int(entry.name))
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_demo(marker: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, MARKER_VAR: marker, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "stream_app", "demo", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        # A shell starts background jobs with SIGINT ignored, and children inherit that: give the
        # demo the default disposition, as a terminal would, so the Ctrl-C test means something.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _child_pids(out: str) -> list[int]:
    m = re.search(r"broker kafka://\S+ \(pid (\d+)\)\s+worker http://\S+ \(pid (\d+)\)", out)
    assert m, f"no child pids in the output:\n{out[:2000]}"
    return [int(m.group(1)), int(m.group(2))]


def _assert_no_leftovers(marker: str, out: str) -> None:
    deadline = time.monotonic() + 5  # an orphan killed by the parent-death signal needs a moment
    while True:
        left = _marked_pids(marker) + [p for p in _child_pids(out) if _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert not left, f"processes left running after the demo: {sorted(set(left))}"


DEMO_S = 65  # past the old failure: at an hour of event time per second, events sent with the wall
# clock as their Kafka timestamp ran more than the 24-hour future tolerance ahead after ~24 s


def test_demo_runs_for_duration_and_cleans_up() -> None:
    marker = uuid.uuid4().hex
    t0 = time.monotonic()
    proc = _start_demo(marker, "--duration", str(DEMO_S), "--customers", "100", "--rate", "200")
    try:
        out, err = proc.communicate(timeout=DEMO_S + 60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"demo did not finish:\n{out[-3000:]}\n{err[-3000:]}")
    wall = time.monotonic() - t0
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    assert "Traceback" not in out + err, err[-3000:]
    assert wall < DEMO_S + 20, f"demo took {wall:.1f}s"

    blocks = re.findall(r"^\[\s*([\d.]+)s\] produced ([\d,]+) .*? scored ([\d,]+) .*? rejected ([\d,]+) ",
                        out, re.M)
    assert len(blocks) >= DEMO_S - 5, out[-3000:]  # one block per second, not a redrawn screen
    assert "\x1b[" not in out  # no ANSI codes when stdout is not a terminal
    elapsed, produced, scored, rejected = (float(x.replace(",", "")) for x in blocks[-1])
    assert elapsed >= 60 and produced > 5000, blocks[-1]
    # Every event stays valid however far event time runs ahead: only the simulator's 1 % bad
    # lines are dead-lettered, and the worker keeps up.
    assert rejected <= 0.05 * produced, blocks[-1]
    assert scored >= 0.5 * produced, blocks[-1]
    # and it keeps scoring to the end: the last 20 s scored events too
    late = [b for b in blocks if float(b[0]) >= elapsed - 20]
    assert float(late[-1][2].replace(",", "")) > float(late[0][2].replace(",", "")), late
    assert "  rejections: " not in out, out[-3000:]  # nothing above the bad-line rate to explain
    assert re.search(r"^  clock: event time runs 1 h/s, now \d{4}-\d\d-\d\d \d\d:\d\d UTC, stamped on each Kafka record", out, re.M)
    # The tier table and the KPI lines, with numbers, once the worker is up.
    tiers = re.findall(r"^  tiers: bronze ([\d,]+) .*\| silver ([\d,]+) .*\| gold ([\d,]+) .*\| platinum ([\d,]+) ",
                       out, re.M)
    assert tiers and sum(int(n.replace(",", "")) for n in tiers[-1]) > 0, out[-3000:]
    assert re.search(r"^  kpis: orders [\d,]+ \| revenue [\d,.]+ \| average order value ", out, re.M), out[-3000:]
    assert re.search(r"^  scores: cust-\d+ [\d.]+ (bronze|silver|gold|platinum)", out, re.M)

    summary_lines = out.strip().splitlines()[-4:]
    assert summary_lines[0].startswith("demo: stopped after"), summary_lines
    assert all(len(line) <= 80 for line in summary_lines), summary_lines  # fits a newcomer's terminal
    summary = " ".join(summary_lines)
    m = re.search(r"first score after ([\d.]+)s", summary)
    assert m and float(m.group(1)) < 15, summary
    _assert_no_leftovers(marker, out)


def test_demo_ctrl_c_exits_cleanly() -> None:
    marker = uuid.uuid4().hex
    proc = _start_demo(marker, "--customers", "50", "--rate", "100")
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 30
    try:
        # Wait until scores flow, so the worker is fully up when it is interrupted.
        for line in proc.stdout:
            lines.append(line)
            if re.match(r"^\[\s*[\d.]+s\] .* scored [1-9]", line) or time.monotonic() > deadline:
                break
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends (the children run in their own sessions)
        out, err = proc.communicate(timeout=30)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    out = "".join(lines) + out
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-3000:]}\n{err[-3000:]}"
    assert "Traceback" not in out + err, err[-3000:]
    assert "KeyboardInterrupt" not in out + err
    assert out.strip().splitlines()[-4].startswith("demo: interrupted after"), out[-1000:]
    _assert_no_leftovers(marker, out)
