"""deploy/prometheus: scrape config, alert rules and their promtool unit tests."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.ops_helpers import (
    JOB,
    PROM_DIR,
    MetricCatalogue,
    check_expr,
    load_yaml,
    metric_catalogue,
    promtool,
    run_promtool,
)

CONFIG = PROM_DIR / "prometheus.yml"
RULES = PROM_DIR / "rules.yml"
RULES_TEST = PROM_DIR / "rules_test.yml"

#: the alerts the operations issue asks for (worker down, lag growing, dead letters, no events,
#: watermark stalled, slow recovery) and the ones added around them
REQUIRED_ALERTS = {
    "EngagementWorkerDown", "EngagementConsumerLagGrowing", "EngagementDeadLetterRateHigh",
    "EngagementNoEvents", "EngagementWatermarkStalled", "EngagementRecoverySlow",
}


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    return [r for g in load_yaml(RULES)["groups"] for r in g["rules"]]


@pytest.fixture(scope="module")
def catalogue() -> MetricCatalogue:
    return metric_catalogue()


def test_promtool_check_config() -> None:
    res = run_promtool("check", "config", str(CONFIG))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_check_rules() -> None:
    res = run_promtool("check", "rules", str(RULES))
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    res = run_promtool("test", "rules", str(RULES_TEST))
    assert res.returncode == 0, res.stdout + res.stderr


def test_config_rule_files_resolve_next_to_the_config() -> None:
    """Relative to the config file, so the same paths work here and at /etc/prometheus."""
    cfg = load_yaml(CONFIG)
    files = cfg.get("rule_files") or []
    assert files, "prometheus.yml loads no rule files"
    for f in files:
        assert not Path(f).is_absolute(), f"{f}: use a path relative to prometheus.yml"
        assert (CONFIG.parent / f).is_file(), f"{f} does not exist next to prometheus.yml"
    assert RULES.name in files


def test_scrape_job_reads_the_workers_metrics_path() -> None:
    jobs = {j["job_name"]: j for j in load_yaml(CONFIG)["scrape_configs"]}
    assert JOB in jobs
    assert jobs[JOB].get("metrics_path", "/metrics") == "/metrics"
    targets = [t for sc in jobs[JOB]["static_configs"] for t in sc["targets"]]
    assert len(targets) >= 2, "scrape every worker"


def test_required_alerts_exist_with_severity_and_annotations(rules: list[dict[str, Any]]) -> None:
    alerts = {r["alert"]: r for r in rules if "alert" in r}
    assert REQUIRED_ALERTS <= set(alerts), REQUIRED_ALERTS - set(alerts)
    assert len(alerts) == len([r for r in rules if "alert" in r]), "duplicate alert names"
    for name, r in alerts.items():
        assert r.get("labels", {}).get("severity") in {"critical", "warning", "info"}, name
        ann = r.get("annotations", {})
        assert ann.get("summary") and ann.get("description"), f"{name} lacks summary/description"


def test_rules_use_only_the_workers_metrics(rules: list[dict[str, Any]], catalogue: MetricCatalogue) -> None:
    problems = [f"{r.get('alert') or r.get('record')}: {p}" for r in rules for p in check_expr(r["expr"], catalogue)]
    assert not problems, "\n".join(problems)


def test_rules_select_the_scrape_job(rules: list[dict[str, Any]]) -> None:
    jobs = set()
    for r in rules:
        jobs |= set(re.findall(r'job\s*=\s*"([^"]*)"', r["expr"]))
    assert jobs == {JOB}, f"rules select jobs {jobs}, the workers are scraped as {JOB!r}"


def test_unit_tests_cover_every_alert_firing_and_quiet(rules: list[dict[str, Any]],
                                                       catalogue: MetricCatalogue) -> None:
    doc = load_yaml(RULES_TEST)
    assert [Path(f).name for f in doc["rule_files"]] == [RULES.name]
    assert (RULES_TEST.parent / doc["rule_files"][0]).resolve() == RULES.resolve()
    firing, quiet = set(), set()
    problems = []
    for t in doc["tests"]:
        for s in t.get("input_series", []):
            problems += [f"input series {s['series']}: {p}" for p in check_expr(s["series"], catalogue)]
        for a in t.get("alert_rule_test", []):
            (firing if a.get("exp_alerts") else quiet).add(a["alertname"])
    assert not problems, "\n".join(problems)
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert alerts <= firing, f"no firing case for {alerts - firing}"
    assert alerts <= quiet, f"no quiet case for {alerts - quiet}"


def test_unit_tests_fail_without_each_rule(rules: list[dict[str, Any]], tmp_path: Path) -> None:
    """The promtool tests notice any missing alert rule (so they really exercise every alert).
    One rules file per removed alert, all promtool runs at once."""
    procs = {}
    for victim in sorted(r["alert"] for r in rules if "alert" in r):
        doc = load_yaml(RULES)
        for g in doc["groups"]:
            g["rules"] = [r for r in g["rules"] if r.get("alert") != victim]
        d = tmp_path / victim
        d.mkdir()
        (d / RULES.name).write_text(yaml.safe_dump(doc, sort_keys=False))
        shutil.copy(RULES_TEST, d / RULES_TEST.name)
        procs[victim] = subprocess.Popen([promtool(), "test", "rules", str(d / RULES_TEST.name)],
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    unnoticed = []
    for victim, proc in procs.items():
        out, _ = proc.communicate(timeout=60)
        if proc.returncode == 0 or victim not in out:
            unnoticed.append(victim)
    assert not unnoticed, f"rules_test.yml still passes without {unnoticed}"


def test_unit_tests_pin_the_dead_letter_threshold(tmp_path: Path) -> None:
    """Raising the dead-letter threshold from 5% to 10% breaks the firing case (9%)."""
    text = RULES.read_text()
    assert text.count("> 0.05") == 1
    (tmp_path / RULES.name).write_text(text.replace("> 0.05", "> 0.10"))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
    res = run_promtool("test", "rules", str(tmp_path / RULES_TEST.name))
    assert res.returncode != 0 and "EngagementDeadLetterRateHigh" in res.stdout + res.stderr
