"""A second `engagement worker` on one machine: one line naming the port taken, exit 2, before any
Kafka work (issue 17). The first worker is stood in for by a socket listening on the port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time


def test_a_second_worker_names_the_port_in_use_and_exits_2_before_kafka() -> None:
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        # a broker on a dead port: reaching Kafka would hang or fail differently, never in one line
        env = {**os.environ, "ENGAGEMENT_WEB_PORT": str(port), "ENGAGEMENT_BROKER": "kafka://127.0.0.1:1",
               "ENGAGEMENT_WEB_HOST": "127.0.0.1", "ENGAGEMENT_WEB_BIND": ""}
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "stream_app", "worker"], env=env, capture_output=True,
                              text=True, timeout=60)
        took = time.monotonic() - t0
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert [line for line in proc.stderr.splitlines() if line] == [
        f"engagement worker: error: port {port} on 127.0.0.1 is already in use (another worker?); "
        "set ENGAGEMENT_WEB_PORT to a free port"]
    assert took < 30


def test_a_worker_bound_to_all_interfaces_sees_a_loopback_listener() -> None:
    with socket.socket() as first:
        first.bind(("127.0.0.1", 0))
        first.listen()
        port = first.getsockname()[1]
        env = {**os.environ, "ENGAGEMENT_WEB_PORT": str(port), "ENGAGEMENT_BROKER": "kafka://127.0.0.1:1",
               "ENGAGEMENT_WEB_BIND": "0.0.0.0"}
        proc = subprocess.run([sys.executable, "-m", "stream_app", "worker"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert proc.returncode == 2
    assert f"port {port} on 0.0.0.0 is already in use" in proc.stderr and "Traceback" not in proc.stderr
