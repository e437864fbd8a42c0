"""A real Prometheus scrapes a running worker; its HTTP API returns the expected event counts."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from stream_app.broker import EmbeddedBroker, free_port
from stream_app.produce import produce_lines
from stream_app.replay import replay_lines
from stream_app.simulate import Simulator
from tests.helpers.stream import WorkerProcess, isolated_settings, wait_for_audit
from tests.ops.ops_helpers import DASHBOARD, PROM_DIR, load_yaml, metric_names
from tests.ops.test_ops_grafana import as_promql, exprs


def query(port: int, promql: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_worker_counts(broker: EmbeddedBroker, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is required (apt-get install prometheus)"
    # with the shipped lifetime-value model, so that every metric the dashboard shows is exported
    model = Path(__file__).resolve().parents[2] / "data" / "clv-model-online-retail.json"
    settings = isolated_settings(broker, tmp_path, clv_model_file=str(model))
    lines = list(Simulator(customers=200, seed=21, days=60, bad_rate=0.03).lines(3000))
    expected = replay_lines(lines)
    worker = WorkerProcess(settings, tmp_path)
    prom_port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: engagement-scorer\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{worker.port}']\n")
    prom = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))
    try:
        worker.wait_ready()
        asyncio.run(produce_lines(settings, lines))
        assert wait_for_audit(settings) == []
        want = {
            "applied": expected["counts"]["applied"],
            "rejected": expected["counts"]["rejected"],
        }
        deadline = time.monotonic() + 60
        got: dict[str, float | None] = {}
        while time.monotonic() < deadline:
            try:
                got = {o: query(prom_port, f'sum(engagement_events_total{{job="engagement-scorer",outcome="{o}"}})')
                       for o in want}
            except OSError:
                got = {}
            if got == {k: float(v) for k, v in want.items()}:
                break
            time.sleep(1)
        assert got == {k: float(v) for k, v in want.items()}, (got, want)
        reasons = Counter(d["reason"] for d in expected["dead_letters"])
        for reason, n in reasons.items():
            assert query(prom_port, f'sum(engagement_dead_letters_total{{reason="{reason}"}})') == n
        assert query(prom_port, 'up{job="engagement-scorer"}') == 1
        version = settings.engine_config().clv_model.version  # type: ignore[union-attr]
        assert query(prom_port, f'engagement_clv_model_info{{version="{version}"}}') == 1

        # every metric the dashboard and the alert rules query is exported by this running worker
        with urllib.request.urlopen(worker.url + "/metrics", timeout=10) as resp:
            exported = {s.name for fam in text_string_to_metric_families(resp.read().decode()) for s in fam.samples}
        used = {name for expr in exprs(json.loads(DASHBOARD.read_text())) for name in metric_names(as_promql(expr))}
        rules = load_yaml(PROM_DIR / "rules.yml")
        used |= {name for g in rules["groups"] for r in g["rules"] for name in metric_names(r["expr"])}
        used -= {"up"}
        assert used and not used - exported, sorted(used - exported)
    finally:
        prom.terminate()
        prom.wait(10)
        worker.stop()
