"""Shared helpers of the deployment-artifact tests: file loading, the worker's settings, routes and
metrics as the code defines them, a small PromQL scanner, promtool, and a Dockerfile parser."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
GRAFANA_DIR = DEPLOY / "grafana"
K8S_DIR = DEPLOY / "k8s"
DASHBOARD = GRAFANA_DIR / "dashboards" / "engagement-scorer.json"

#: the scrape job of the workers: compose job_name, k8s Service name (ServiceMonitor job label)
JOB = "engagement-scorer"

#: labels Prometheus adds to every scraped series (compose) or the operator adds (Kubernetes)
TARGET_LABELS = frozenset({"job", "instance", "namespace", "pod", "service", "endpoint", "container"})


def load_yaml(path: Path) -> Any:
    with path.open() as f:
        return yaml.safe_load(f)


def load_yaml_all(path: Path) -> list[Any]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


# -- the application's side -----------------------------------------------------------------------

def settings_env_names() -> set[str]:
    from stream_app.config import Settings

    return {f"ENGAGEMENT_{f.name.upper()}" for f in dataclasses.fields(Settings)}


def settings_default(name: str) -> Any:
    from stream_app.config import Settings

    return {f.name: f.default for f in dataclasses.fields(Settings)}[name]


@contextmanager
def only_engagement_env(env: dict[str, str]) -> Iterator[None]:
    """os.environ with exactly these ENGAGEMENT_* variables (restored afterwards)."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("ENGAGEMENT_")}
    for k in saved:
        del os.environ[k]
    os.environ.update({k: str(v) for k, v in env.items()})
    try:
        yield
    finally:
        for k in [k for k in os.environ if k.startswith("ENGAGEMENT_")]:
            del os.environ[k]
        os.environ.update(saved)


def settings_from(env: dict[str, str]) -> Any:
    """Settings.from_env() as a worker with exactly this environment would build it."""
    from stream_app.config import Settings

    with only_engagement_env({k: v for k, v in env.items() if k.startswith("ENGAGEMENT_")}):
        return Settings.from_env()


def web_routes() -> set[str]:
    """Paths the worker serves: the @app.page routes of stream_app/stream/web.py, plus /metrics."""
    src = (ROOT / "stream_app" / "stream" / "web.py").read_text()
    routes = set(re.findall(r"""@app\.page\(\s*["']([^"']+)["']""", src))
    assert routes, "no @app.page routes found in stream_app/stream/web.py"
    return routes | {"/metrics"}


@dataclasses.dataclass(frozen=True)
class MetricCatalogue:
    documented: frozenset[str]            # stream_app.stream.metrics.METRIC_NAMES
    histograms: frozenset[str]            # documented names that are histograms
    exposed: dict[str, frozenset[str]]    # sample name in the /metrics text -> its label names

    def documented_name(self, sample: str) -> str | None:
        """The METRIC_NAMES entry a sample name in a query belongs to (histogram suffixes too)."""
        if sample in self.documented:
            return sample
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample.removesuffix(suffix)
            if base != sample and base in self.histograms:
                return base
        return None


def metric_catalogue() -> MetricCatalogue:
    """Every metric of a worker's registry, each touched once, rendered as /metrics renders it."""
    from prometheus_client import generate_latest
    from prometheus_client.metrics import MetricWrapperBase

    from stream_app.stream.metrics import METRIC_NAMES, BatchHistogram, Metrics

    m = Metrics()
    histograms = set()
    for wrapper in vars(m).values():
        if isinstance(wrapper, BatchHistogram):  # our batch-observed histogram (a collector)
            wrapper.observe_many([0.5])
            histograms.add(wrapper.name)
            continue
        if not isinstance(wrapper, MetricWrapperBase):
            continue
        labelnames = wrapper._labelnames  # noqa: SLF001
        child = wrapper.labels(*["x"] * len(labelnames)) if labelnames else wrapper
        kind = wrapper._type  # noqa: SLF001
        if kind == "counter":
            child.inc()
        elif kind == "gauge":
            child.set(1)
        else:
            child.observe(0.5)
            if kind == "histogram":
                histograms.add(wrapper._name)  # noqa: SLF001
    exposed: dict[str, set[str]] = {}
    for line in generate_latest(m.registry).decode().splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s", line)
        assert match, line
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', match.group(3) or ""))
        exposed.setdefault(match.group(1), set()).update(labels)
    return MetricCatalogue(frozenset(METRIC_NAMES), frozenset(histograms & set(METRIC_NAMES)),
                           {k: frozenset(v) for k, v in exposed.items()})


# -- PromQL -----------------------------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"')
_IDENT = re.compile(r"(?<![\w.:$])[a-zA-Z_:][a-zA-Z0-9_:]*")
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                       "unless", "bool", "offset", "inf", "nan", "atan2"})


def metric_names(expr: str) -> list[str]:
    """Metric names a PromQL expression selects (identifiers that are not functions or keywords)."""
    s = _STRING.sub('""', expr)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = _GROUPING.sub(" ", s)
    s = re.sub(r"\boffset\s+\S+", " ", s)
    names = []
    for m in _IDENT.finditer(s):
        if m.group(0) in _KEYWORDS or s[m.end():].lstrip().startswith("("):
            continue
        names.append(m.group(0))
    return names


def selectors(expr: str) -> list[tuple[str | None, set[str]]]:
    """(metric name or None, label names matched) for every `{...}` selector."""
    return [(m.group(1), set(_MATCHER.findall(m.group(2)))) for m in _SELECTOR.finditer(expr)
            if m.group(1) not in _KEYWORDS]


def grouping_labels(expr: str) -> set[str]:
    s = _STRING.sub('""', expr)
    return {label.strip() for m in _GROUPING.finditer(s) for label in m.group(2).split(",") if label.strip()}


def check_expr(expr: str, cat: MetricCatalogue, extra_metrics: frozenset[str] = frozenset({"up"})) -> list[str]:
    """Problems of one expression against the worker's metrics: unknown names, unknown labels."""
    problems = []
    names = metric_names(expr)
    if not names:
        problems.append(f"selects no metric: {expr!r}")
    known_labels = set(TARGET_LABELS)
    for name in names:
        if name in extra_metrics:
            continue
        if cat.documented_name(name) is None:
            problems.append(f"{name} is not in stream_app.stream.metrics.METRIC_NAMES")
        elif name not in cat.exposed:
            problems.append(f"{name} is not a sample name in a worker's /metrics")
        else:
            known_labels |= cat.exposed[name]
    for name, labels in selectors(expr):
        if name is None:
            problems.append(f"selector without a metric name in {expr!r}")
            continue
        allowed = set(TARGET_LABELS) | ({"__name__"}) | set(cat.exposed.get(name, ()))
        for label in labels - allowed:
            problems.append(f"{name} has no label {label!r}")
    for label in grouping_labels(expr) - known_labels:
        problems.append(f"grouping by {label!r}, a label of none of {sorted(set(names))}")
    return problems


# -- promtool -----------------------------------------------------------------------------------------

def promtool() -> str:
    path = shutil.which(os.environ.get("PROMTOOL", "promtool"))
    assert path, ("promtool is not installed: `apt-get install -y prometheus` (Debian) or put "
                  "Prometheus' promtool on PATH; the ops tests need it and do not skip")
    return path


def run_promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


# -- Dockerfile -----------------------------------------------------------------------------------------

@dataclasses.dataclass
class Instruction:
    op: str          # upper case
    args: str        # the rest, continuation lines joined

    def exec_form(self) -> list[str] | None:
        try:
            value = json.loads(self.args)
        except ValueError:
            return None
        return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None

    def words(self) -> list[str]:
        return shlex.split(self.args)


@dataclasses.dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction]

    def all(self, op: str) -> list[Instruction]:
        return [i for i in self.instructions if i.op == op]

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for ins in self.all("ENV"):
            words = ins.words()
            if len(words) >= 1 and "=" not in words[0]:  # legacy `ENV KEY value`
                out[words[0]] = " ".join(words[1:])
                continue
            for w in words:
                k, _, v = w.partition("=")
                out[k] = v
        return out


def parse_dockerfile(text: str) -> list[Stage]:
    lines: list[str] = []
    buf = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are dropped by Docker
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    assert not buf, "Dockerfile ends inside a line continuation"
    stages: list[Stage] = []
    for line in lines:
        op, _, args = line.partition(" ")
        ins = Instruction(op.upper(), args.strip())
        if ins.op == "FROM":
            words = ins.words()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name, []))
        elif ins.op == "ARG" and not stages:
            continue
        else:
            assert stages, f"{ins.op} before the first FROM"
            stages[-1].instructions.append(ins)
    return stages


def healthcheck_command(ins: Instruction) -> tuple[dict[str, str], list[str]]:
    """(options, exec-form command) of `HEALTHCHECK [--opt=v ...] CMD [...]`."""
    opts: dict[str, str] = {}
    rest = ins.args
    while rest.startswith("--"):
        opt, _, rest = rest.partition(" ")
        k, _, v = opt[2:].partition("=")
        opts[k] = v
        rest = rest.lstrip()
    assert rest.startswith("CMD"), f"HEALTHCHECK without CMD: {ins.args!r}"
    cmd = Instruction("CMD", rest[3:].strip()).exec_form()
    assert cmd, "HEALTHCHECK CMD should be in exec (JSON array) form"
    return opts, cmd


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    """(negated, regex) for each line of .dockerignore, in order."""
    out = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.strip("/")
        rx = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                rx += "(?:.*/)?"
                i += 3
            elif pattern.startswith("**", i):
                rx += ".*"
                i += 2
            elif pattern[i] == "*":
                rx += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                rx += "[^/]"
                i += 1
            else:
                rx += re.escape(pattern[i])
                i += 1
        out.append((negated, re.compile(rx + r"\Z")))
    return out


def dockerignored(rel: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves `rel` out (the last matching pattern wins; a pattern that
    matches a parent directory matches everything below it)."""
    parts = rel.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for negated, rx in patterns:
        if any(rx.match(c) for c in candidates):
            excluded = not negated
    return excluded
