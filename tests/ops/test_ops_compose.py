"""docker-compose.yml (parsed; no Docker engine here): services, images, ports, env vars against
Settings, mounted files against the repository, and the wiring between them."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.ops.ops_helpers import (
    DASHBOARD,
    JOB,
    ROOT,
    load_yaml,
    parse_dockerfile,
    settings_env_names,
    settings_from,
)

COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` as `docker compose up` resolves it with VAR unset."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", value)


def env_of(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: interpolate(str(v)) for k, v in env.items()}


def argv(svc: dict[str, Any]) -> list[str]:
    cmd = svc.get("command")
    if cmd is None:
        return ["worker"]  # the image's CMD
    return cmd if isinstance(cmd, list) else cmd.split()


def workers(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if "build" in s and argv(s)[:1] == ["worker"]}


def mounts(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each volume entry (short syntax)."""
    out = []
    for v in svc.get("volumes", []):
        parts = v.split(":")
        out.append((parts[0], parts[1]))
    return out


def published(svc: dict[str, Any]) -> dict[int, int]:
    """container port -> host port."""
    out = {}
    for p in svc.get("ports", []):
        host, container = str(p).rsplit(":", 1)
        out[int(container.split("/")[0])] = int(host.rsplit(":", 1)[-1])
    return out


def host_path(source: str) -> Path | None:
    if source.startswith((".", "/")):
        return (COMPOSE.parent / source).resolve()
    return None


def container_file(svc: dict[str, Any], target: str) -> Path | None:
    """The repository file a container path resolves to through the service's bind mounts."""
    t = PurePosixPath(target)
    for source, dest in mounts(svc):
        d = PurePosixPath(dest)
        if t == d or d in t.parents:
            base = host_path(source)
            if base is not None:
                return base / t.relative_to(d)
    return None


def test_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "simulator", "prometheus", "grafana"} <= set(services)
    assert len(workers(services)) == 2, f"expected two workers, got {sorted(workers(services))}"


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        if "build" in svc:
            continue
        image = svc["image"]
        repo, _, tag = image.partition(":")
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned"
    assert services["kafka"]["image"].startswith("apache/kafka:")


def test_kafka_runs_in_kraft_mode(services: dict[str, dict[str, Any]]) -> None:
    assert not any("zookeeper" in n for n in services)
    env = env_of(services["kafka"])
    assert not any("ZOOKEEPER" in k for k in env)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    listeners = dict(reversed(x.split("://")) for x in env["KAFKA_LISTENERS"].split(","))
    voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")
    assert len(voters) == 1
    node, _, hostport = voters[0].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    host, port = hostport.rsplit(":", 1)
    assert host in ("kafka", services["kafka"].get("hostname")), hostport
    assert listeners[f":{port}"] == controller, "quorum voter port is not the controller listener"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", \
        "topics are created by the workers with their partition counts; auto-creation would race them"
    assert env.get("CLUSTER_ID"), "apache/kafka needs CLUSTER_ID to format its log dir"
    assert "healthcheck" in services["kafka"]


def advertised(services: dict[str, dict[str, Any]]) -> set[str]:
    env = env_of(services["kafka"])
    return {x.split("://", 1)[1] for x in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}


def test_engagement_env_vars_exist_in_settings(services: dict[str, dict[str, Any]]) -> None:
    names = settings_env_names()
    for name, svc in services.items():
        bad = {k for k in env_of(svc) if k.startswith("ENGAGEMENT_")} - names
        assert not bad, f"{name}: unknown settings {bad}"


def test_workers(services: dict[str, dict[str, Any]]) -> None:
    ws = workers(services)
    app_ids, host_ports = set(), []
    for name, svc in ws.items():
        build = svc["build"]
        context = (COMPOSE.parent / build["context"]).resolve()
        dockerfile = context / build.get("dockerfile", "Dockerfile")
        assert dockerfile == ROOT / "Dockerfile", f"{name} is not built from the repository's Dockerfile"
        env = env_of(svc)
        s = settings_from(env)
        assert s.broker.split("://", 1)[1] in advertised(services), f"{name}: {s.broker} is not a Kafka listener"
        assert s.web_port in published(svc), f"{name} does not publish its web port {s.web_port}"
        host_ports.append(published(svc)[s.web_port])
        app_ids.add(s.app_id)
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        data = [dest for src, dest in mounts(svc) if dest == s.data_dir]
        assert data, f"{name}: ENGAGEMENT_DATA_DIR {s.data_dir} is not a volume"
    assert len(app_ids) == 1, "the workers must share one consumer group (ENGAGEMENT_APP_ID)"
    assert len(set(host_ports)) == len(host_ports), "workers publish the same host port"


def image_env() -> dict[str, str]:
    return {k: v for k, v in parse_dockerfile((ROOT / "Dockerfile").read_text())[-1].env().items()
            if k.startswith("ENGAGEMENT_")}


def dns_names(name: str, svc: dict[str, Any]) -> set[str]:
    """Names other containers on the compose network resolve to this service: the service name and
    its network aliases (`hostname:` only names the container to itself)."""
    names = {name}
    networks = svc.get("networks") or {}
    if isinstance(networks, dict):
        for net in networks.values():
            names |= set((net or {}).get("aliases") or [])
    return names


def test_workers_listen_on_all_interfaces(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in workers(services).items():
        s = settings_from({**image_env(), **env_of(svc)})  # the image's ENV, then the service's
        assert (s.web_bind or s.web_host) == "0.0.0.0", \
            f"{name} must listen on 0.0.0.0 (ENGAGEMENT_WEB_BIND) to be reached through its published port"


def test_workers_advertise_distinct_reachable_hosts(services: dict[str, dict[str, Any]]) -> None:
    """Faust forwards /customers/{id} to http://<owner's WEB_HOST>:<WEB_PORT>: each worker must
    advertise a name the other workers resolve to it, and no two workers the same one."""
    ws = workers(services)
    hosts = {}
    for name, svc in ws.items():
        s = settings_from({**image_env(), **env_of(svc)})
        assert s.web_host == name or s.web_host in dns_names(name, svc), \
            f"{name} advertises {s.web_host!r}, not its own service name"
        hosts[name] = s.web_host
    assert len(set(hosts.values())) == len(hosts), f"workers advertise the same host: {hosts}"
    for name, host in hosts.items():
        owners = [n for n, svc in services.items() if host in dns_names(n, svc)]
        assert owners == [name], f"{name}'s host {host!r} resolves to {owners}"


def test_simulator(services: dict[str, dict[str, Any]]) -> None:
    from stream_app.cli import build_parser

    sim = services["simulator"]
    args = build_parser().parse_args(argv(sim))
    assert (args.command, args.customers, args.rate) == ("simulate", 2000, 200.0)
    assert sim["build"] == next(iter(workers(services).values()))["build"]
    s = settings_from(env_of(sim))
    w = settings_from(env_of(next(iter(workers(services).values()))))
    assert s.broker == w.broker
    # `engagement simulate` partitions by ENGAGEMENT_PARTITIONS, not by the topic's metadata
    assert s.partitions == w.partitions, "simulator and workers disagree on the partition count"
    # it produces only after the workers have created the topics (their /healthz answers after that)
    for w in workers(services):
        assert sim["depends_on"][w]["condition"] == "service_healthy"
    assert sim.get("healthcheck", {}).get("disable") is True, "the image's /healthz check cannot pass here"


def test_dependencies_exist_and_healthy_conditions_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    stages = parse_dockerfile((ROOT / "Dockerfile").read_text())
    image_has_check = bool(stages[-1].all("HEALTHCHECK"))
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        for dep, cond in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                target = services[dep]
                has = "healthcheck" in target and not target["healthcheck"].get("disable")
                has = has or ("build" in target and image_has_check and "healthcheck" not in target)
                assert has, f"{name} waits for {dep} to be healthy, which has no healthcheck"


def test_mounted_files_exist(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    named = set(compose.get("volumes") or {})
    for name, svc in services.items():
        for source, _ in mounts(svc):
            path = host_path(source)
            if path is None:
                assert source in named, f"{name}: volume {source} is not declared"
            else:
                assert path.exists(), f"{name}: {source} does not exist in the repository"
                assert ROOT in path.parents or path == ROOT


def test_prometheus_gets_config_and_rules_and_scrapes_the_workers(services: dict[str, dict[str, Any]]) -> None:
    prom = services["prometheus"]
    flags = dict(a.lstrip("-").split("=", 1) for a in prom["command"] if "=" in a)
    config = container_file(prom, flags["config.file"])
    assert config is not None and config.is_file(), "--config.file is not a mounted repository file"
    cfg = load_yaml(config)
    for f in cfg["rule_files"]:
        target = str(PurePosixPath(flags["config.file"]).parent / f)
        mounted = container_file(prom, target)
        assert mounted is not None and mounted.is_file(), f"rule file {target} is not mounted"
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    targets = {t for sc in jobs[JOB]["static_configs"] for t in sc["targets"]}
    expected = {f"{n}:{settings_from(env_of(s)).web_port}" for n, s in workers(services).items()}
    assert targets == expected, f"scrape targets {targets} != workers {expected}"


def test_grafana_gets_provisioning_and_dashboard(services: dict[str, dict[str, Any]]) -> None:
    graf = services["grafana"]
    env = env_of(graf)
    prov_dir = container_file(graf, env.get("GF_PATHS_PROVISIONING", "/etc/grafana/provisioning"))
    assert prov_dir is not None and prov_dir.is_dir()
    providers = [p for f in (prov_dir / "dashboards").glob("*.y*ml") for p in load_yaml(f)["providers"]]
    dash_dir = container_file(graf, providers[0]["options"]["path"])
    assert dash_dir is not None and (dash_dir / DASHBOARD.name).resolve() == DASHBOARD.resolve()
    home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        mounted = container_file(graf, home)
        assert mounted is not None and mounted.is_file()
    sources = [d for f in (prov_dir / "datasources").glob("*.y*ml") for d in load_yaml(f)["datasources"]]
    url = next(d["url"] for d in sources if d["type"] == "prometheus")
    host, port = re.fullmatch(r"http://([\w.-]+):(\d+)/?", url).groups()  # type: ignore[union-attr]
    assert host == "prometheus" and host in services
    assert int(port) in published(services["prometheus"]), "datasource port is not Prometheus' port"


def test_workers_share_an_api_token_and_probes_and_scrapes_need_none(services: dict[str, dict[str, Any]]) -> None:
    from stream_app.stream.web import OPEN_PATHS

    raw = {name: str((svc.get("environment") or {}).get("ENGAGEMENT_API_TOKEN", ""))
           for name, svc in workers(services).items()}
    assert all(r.startswith("${ENGAGEMENT_API_TOKEN:-") for r in raw.values()), \
        f"the token should be overridable from the shell or .env: {raw}"
    tokens = {settings_from({**image_env(), **env_of(svc)}).read_api_token() for svc in workers(services).values()}
    assert len(tokens) == 1 and None not in tokens, "every worker needs the same token (forwarding carries it)"
    # the image's HEALTHCHECK and Prometheus carry no token
    final = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1]
    check = " ".join(final.all("HEALTHCHECK")[-1].words())
    assert re.search(r"/healthz\b", check) and "/healthz" in OPEN_PATHS
    prom = load_yaml(ROOT / "deploy" / "prometheus" / "prometheus.yml")
    job = next(j for j in prom["scrape_configs"] if j["job_name"] == JOB)
    assert job.get("metrics_path", "/metrics") in OPEN_PATHS
    # the usage note at the top shows the header
    assert 'Authorization: Bearer' in COMPOSE.read_text().split("services:")[0]
