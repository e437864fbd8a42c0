"""deploy/k8s: parsed manifests cross-checked with each other, Settings, the worker's routes and the
Dockerfile."""

from __future__ import annotations

import base64
import re
from pathlib import PurePosixPath
from typing import Any

import pytest

from tests.ops.ops_helpers import (
    JOB,
    K8S_DIR,
    PROM_DIR,
    ROOT,
    load_yaml,
    load_yaml_all,
    parse_dockerfile,
    settings_default,
    settings_env_names,
    settings_from,
    web_routes,
)


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    out = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out.extend(load_yaml_all(path))
    return out


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert found, f"{kind} {name} is referenced but not defined"
    return found[0]


@pytest.fixture(scope="module")
def sts(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(docs, "StatefulSet")


@pytest.fixture(scope="module")
def container(sts: dict[str, Any]) -> dict[str, Any]:
    cs = sts["spec"]["template"]["spec"]["containers"]
    assert len(cs) == 1
    return cs[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


#: the downward API fields a test pod answers with (the namespace is the kustomization's)
def pod_fields(name: str, namespace: str) -> dict[str, str]:
    return {"metadata.name": name, "metadata.namespace": namespace}


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, defined: dict[str, str]) -> str:
    """Kubernetes' $(VAR) expansion: `$$` is a literal `$`, a reference to a variable defined
    earlier is replaced, any other reference stays as written."""
    out, i = [], 0
    while i < len(value):
        if value.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        m = _VAR_REF.match(value, i)
        if m:
            out.append(defined.get(m.group(1), m.group(0)))
            i = m.end()
            continue
        out.append(value[i])
        i += 1
    return "".join(out)


def effective_env(docs: list[dict[str, Any]], container: dict[str, Any],
                  pod: str = "engagement-scorer-0", namespace: str = "engagement") -> dict[str, str]:
    """What the container of pod `pod` sees: envFrom ConfigMaps and Secrets, then env in order
    (which wins), values expanded and downward-API fields resolved as the kubelet does."""
    env: dict[str, str] = {}
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(named(docs, "ConfigMap", src["configMapRef"]["name"])["data"])
        if "secretRef" in src:
            secret = named(docs, "Secret", src["secretRef"]["name"])
            env.update({k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()})
            env.update(secret.get("stringData") or {})
    env = {k: str(v) for k, v in env.items()}
    fields = pod_fields(pod, namespace)
    for e in container.get("env", []):
        if "valueFrom" in e:
            ref = e["valueFrom"].get("fieldRef")
            assert ref and ref["fieldPath"] in fields, f"{e['name']}: unsupported valueFrom {e['valueFrom']}"
            env[e["name"]] = fields[ref["fieldPath"]]
        else:
            env[e["name"]] = expand(str(e.get("value", "")), env)
    return env


def downward_vars(container: dict[str, Any]) -> set[str]:
    return {e["name"] for e in container.get("env", []) if "fieldRef" in e.get("valueFrom", {})}


def test_kinds_and_kustomization(docs: list[dict[str, Any]]) -> None:
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Secret", "ServiceMonitor",
            "NetworkPolicy"} <= kinds
    kust = load_yaml(K8S_DIR / "kustomization.yaml")
    files = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files, "kustomization.yaml and the manifest files disagree"
    for d in docs:
        assert "namespace" not in d["metadata"], "set the namespace in kustomization.yaml only"


def test_statefulset_identity_and_headless_service(docs: list[dict[str, Any]], sts: dict[str, Any]) -> None:
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert matches(spec["selector"]["matchLabels"], labels)
    svc = named(docs, "Service", spec["serviceName"])
    assert svc["spec"].get("clusterIP") == "None", "the governing Service must be headless"
    assert matches(svc["spec"]["selector"], labels)
    assert svc["spec"].get("publishNotReadyAddresses") is True, \
        "peers must resolve (and Prometheus scrape) workers that are still recovering"
    for s in [d for d in docs if d["kind"] == "Service"]:
        assert matches(s["spec"]["selector"], labels), f"Service {s['metadata']['name']} selects no worker"


def test_replicas_fit_the_partitions(docs: list[dict[str, Any]], sts: dict[str, Any],
                                     container: dict[str, Any]) -> None:
    s = settings_from(effective_env(docs, container))
    assert 2 <= sts["spec"]["replicas"] <= s.partitions, "workers beyond the partition count idle"


def test_pod_disruption_budget(docs: list[dict[str, Any]], sts: dict[str, Any]) -> None:
    pdb = one(docs, "PodDisruptionBudget")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert matches(pdb["spec"]["selector"]["matchLabels"], labels)
    replicas = sts["spec"]["replicas"]
    if "maxUnavailable" in pdb["spec"]:
        assert 1 <= int(pdb["spec"]["maxUnavailable"]) < replicas
    else:
        assert 1 <= int(pdb["spec"]["minAvailable"]) < replicas, "a PDB that blocks every eviction"


def test_ports_match_the_web_port(docs: list[dict[str, Any]], sts: dict[str, Any], container: dict[str, Any]) -> None:
    s = settings_from(effective_env(docs, container))
    assert s.web_port == settings_default("web_port") == 6066
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": s.web_port}
    for svc in [d for d in docs if d["kind"] == "Service"]:
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            assert target in ports or target == s.web_port, f"Service port {p} does not reach the worker"
            if isinstance(target, str):
                assert ports[target] == s.web_port


def test_probes(container: dict[str, Any]) -> None:
    routes = web_routes()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[kind]["httpGet"]
        assert get["path"] in routes, f"{kind} path {get['path']} is not served by the worker"
        assert get["port"] in ports or get["port"] in ports.values()
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz", \
        "liveness must not depend on recovery (a long restore would get the pod killed)"


def test_env_names_exist_in_settings(docs: list[dict[str, Any]], container: dict[str, Any]) -> None:
    env = effective_env(docs, container)
    settings = {k for k in env if k.startswith("ENGAGEMENT_")}
    assert settings <= settings_env_names(), f"unknown variables: {settings - settings_env_names()}"
    helpers = set(env) - settings
    assert helpers <= downward_vars(container), \
        f"variables that are neither settings nor downward-API helpers: {helpers - downward_vars(container)}"
    for cm in [d for d in docs if d["kind"] == "ConfigMap"]:
        assert set(cm["data"]) <= settings_env_names()
    settings_from(env)  # the values parse (ints, floats, store) as a worker would parse them


def test_web_bind_listens_on_all_interfaces(docs: list[dict[str, Any]], container: dict[str, Any]) -> None:
    s = settings_from(effective_env(docs, container))
    assert s.web_bind == "0.0.0.0", \
        "ENGAGEMENT_WEB_BIND must be 0.0.0.0: probes, scrapes and peers reach the pod IP"


def test_env_references_are_defined_before_use(docs: list[dict[str, Any]], container: dict[str, Any]) -> None:
    """Kubernetes expands $(VAR) only for variables defined earlier (envFrom, then env above the
    reference); a later or missing one is left as the literal text `$(VAR)`."""
    defined = set(effective_env(docs, {**container, "env": []}))
    for e in container.get("env", []):
        for ref in _VAR_REF.findall(str(e.get("value", "")).replace("$$", "")):
            assert ref in defined, f"{e['name']} uses $({ref}) before it is defined"
        defined.add(e["name"])


def test_web_host_is_each_pods_dns_name(docs: list[dict[str, Any]], sts: dict[str, Any],
                                         container: dict[str, Any]) -> None:
    """Faust forwards /customers/{id} to http://<owner's WEB_HOST>:<WEB_PORT>: every pod must
    advertise its own stable name under the headless Service, distinct and resolvable."""
    namespace = load_yaml(K8S_DIR / "kustomization.yaml")["namespace"]
    service = sts["spec"]["serviceName"]
    headless = named(docs, "Service", service)
    assert headless["spec"].get("clusterIP") == "None", "pod DNS names need the headless Service"
    assert headless["spec"].get("publishNotReadyAddresses") is True, \
        "recovering pods must resolve, or requests for their customers fail until they are ready"
    raw = next(e for e in container["env"] if e["name"] == "ENGAGEMENT_WEB_HOST")
    assert "$(POD_NAME)" in raw.get("value", ""), "ENGAGEMENT_WEB_HOST should be built from the pod name"
    env_by_name = {e["name"]: e for e in container["env"]}
    for var, path in (("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")):
        assert env_by_name.get(var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == path, \
            f"{var} should come from the downward API ({path})"
    hosts = []
    for ordinal in range(sts["spec"]["replicas"]):
        pod = f"{sts['metadata']['name']}-{ordinal}"
        s = settings_from(effective_env(docs, container, pod=pod, namespace=namespace))
        assert s.web_host == f"{pod}.{service}.{namespace}.svc.cluster.local", \
            f"{pod} advertises {s.web_host!r}, not its DNS name under the headless Service {service}"
        hosts.append(s.web_host)
    assert len(set(hosts)) == len(hosts), f"pods advertise the same host: {hosts}"


def test_credentials_live_in_the_secret(docs: list[dict[str, Any]], container: dict[str, Any]) -> None:
    secret_keys = {"ENGAGEMENT_SASL_USERNAME", "ENGAGEMENT_SASL_PASSWORD"}
    for cm in [d for d in docs if d["kind"] == "ConfigMap"]:
        assert not secret_keys & set(cm["data"]), "SASL credentials in a ConfigMap"
    refs = [s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s]
    keys = set()
    for name in refs:
        secret = named(docs, "Secret", name)
        keys |= set(secret.get("stringData") or {}) | set(secret.get("data") or {})
    assert secret_keys <= keys
    s = settings_from(effective_env(docs, container))
    assert s.security_protocol in ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
    if s.security_protocol.startswith("SASL"):
        assert s.sasl_mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def test_ca_file_is_mounted(docs: list[dict[str, Any]], sts: dict[str, Any], container: dict[str, Any]) -> None:
    s = settings_from(effective_env(docs, container))
    if not s.ssl_cafile:
        return
    volumes = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    mount = [m for m in container["volumeMounts"]
             if PurePosixPath(m["mountPath"]) in PurePosixPath(s.ssl_cafile).parents]
    assert mount, f"ENGAGEMENT_SSL_CAFILE {s.ssl_cafile} is not under a volume mount"
    assert "secret" in volumes[mount[0]["name"]], "the CA bundle should come from a Secret"


def test_data_dir_is_the_volume_claim(docs: list[dict[str, Any]], sts: dict[str, Any], container: dict[str, Any]) -> None:
    s = settings_from(effective_env(docs, container))
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts.get(s.data_dir) in claims, f"ENGAGEMENT_DATA_DIR {s.data_dir} is not on the volume claim"
    image_env = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1].env()
    assert image_env["ENGAGEMENT_DATA_DIR"] == s.data_dir


def test_security_context_matches_the_image_user(sts: dict[str, Any], container: dict[str, Any]) -> None:
    pod = sts["spec"]["template"]["spec"]["securityContext"]
    final = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1]
    uid, _, gid = final.all("USER")[-1].args.partition(":")
    assert pod["runAsNonRoot"] is True
    assert str(pod["runAsUser"]) == uid and str(pod.get("runAsGroup", gid)) == (gid or uid)
    assert "fsGroup" in pod, "without fsGroup the volume claim may not be writable by the user"
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    if sc.get("readOnlyRootFilesystem"):
        writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
        assert "/tmp" in writable, "a read-only root needs a writable /tmp"


def test_container_runs_the_worker_from_a_pinned_image(container: dict[str, Any]) -> None:
    image = container["image"]
    assert ":" in image and not image.endswith(":latest")
    final = parse_dockerfile((ROOT / "Dockerfile").read_text())[-1]
    entry = final.all("ENTRYPOINT")[-1].exec_form() or []
    cmd = container.get("command", entry) + container.get("args", final.all("CMD")[-1].exec_form() or [])
    assert cmd[:2] == ["engagement", "worker"]


def test_service_monitor(docs: list[dict[str, Any]]) -> None:
    sm = one(docs, "ServiceMonitor")
    selected = [d for d in docs if d["kind"] == "Service"
                and matches(sm["spec"]["selector"]["matchLabels"], d["metadata"].get("labels", {}))]
    assert len(selected) == 1, f"the ServiceMonitor selects {len(selected)} Services (each would be scraped)"
    svc = selected[0]
    assert svc["spec"].get("clusterIP") == "None", "scrape every pod through the headless Service"
    port_names = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        assert ep["port"] in port_names
        assert ep.get("path", "/metrics") in web_routes()
    # the operator's job label is the Service name (no jobLabel): the rules select that job
    assert "jobLabel" not in sm["spec"]
    assert svc["metadata"]["name"] == JOB
    rules = (PROM_DIR / "rules.yml").read_text()
    assert set(re.findall(r'job\s*=\s*"([^"]*)"', rules)) == {svc["metadata"]["name"]}


# -- security (docs/SECURITY.md) -------------------------------------------------------------------

def test_probes_and_scrapes_use_the_routes_that_need_no_token(docs: list[dict[str, Any]],
                                                               container: dict[str, Any]) -> None:
    from stream_app.stream.web import OPEN_PATHS

    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[kind]["httpGet"]["path"] in OPEN_PATHS, f"{kind} would get 401 with a token set"
    for ep in one(docs, "ServiceMonitor")["spec"]["endpoints"]:
        assert ep.get("path", "/metrics") in OPEN_PATHS, "the scrape would get 401 with a token set"


def test_api_token_comes_from_the_secret_as_a_file(docs: list[dict[str, Any]], sts: dict[str, Any],
                                                  container: dict[str, Any], tmp_path: Any) -> None:
    env = effective_env(docs, container)
    assert "ENGAGEMENT_API_TOKEN" not in env, "the token belongs in a Secret file, not the pod's environment"
    for cm in [d for d in docs if d["kind"] == "ConfigMap"]:
        assert not {"ENGAGEMENT_API_TOKEN", "ENGAGEMENT_API_TOKEN_FILE"} & set(cm["data"])
    s = settings_from(env)
    token_path = PurePosixPath(s.api_token_file)
    assert s.api_token_file, "the workers run with an API token (ENGAGEMENT_API_TOKEN_FILE)"
    mount = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == token_path.parent]
    assert len(mount) == 1 and mount[0].get("readOnly") is True, f"{token_path} is not in a read-only mount"
    volume = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}[mount[0]["name"]]
    assert "secret" in volume, "the token file should come from a Secret volume"
    secret = named(docs, "Secret", volume["secret"]["secretName"])
    items = {i["path"]: i["key"] for i in volume["secret"].get("items", [])} or \
        {k: k for k in (secret.get("stringData") or secret.get("data") or {})}
    assert token_path.name in items, f"the Secret volume has no file {token_path.name}"
    value = (secret.get("stringData") or {}).get(items[token_path.name])
    if value is None:
        value = base64.b64decode(secret["data"][items[token_path.name]]).decode()
    # what the kubelet writes, read as the worker reads it at start
    (tmp_path / token_path.name).write_text(value)
    from stream_app.config import Settings

    assert Settings(api_token_file=str(tmp_path / token_path.name)).read_api_token() == value.strip()
    mode = volume["secret"].get("defaultMode", 0o644)
    assert mode & 0o007 == 0, "the token file should not be world-readable"
    assert mode & 0o040 and "fsGroup" in sts["spec"]["template"]["spec"]["securityContext"], \
        "the non-root worker reads the token through its group (fsGroup)"


def test_network_policy_admits_only_peers_and_the_scraper(docs: list[dict[str, Any]], sts: dict[str, Any],
                                                           container: dict[str, Any]) -> None:
    policy = one(docs, "NetworkPolicy")
    spec = policy["spec"]
    worker_labels = sts["spec"]["template"]["metadata"]["labels"]
    assert matches(spec["podSelector"]["matchLabels"], worker_labels), "the policy does not select the workers"
    assert "Ingress" in spec["policyTypes"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    peers: list[str] = []
    for rule in spec["ingress"]:
        assert rule.get("from"), "a rule without `from` admits every source"
        assert rule.get("ports"), "a rule without `ports` admits every port"
        for p in rule["ports"]:
            assert p["port"] in port_names or p["port"] in port_names.values(), f"{p} is not the web port"
        for source in rule["from"]:
            assert "ipBlock" not in source, "admit pods by label, not address ranges"
            if "namespaceSelector" in source:
                assert "podSelector" not in source or source["podSelector"], source
                ns = source["namespaceSelector"]["matchLabels"]
                assert list(ns) == ["kubernetes.io/metadata.name"], "select the namespace by its name label"
                peers.append(f"namespace:{ns['kubernetes.io/metadata.name']}")
            else:
                assert matches(source["podSelector"]["matchLabels"], worker_labels), \
                    f"pods other than the workers are admitted: {source}"
                peers.append("workers")
    assert sorted(peers) == ["namespace:monitoring", "workers"], peers
    text = (K8S_DIR / "networkpolicy.yaml").read_text()
    assert "PLACEHOLDER" in text and "monitoring" in text, "the scraper's namespace is a documented placeholder"
