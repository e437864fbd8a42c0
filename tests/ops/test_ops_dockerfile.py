"""The Dockerfile (parsed as text; no Docker engine here) and .dockerignore."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import tomllib

import pytest

from tests.ops.ops_helpers import (
    ROOT,
    Stage,
    dockerignore_patterns,
    dockerignored,
    healthcheck_command,
    parse_dockerfile,
    settings_default,
    settings_env_names,
    settings_from,
)

PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_multi_stage_on_a_pinned_slim_python_base(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "expected a build stage and a runtime stage"
    names = [s.name for s in stages]
    for s in stages:
        if s.image in names:  # FROM an earlier stage
            continue
        assert PINNED_PYTHON.fullmatch(s.image), f"base image {s.image!r} is not a pinned python:3.11.N-slim-bookworm"
    assert stages[-1].image == stages[0].image or stages[-1].image in names, \
        "runtime and build stages should share the base (the venv's interpreter path must exist)"


def test_runtime_stage_copies_the_built_environment_only(stages: list[Stage], final: Stage) -> None:
    build_names = {s.name for s in stages[:-1]}
    copies = final.all("COPY")
    from_build = [c for c in copies if re.search(r"--from=(\S+)", c.args)
                  and re.search(r"--from=(\S+)", c.args).group(1) in build_names]  # type: ignore[union-attr]
    assert from_build, "the runtime stage should COPY --from the build stage"
    runs = " ".join(r.args for r in final.all("RUN"))
    for tool in ("build-essential", "gcc", "pip install", "curl", "wget"):
        assert tool not in runs, f"runtime stage installs {tool!r}; keep it in the build stage"


def test_runs_as_a_non_root_user(final: Stage) -> None:
    users = final.all("USER")
    assert users, "runtime stage has no USER"
    user = users[-1].args.split(":")[0]
    assert user not in ("root", "0"), "runtime user is root"
    # USER comes after every RUN, so nothing later silently needs root
    ops = [i.op for i in final.instructions]
    assert max(i for i, op in enumerate(ops) if op == "RUN") < ops.index("USER")
    assert user.isdigit(), "use a numeric uid so Kubernetes' runAsNonRoot can verify it"


def test_data_dir_is_owned_by_the_runtime_user(final: Stage) -> None:
    data_dir = final.env().get("ENGAGEMENT_DATA_DIR")
    assert data_dir and data_dir != settings_default("data_dir"), "set ENGAGEMENT_DATA_DIR to a volume path"
    runs = " ".join(r.args for r in final.all("RUN"))
    assert re.search(rf"mkdir -p \S*{re.escape(data_dir)}", runs), "data dir is not created"
    assert re.search(rf"chown \S+ {re.escape(data_dir)}", runs), "data dir is not chowned to the user"
    uid = final.all("USER")[-1].args.split(":")[0]
    assert re.search(rf"--uid {uid}\b", runs), f"the user created in the image should have uid {uid}"


def test_entrypoint_is_engagement_worker(final: Stage) -> None:
    from stream_app.cli import build_parser

    entry = final.all("ENTRYPOINT")[-1].exec_form() or []
    cmd = final.all("CMD")[-1].exec_form() or []
    argv = entry + cmd
    assert argv[:2] == ["engagement", "worker"], argv
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts, "the entry point is not a console script of the package"
    assert build_parser().parse_args(argv[1:]).command == "worker"
    # with ENTRYPOINT = engagement, compose and k8s can run other subcommands with `command:`/`args:`
    assert entry == ["engagement"], "ENTRYPOINT should be the CLI alone, CMD its default subcommand"


def test_environment_uses_real_settings_and_binds_all_interfaces(final: Stage) -> None:
    env = final.env()
    engagement = {k: v for k, v in env.items() if k.startswith("ENGAGEMENT_")}
    assert set(engagement) <= settings_env_names(), set(engagement) - settings_env_names()
    assert engagement.get("ENGAGEMENT_WEB_BIND") == "0.0.0.0", \
        "the worker must listen on 0.0.0.0 in a container (ENGAGEMENT_WEB_BIND)"
    assert engagement.get("ENGAGEMENT_WEB_HOST") != "0.0.0.0", \
        "ENGAGEMENT_WEB_HOST is the address peers connect to; 0.0.0.0 reaches no worker"
    s = settings_from(engagement)
    assert (s.web_bind or s.web_host) == "0.0.0.0", "the worker's effective listen address"
    exposed = {int(p.split("/")[0]) for ins in final.all("EXPOSE") for p in ins.words()}
    assert exposed == {s.web_port} == {settings_default("web_port")}, exposed
    assert "/opt/venv/bin" in env.get("PATH", ""), "the venv's engagement script must be on PATH"


def test_copied_sources_exist_and_are_in_the_build_context(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            if "--from=" in ins.args:
                continue
            words = [w for w in ins.words() if not w.startswith("--")]
            for src in words[:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} does not exist"
                assert not dockerignored(src, patterns), f"COPY source {src} is excluded by .dockerignore"
    # the package's build needs what pyproject.toml names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    copied = {w for s in stages for ins in s.all("COPY") for w in ins.words()[:-1] if not w.startswith("--")}
    assert {"pyproject.toml", project["readme"]} <= copied


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = dockerignore_patterns()
    for rel in (".venv/bin/python", ".git/HEAD", "tests/unit/test_unit.py", "faust-it-1234abcd-data/x",
                "bench/run.py", "deploy/k8s/statefulset.yaml", "stream_app/__pycache__/cli.cpython-311.pyc",
                ".hypothesis/examples/x", "docker-compose.yml"):
        assert dockerignored(rel, patterns), f"{rel} would be sent to the Docker daemon"
    for path in (ROOT / "stream_app").rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        assert not dockerignored(rel, patterns), f"{rel} is needed in the image but excluded"


# -- the HEALTHCHECK, executed against a local stand-in for the worker's web server -----------------

class _Handler(http.server.BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        type(self).paths.append(self.path)
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args: object) -> None:
        pass


def _run_healthcheck(cmd: list[str], env: dict[str, str], port: int) -> int:
    assert cmd[0] == "python", "the healthcheck should run the image's python"
    full_env = {**os.environ, **env, "ENGAGEMENT_WEB_PORT": str(port)}
    return subprocess.run([sys.executable, *cmd[1:]], env=full_env, capture_output=True, timeout=20).returncode


def test_healthcheck_requests_healthz_without_curl(final: Stage) -> None:
    checks = final.all("HEALTHCHECK")
    assert len(checks) == 1
    opts, cmd = healthcheck_command(checks[0])
    text = " ".join(cmd)
    assert "urllib" in text and "/healthz" in text
    assert "curl" not in text and "wget" not in text
    for key in ("interval", "timeout", "start-period", "retries"):
        assert key in opts, f"HEALTHCHECK --{key} not set"

    env = {k: v for k, v in final.env().items() if k.startswith("ENGAGEMENT_")}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        _Handler.status, _Handler.paths = 200, []
        assert _run_healthcheck(cmd, env, port) == 0, "healthy worker reported unhealthy"
        assert _Handler.paths == ["/healthz"]
        _Handler.status = 503
        assert _run_healthcheck(cmd, env, port) != 0, "a 503 must be unhealthy"
    finally:
        server.shutdown()
        server.server_close()
    assert _run_healthcheck(cmd, env, port) != 0, "nothing listening must be unhealthy"


def test_healthcheck_asks_loopback_whatever_the_advertised_host(final: Stage) -> None:
    """The check runs inside the container, where the worker listens on 0.0.0.0: it asks 127.0.0.1,
    not ENGAGEMENT_WEB_HOST (a peer-facing name such as worker-1 or the pod's DNS name, which need
    not resolve, or reach this container, from inside it)."""
    _, cmd = healthcheck_command(final.all("HEALTHCHECK")[0])
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for host in ("worker-1.invalid", "127.0.0.2", "0.0.0.0"):
            _Handler.status, _Handler.paths = 200, []
            env = {**final.env(), "ENGAGEMENT_WEB_HOST": host, "ENGAGEMENT_WEB_BIND": "0.0.0.0"}
            assert _run_healthcheck(cmd, env, port) == 0, f"unhealthy with ENGAGEMENT_WEB_HOST={host}"
            assert _Handler.paths == ["/healthz"], f"ENGAGEMENT_WEB_HOST={host}: asked {_Handler.paths}"
    finally:
        server.shutdown()
        server.server_close()
