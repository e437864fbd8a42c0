"""Helpers for tests that run real worker processes against the session's broker."""

from __future__ import annotations

import asyncio
import dataclasses
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson

from stream_app.audit import run_audit
from stream_app.broker import EmbeddedBroker, free_port
from stream_app.config import EMBEDDED_PROFILE, Settings
from stream_app.stream.kafka_io import ensure_topics, read_topic
from stream_app.stream.launch import stop_process, worker_process


def isolated_settings(broker: EmbeddedBroker, tmp: Path, **overrides: Any) -> Settings:
    """Settings whose app id and topics are unique to one test (the broker is shared)."""
    tag = uuid.uuid4().hex[:8]
    names = {f"topic_{t}": f"t{tag}.{t}" for t in
             ("orders", "clicks", "social", "privacy", "events", "scores", "tier_changes", "alerts", "kpis",
              "segment_changes", "dead_letter")}
    base: dict[str, Any] = dict(broker=broker.url, app_id=f"scorer-{tag}", partitions=4, data_dir=str(tmp / "data"),
                                kpi_interval_s=2.0, log_level="info", **EMBEDDED_PROFILE, **names)
    base.update(overrides)
    settings = Settings(**base)
    asyncio.run(ensure_topics(settings))
    return settings


class WorkerProcess:
    def __init__(self, settings: Settings, tmp: Path, name: str = "w1", **env_extra: str) -> None:
        self.port = free_port()
        self.log_path = tmp / f"{name}.log"
        self.proc = worker_process(dataclasses.replace(settings, web_port=self.port), self.log_path, **env_extra)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=10) as resp:
                return resp.status, orjson.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, orjson.loads(err.read() or b"null")

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.get("/readyz")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"worker not ready after {timeout}s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log_path.read_bytes()[-n:].decode(errors="replace")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        stop_process(self.proc, 15)


def wait_for_audit(settings: Settings, timeout: float = 150.0) -> list[str]:
    """Audit until the stream has caught up and agrees, or the time is up (last differences)."""
    deadline = time.monotonic() + timeout
    diffs: list[str] = ["audit never ran"]
    while time.monotonic() < deadline:
        diffs = asyncio.run(run_audit(settings, idle_ms=800))
        if not diffs:
            return diffs
        time.sleep(2)
    return diffs


def dead_letter_reasons(settings: Settings) -> list[dict[str, Any]]:
    parts = asyncio.run(read_topic(settings, settings.topic_dead_letter, idle_ms=800))
    return [orjson.loads(r.value) for rs in parts.values() for r in rs]
