"""The Helm chart, rendered offline and checked.

A temporary copy of ``helm/`` gets stub subcharts (a Chart.yaml of the pinned name
and version: the real zero-to-jupyterhub and dask-gateway cannot be fetched here),
then ``helm lint`` / ``helm template`` run with ``helm/lint-values.yaml``, which sets
every option. Every object must pass ``kubernetes-validate --strict`` for the
Kubernetes version the chart declares. Then the properties Datahavn promises are
checked on the render together with the pods our builders make from the render's
own settings: user servers and Dask pods are confined by NetworkPolicies to the
listed targets, no pod mounts another project's volume, nothing runs as root,
user pods carry no service account token, and rendering is deterministic.

helm is the binary scripts/fetch-helm.sh installs as .venv/bin/helm; without it
these tests fail (`make install` fetches it).
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from datahavn.hub_config import kube

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm"
HELM = REPO / ".venv" / "bin" / "helm"
LINT_VALUES = CHART / "lint-values.yaml"
RELEASE, NAMESPACE = "dh", "dh"


def kube_version() -> str:
    """The lowest Kubernetes version the chart declares (kubeVersion: ">=X.Y.Z-0")."""
    declared = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    return declared.removeprefix(">=").strip('"').split("-")[0]


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    if not HELM.exists():
        pytest.fail(f"no helm at {HELM}: `make install` fetches it (scripts/fetch-helm.sh)")
    dest = tmp_path_factory.mktemp("chart") / "datahavn"
    # symlinks=False: files/kube_config.py is copied as the file it points to, as `helm package` stores it
    shutil.copytree(CHART, dest, symlinks=False, ignore=shutil.ignore_patterns("charts", "__pycache__"))
    for dep in yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]:
        stub = dest / "charts" / dep["name"]
        stub.mkdir(parents=True)
        (stub / "Chart.yaml").write_text(f"apiVersion: v2\nname: {dep['name']}\nversion: {dep['version']}\n")
    return dest


def helm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60)


def render_text(chart: Path, *sets: str, values: tuple[Path, ...] = (LINT_VALUES,), release=RELEASE) -> str:
    args = ["template", release, str(chart), "-n", NAMESPACE, "--kube-version", kube_version()]
    for v in values:
        args += ["-f", str(v)]
    for s in sets:
        args += ["--set", s]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(chart: Path, *sets: str, **kw) -> list[dict]:
    return [d for d in yaml.safe_load_all(render_text(chart, *sets, **kw)) if d]


@pytest.fixture(scope="module")
def docs(chart) -> list[dict]:
    return render(chart)


def find(docs, kind: str, name: str) -> dict:
    (doc,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.fixture(scope="module")
def settings(docs) -> kube.KubeSettings:
    return kube.KubeSettings.from_dict(
        json.loads(find(docs, "ConfigMap", "datahavn-hub-config")["data"]["datahavn.json"])
    )


def values() -> dict:
    """The release's values for Datahavn's part: values.yaml under lint-values.yaml."""

    def merge(a, b):
        if isinstance(a, dict) and isinstance(b, dict):
            return {**a, **{k: merge(a.get(k), v) for k, v in b.items()}}
        return copy.deepcopy(b)

    return merge(yaml.safe_load((CHART / "values.yaml").read_text()), yaml.safe_load(LINT_VALUES.read_text()))


# --- pods, as our builders and the upstream spawners make them ------------------------------


def server_pod(settings, user: str, project: str) -> dict:
    """A user server's pod: KubeSpawner's own (when installed) from our spec, else the spec's parts."""
    spec = kube.server_spec(settings, user, project, "reg/singleuser:1")
    try:
        import kubespawner.objects
    except ImportError:
        return {
            "metadata": {"labels": spec["extra_labels"]},
            "spec": {
                "automountServiceAccountToken": spec["automount_service_account_token"],
                "securityContext": spec["pod_security_context"],
                "containers": [{"name": "notebook", "securityContext": spec["container_security_context"]}],
                "initContainers": spec["init_containers"],
                "volumes": spec["volumes"],
            },
        }
    from .test_kube import to_dict

    pod = kubespawner.objects.make_pod(
        name=f"jupyter-{user}--{project}",
        cmd=["jupyterhub-singleuser"],
        port=8888,
        image="reg/singleuser:1",
        uid=spec["uid"],
        gid=spec["gid"],
        fs_gid=spec["fs_gid"],
        supplemental_gids=spec["supplemental_gids"],
        container_security_context=spec["container_security_context"],
        pod_security_context=spec["pod_security_context"],
        env={},
        volumes=spec["volumes"],
        volume_mounts=spec["volume_mounts"],
        labels={"app": "jupyterhub", "component": "singleuser-server", **spec["extra_labels"]},
        init_containers=spec["init_containers"],
        service_account=spec["service_account"],
        automount_service_account_token=spec["automount_service_account_token"],
        extra_pod_config=spec["extra_pod_config"],
    )
    return to_dict(pod)


def dask_pods(settings, user: str, project: str) -> list[dict]:
    """Its scheduler and worker pods: dask-gateway's controller's own (when installed), else their labels and spec."""
    try:
        import dask_gateway_server  # noqa: F401
    except ImportError:
        pass
    else:
        from .test_kube import dask_pod

        return [dask_pod(settings, user, project, worker) for worker in (False, True)]
    config = kube.cluster_config(settings, user, project, {})
    pods = []
    for component, key in (("dask-scheduler", "scheduler"), ("dask-worker", "worker")):
        labels = {"app.kubernetes.io/name": "dask-gateway", "app.kubernetes.io/component": component}
        spec = dict(config[f"{key}_extra_pod_config"])
        spec["containers"] = [{"name": component, **config[f"{key}_extra_container_config"]}]
        pods.append({"metadata": {"labels": {**labels, **config[f"{key}_extra_pod_labels"]}}, "spec": spec})
    return pods


# --- NetworkPolicy evaluation ------------------------------------------------------------------


def selects(selector: dict, labels: dict) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        key, op, vals = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in vals,
            "NotIn": key not in labels or labels[key] not in vals,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def egress_rules(docs, labels: dict) -> list[dict]:
    """Every egress allowance that applies to a pod with ``labels`` (they add up); fails if none confines it."""
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and "Egress" in d["spec"].get("policyTypes", [])
        and selects(d["spec"]["podSelector"], labels)
    ]
    assert policies, f"no NetworkPolicy confines the egress of pods labelled {labels}"
    return [rule for p in policies for rule in p["spec"].get("egress") or []]


def tcp(*ports):
    return [{"protocol": "TCP", "port": p} for p in ports]


HUB = ({"podSelector": {"matchLabels": {"app": "jupyterhub", "component": "hub"}}}, tcp(8081))
AUDIT = (
    {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "datahavn",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "audit",
            }
        }
    },
    tcp(8002),
)
AIRLOCK = (
    {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "datahavn",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "airlock",
            }
        }
    },
    tcp(8003),
)
POSTGRESQL = (
    {
        "podSelector": {
            "matchLabels": {
                "app.kubernetes.io/name": "datahavn",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "postgresql",
            }
        }
    },
    tcp(5432),
)
TRAEFIK = (
    {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "dask-gateway", "app.kubernetes.io/component": "traefik"}
        }
    },
    tcp(8000),  # the web port; schedulers by TLS SNI share it (traefik.service.ports.tcp.port: web)
)
GATEWAY_API = (
    {
        "podSelector": {
            "matchLabels": {"app.kubernetes.io/name": "dask-gateway", "app.kubernetes.io/component": "gateway"}
        }
    },
    tcp(8000),
)
DNS = (
    {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    },
    [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
)


def assert_confined(docs, pod: dict, allowed: list[tuple[dict, list]], same_project: str | None = None) -> None:
    """Every way out of ``pod`` is one of ``allowed`` (peer, ports), or its own project's Dask pods."""
    for rule in egress_rules(docs, pod["metadata"]["labels"]):
        peers = rule.get("to")
        assert peers, f"an egress rule without 'to' allows every destination: {rule}"
        for peer in peers:
            assert "ipBlock" not in peer, f"egress to addresses: {peer}"
            if same_project and rule.get("ports") is None:
                # the project's own schedulers and workers, any port, and no other project's
                selector = peer["podSelector"]
                assert set(peer) == {"podSelector"}
                assert selector["matchLabels"].get("datahavn/project") == same_project
                assert selector["matchLabels"].get("app.kubernetes.io/name") == "dask-gateway"
                continue
            assert (peer, rule.get("ports")) in allowed, f"egress beyond the listed targets: {peer} {rule.get('ports')}"


# --- the chart itself ---------------------------------------------------------------------


def test_chart_pins_its_dependencies():
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert set(deps) == {"jupyterhub", "dask-gateway"}
    for dep in deps.values():
        assert dep["version"][0].isdigit() and not set(dep["version"]) & set("<>=~^*| ")  # an exact version
        assert dep["repository"].startswith("https://")
    assert deps["dask-gateway"]["condition"] == "dask-gateway.enabled"
    assert kube_version() == "1.32.0"


def test_helm_lint(chart):
    result = helm("lint", str(chart), "-f", str(LINT_VALUES), "--kube-version", kube_version(), "--strict")
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_json_is_generated_from_the_yaml():
    result = subprocess.run(
        [sys.executable, str(CHART / "tools" / "generate_schema.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            ref = ref[part]
        schema = {**ref, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def test_schema_describes_every_key_and_closes_every_object():
    root = json.loads((CHART / "values.schema.json").read_text())
    problems = []

    def walk(schema, path, ours):
        schema = _resolve(schema, root)
        if "properties" in schema and ours and schema.get("additionalProperties") is not False:
            problems.append(f"{path or '/'}: additionalProperties is not false")
        for key, sub in schema.get("properties", {}).items():
            if "description" not in sub:
                problems.append(f"{path}.{key}: no description")
            walk(sub, f"{path}.{key}", ours and not (path == "" and key in ("jupyterhub", "dask-gateway", "global")))
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{path}.*", ours)

    walk(root, "", True)
    assert problems == []


def test_lint_values_set_every_option():
    root = json.loads((CHART / "values.schema.json").read_text())
    lint = yaml.safe_load(LINT_VALUES.read_text())

    def missing(schema, value, path) -> set[str]:
        schema = _resolve(schema, root)
        out = set()
        if "properties" in schema:
            for key, sub in schema["properties"].items():
                if path == "" and key in ("global", "jupyterhub", "dask-gateway"):
                    continue
                if not isinstance(value, dict) or key not in value:
                    out.add(f"{path}{key}")
                else:
                    out |= missing(sub, value[key], f"{path}{key}.")
        elif isinstance(schema.get("additionalProperties"), dict) and isinstance(value, dict):
            # a map (projects): an option is set if any entry sets it
            each = [missing(schema["additionalProperties"], v, f"{path}*.") for v in value.values()]
            out |= set.intersection(*each) if each else {f"{path}*"}
        return out

    assert missing(root, lint, "") == set()


@pytest.mark.parametrize(
    "bad, error",
    [
        ("unknownOption=1", "unknownOption"),
        ("audit.hmacKey=not-hex", "hmacKey"),
        ("projects.Bad_Name.datasets.size=1Gi", "Bad_Name"),
        ("projects.brca.datasets.sise=1Gi", "sise"),
        ("jupyterhub.singleuser.networkPolicy.egressAllowRules.nonPrivateIPs=true", "nonPrivateIPs"),
        ("jupyterhub.singleuser.networkPolicy.enabled=false", "enabled"),
        ("jupyterhub.singleuser.storage.type=dynamic", "type"),
        ("dask-gateway.gateway.backend.namespace=elsewhere", "namespace"),
        ("airlock.checkers[0]=Not_A_User", "checkers"),
        ("airlock.storage.sise=1Gi", "sise"),
        ("airlock.storage.size=lots", "size"),
        ("airlock.enabled=maybe", "enabled"),
        # the gateway's audit store: a list in values, replaced whole by one of the operator's
        ("dask-gateway.gateway.env[0].name=OTHER", "DATAHAVN_AUDIT_DB_URL"),
        # a Dask token copied out of a kernel must open nothing from outside the cluster
        ("dask-gateway.traefik.service.type=LoadBalancer", "ClusterIP"),
    ],
)
def test_schema_refuses(chart, bad, error):
    result = helm(
        "template", RELEASE, str(chart), "--kube-version", kube_version(), "-f", str(LINT_VALUES), "--set", bad
    )
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr
    assert error in result.stderr


def test_every_object_is_valid_kubernetes(chart, docs):
    import kubernetes_validate

    external = render(chart, "audit.externalDatabase.url=postgresql+psycopg://u:p@db.example.org:5432/audit")
    for doc in docs + external:
        kubernetes_validate.validate(doc, kube_version(), strict=True)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ConfigMap", "Deployment", "NetworkPolicy", "PersistentVolumeClaim", "Role", "RoleBinding",
        "Secret", "Service", "StatefulSet",
    ]  # fmt: skip


def test_two_renders_are_identical(chart):
    assert render_text(chart) == render_text(chart)


def test_hub_configuration(docs, settings):
    cm = find(docs, "ConfigMap", "datahavn-hub-config")
    assert cm["data"]["datahavn.py"].rstrip("\n") == (REPO / "hub_config" / "kube_config.py").read_text().rstrip("\n")
    v = values()["jupyterhub"]["hub"]
    mounts = {m["name"]: m["mountPath"] for m in v["extraVolumeMounts"]}
    volumes = {vol["name"]: vol for vol in v["extraVolumes"]}
    assert mounts["datahavn-hub-config"] == "/usr/local/etc/jupyterhub/jupyterhub_config.d"
    assert volumes["datahavn-hub-config"]["configMap"]["name"] == cm["metadata"]["name"]
    assert volumes["datahavn-audit-key"]["secret"]["secretName"] == "datahavn-audit"
    assert mounts["datahavn-audit-key"] == str(settings.layout.audit_key.parent)
    secrets = {name: find(docs, "Secret", name)["data"] for name in ("datahavn-audit", "datahavn-airlock")}
    for name, env in v["extraEnv"].items():
        ref = env["valueFrom"]["secretKeyRef"]
        assert ref["key"] in secrets[ref["name"]], name
        # only the airlock's may be absent (airlock.enabled=false renders no datahavn-airlock Secret)
        assert ref.get("optional", False) is (ref["name"] == "datahavn-airlock"), name
    assert v["extraEnv"]["DATAHAVN_AIRLOCK_API_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "datahavn-airlock"
    # the settings the hub and the gateway read
    assert sorted(settings.projects) == ["brca", "cardio", "rare_dis"]
    assert settings.project("brca").gid == 20001 and settings.project("cardio").gid == kube.derived_gid("cardio")
    assert settings.project("rare_dis").dask.max_workers == 2
    assert settings.project("brca").dask.worker_cores_max == 4
    assert settings.gateway.address == f"http://traefik-{RELEASE}-dask-gateway.{NAMESPACE}:80/services/dask-gateway"
    assert settings.gateway.proxy_address == f"tls://traefik-{RELEASE}-dask-gateway.{NAMESPACE}:80"
    assert settings.gateway.image == "registry.example.org/datahavn/k8s-singleuser:0.1.0"
    assert settings.audit_url == f"http://datahavn-audit.{NAMESPACE}:8002"
    assert settings.auditors == ("auditor", "admin")
    assert settings.airlock_url == f"http://datahavn-airlock.{NAMESPACE}:8003"
    assert settings.checkers == ("checker1", "checker2")
    # dask-gateway runs Datahavn's configuration and may read these settings, nothing more
    dg = values()["dask-gateway"]["gateway"]
    assert "configure(c)" in dg["extraConfig"]["datahavn"] and dg["auth"]["type"] == "jupyterhub"
    role, binding = find(docs, "Role", "datahavn-dask-gateway"), find(docs, "RoleBinding", "datahavn-dask-gateway")
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["datahavn-hub-config"], "verbs": ["get"]}
    ]
    assert binding["subjects"][0]["name"] == f"{RELEASE}-dask-gateway"


# --- dask-gateway, from the kernel ---------------------------------------------------------------------

GATEWAY_PODS = {
    component: {"app.kubernetes.io/name": "dask-gateway", "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": component}
    for component in ("gateway", "controller", "traefik")
}  # fmt: skip


def test_kernels_reach_the_gateway_through_its_proxy_only(docs, settings):
    """project.dask() in a pod: the settings the spawner gives the kernels, and the one way to the gateway."""
    from datahavn.extensions.sandbox import KEEP

    engine, address, proxy = kube.dask_engine(settings)
    traefik = f"traefik-{RELEASE}-dask-gateway.{NAMESPACE}"
    assert (engine, address, proxy) == (
        "kubernetes",
        f"http://{traefik}:80/services/dask-gateway",
        f"tls://{traefik}:80",
    )
    # the kernels keep the four variables the spawner adds (the token with them)
    assert {"DATAHAVN_DASK_ENGINE", "DATAHAVN_DASK_GATEWAY", "DATAHAVN_DASK_PROXY", "DATAHAVN_DASK_TOKEN"} <= set(KEEP)
    # the proxy's Service port 80 is its pods' 8000: open to every workspace, and nothing else of dask-gateway
    for project in settings.projects:
        labels = server_pod(settings, "alice", project)["metadata"]["labels"]
        rules = egress_rules(docs, labels)
        assert {"to": [TRAEFIK[0]], "ports": TRAEFIK[1]} in rules
        for rule in rules:
            for peer in rule["to"]:
                selector = peer.get("podSelector") or {}
                for component, pod_labels in GATEWAY_PODS.items():
                    if component != "traefik":
                        assert not selects(selector, pod_labels), (component, peer)
                for dask in dask_pods(settings, "alice", project):
                    assert not selects(selector, dask["metadata"]["labels"]), peer
        # and traefik's own port (9000: its API, ping) is not among them
        assert {"protocol": "TCP", "port": 9000} not in [p for r in rules for p in r.get("ports") or []]


def test_scheduler_proxy_on_a_port_of_its_own(chart):
    docs = render(chart, "dask-gateway.traefik.service.ports.tcp.port=8786")
    settings = kube.KubeSettings.from_dict(
        json.loads(find(docs, "ConfigMap", "datahavn-hub-config")["data"]["datahavn.json"])
    )
    assert settings.gateway.proxy_address == f"tls://traefik-{RELEASE}-dask-gateway.{NAMESPACE}:8786"
    rules = egress_rules(docs, server_pod(settings, "alice", "brca")["metadata"]["labels"])
    assert {"to": [TRAEFIK[0]], "ports": tcp(8000, 8786)} in rules


def test_gateway_records_into_the_audit_store(chart, docs):
    """The gateway opens the hub's audit store (hub_config/dask/kube_backend.py): its address and key, and a way in."""
    import base64

    env = {e["name"]: e for e in values()["dask-gateway"]["gateway"]["env"]}
    assert set(env) == {"DATAHAVN_AUDIT_DB_URL", "DATAHAVN_AUDIT_KEY"}
    secret = {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", "datahavn-audit")["data"].items()}
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items()}
    assert refs == {
        "DATAHAVN_AUDIT_DB_URL": {"name": "datahavn-audit", "key": "db-url"},
        "DATAHAVN_AUDIT_KEY": {"name": "datahavn-audit", "key": "audit-key"},
    }
    assert all(ref["key"] in secret for ref in refs.values())
    assert bytes.fromhex(secret["audit-key"].strip())  # the form open_gateway_store reads
    # the chart's PostgreSQL lets the gateway API in (ingress only), and no other part of dask-gateway
    postgres = find(docs, "StatefulSet", "datahavn-postgresql")["spec"]["template"]["metadata"]["labels"]
    assert admits(docs, postgres, GATEWAY_PODS["gateway"], 5432)
    for component in ("controller", "traefik"):
        assert not admits(docs, postgres, GATEWAY_PODS[component], 5432)
    extra = find(docs, "NetworkPolicy", "datahavn-postgresql-from-dask-gateway")["spec"]
    assert extra["policyTypes"] == ["Ingress"] and "egress" not in extra
    # an external database: no policy of ours for it (the gateway's egress is not ours to confine)
    external = render(chart, "audit.externalDatabase.url=postgresql+psycopg://u:p@db.example.org:5432/audit")
    assert not [d for d in external if d["metadata"]["name"] == "datahavn-postgresql-from-dask-gateway"]


def test_hub_lets_the_gateway_check_grants(docs, tmp_path, monkeypatch):
    from datahavn.tokens import DASK_SCOPE

    hub = hub_config(tmp_path, monkeypatch, docs)
    roles = {r["name"]: r for r in hub.load_roles}
    # read:groups: the projects' grants; nothing else (the tokens it checks, it asks the hub about with themselves)
    assert roles["datahavn-dask-gateway"] == {
        "name": "datahavn-dask-gateway", "scopes": ["read:groups", "read:servers"], "services": ["dask-gateway"],
    }  # fmt: skip
    assert DASK_SCOPE in hub.custom_scopes
    # the hub mints each workspace's Dask token from the owner's own scope; no other role holds it
    assert f"{DASK_SCOPE}!user" in roles["user"]["scopes"]
    assert [n for n, r in roles.items() if any(s.startswith(DASK_SCOPE) for s in r.get("scopes", []))] == ["user"]
    # the gateway's service: its token only, not proxied by the hub (its clusters' dashboards are not public)
    v = values()["jupyterhub"]["hub"]["services"]["dask-gateway"]
    assert "url" not in v  # kube_config.py adds none either (test_kube.test_hub_config_file_on_top_of_...)
    # and the gateway may ask the hub (zero-to-jupyterhub's hub NetworkPolicy, with ours added)
    ingress = values()["jupyterhub"]["hub"]["networkPolicy"]["ingress"]
    assert any(
        selects(peer["podSelector"], GATEWAY_PODS["gateway"]) and rule["ports"] == tcp(8081)
        for rule in ingress
        for peer in rule["from"]
    )


def test_project_volumes(docs, settings):
    pvcs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "PersistentVolumeClaim"}
    # the projects' claims, and the airlock's own (test_airlock_claim_service_and_secret)
    assert sorted(pvcs) == ["datahavn-airlock", "datahavn-brca-datasets", "datahavn-brca-workspaces",
                            "datahavn-cardio-workspaces", "datahavn-rare-dis-datasets"]  # fmt: skip
    assert all(p["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for p in pvcs.values())
    assert pvcs["datahavn-brca-datasets"]["spec"]["volumeName"] == "brca-datasets-nfs"
    claims = {(p.name, p.datasets_claim, p.workspaces_claim) for p in settings.projects.values()}
    assert claims == {
        ("brca", "datahavn-brca-datasets", "datahavn-brca-workspaces"),
        ("cardio", "cardio-datasets-nfs", "datahavn-cardio-workspaces"),
        ("rare_dis", "datahavn-rare-dis-datasets", "rare-workspaces"),
    }


# --- the promises, on the render ----------------------------------------------------------


def test_user_servers_reach_only_the_listed_targets(docs, settings):
    for user, project in [("alice", "brca"), ("bob", "cardio"), ("carol", "rare_dis")]:
        pod = server_pod(settings, user, project)
        assert_confined(docs, pod, [HUB, AUDIT, AIRLOCK, TRAEFIK, DNS])
    # zero-to-jupyterhub's own policy for them adds nothing but the hub and DNS in kube-system
    netpol = values()["jupyterhub"]["singleuser"]["networkPolicy"]
    assert netpol["enabled"] is True and netpol["egress"] == []
    assert netpol["egressAllowRules"] == {
        "cloudMetadataServer": False,
        "dnsPortsCloudMetadataServer": False,
        "dnsPortsKubeSystemNamespace": True,
        "dnsPortsPrivateIPs": False,
        "nonPrivateIPs": False,
        "privateIPs": False,
    }
    # and a pod KubeSpawner starts without our labels is confined all the same
    assert_confined(
        docs, {"metadata": {"labels": {"component": "singleuser-server"}}}, [HUB, AUDIT, AIRLOCK, TRAEFIK, DNS]
    )


def test_dask_pods_reach_only_their_project(docs, settings):
    for user, project in [("alice", "brca"), ("bob", "cardio")]:
        scheduler, worker = dask_pods(settings, user, project)
        assert_confined(docs, scheduler, [GATEWAY_API, DNS], same_project=project)
        assert_confined(docs, worker, [DNS], same_project=project)
        # their project's rule lets in no other project's pods
        other = dask_pods(settings, "alice", "cardio" if project == "brca" else "brca")[1]
        own_rules = [
            d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].startswith("datahavn-dask-")
            and selects(d["spec"]["podSelector"], worker["metadata"]["labels"])
        ]  # fmt: skip
        for policy in own_rules:
            for rule in policy["spec"].get("ingress") or []:
                for peer in rule.get("from") or []:
                    assert not selects(peer["podSelector"], other["metadata"]["labels"])


def test_no_pod_mounts_another_projects_volume(docs, settings):
    claims = {p.name: {p.datasets_claim, p.workspaces_claim} for p in settings.projects.values()}
    all_claims = set().union(*claims.values())
    for project in claims:
        pods = [server_pod(settings, "alice", project), *dask_pods(settings, "alice", project)]
        for pod in pods:
            mounted = {
                v["persistentVolumeClaim"]["claimName"]
                for v in pod["spec"].get("volumes", [])
                if "persistentVolumeClaim" in v
            }
            assert mounted <= claims[project], (project, mounted)
            assert not any("hostPath" in v or "nfs" in v for v in pod["spec"].get("volumes", []))
            datasets = [v for v in pod["spec"].get("volumes", []) if v["name"] == "datasets"]
            assert all(v["persistentVolumeClaim"]["readOnly"] is True for v in datasets)
    # and the chart's own pods mount no project's, but the airlock, which mounts every one read-only
    # (test_airlock_mounts_every_project_read_only)
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            for v in doc["spec"]["template"]["spec"].get("volumes", []):
                claim = v.get("persistentVolumeClaim", {})
                if doc["metadata"]["name"] == "datahavn-airlock" and claim.get("claimName") in all_claims:
                    assert claim["readOnly"] is True, v
                    continue
                assert claim.get("claimName") not in all_claims, (doc["metadata"]["name"], v)


def _containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec["containers"]


def test_pods_run_as_non_root_without_service_account_tokens(docs, settings):
    pods = [d["spec"]["template"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    # the audit service, PostgreSQL and the airlock; the airlock runs as root on purpose, with one
    # capability (test_airlock_runs_as_root_with_one_capability); every other pod does not
    assert len(pods) == 3
    pods = [p for p in pods if p["metadata"]["labels"]["app.kubernetes.io/component"] != "airlock"]
    assert len(pods) == 2
    pods += [server_pod(settings, "alice", "brca"), *dask_pods(settings, "alice", "brca")]
    for pod in pods:
        spec = pod["spec"]
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
        for c in _containers(spec):
            sc = c.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False and sc.get("runAsUser", 1) > 0
            assert not sc.get("privileged") and sc["capabilities"]["drop"] == ["ALL"]
    server = server_pod(settings, "alice", "brca")
    assert server["spec"]["securityContext"]["runAsUser"] == kube.workspace_uid("alice", "brca")
    assert server["spec"]["securityContext"]["supplementalGroups"] == []


def test_audit_service_and_its_database(chart, docs):
    audit = find(docs, "Deployment", "datahavn-audit")["spec"]["template"]
    assert audit["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    env = {e["name"]: e for e in audit["spec"]["containers"][0]["env"]}
    assert env["DATAHAVN_AUDIT_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "datahavn-audit", "key": "db-url"}
    import base64

    secret = {k: base64.b64decode(v).decode() for k, v in find(docs, "Secret", "datahavn-audit")["data"].items()}
    lint = yaml.safe_load(LINT_VALUES.read_text())
    assert secret["audit-key"] == lint["audit"]["hmacKey"] and secret["api-token"] == lint["audit"]["apiToken"]
    assert secret["db-url"] == (
        f"postgresql+psycopg://datahavn:{lint['postgresql']['password']}@datahavn-postgresql.{NAMESPACE}:5432/audit"
    )
    pg = find(docs, "NetworkPolicy", "datahavn-postgresql")["spec"]
    assert pg["egress"] == [] and "Egress" in pg["policyTypes"]
    # an external database: no PostgreSQL of ours, and the audit service may reach that one
    external = render(chart, "audit.externalDatabase.url=postgresql+psycopg://u:p@db.example.org:5432/audit")
    assert not [d for d in external if "postgresql" in d["metadata"]["name"]]
    egress = find(external, "NetworkPolicy", "datahavn-audit")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": tcp(5432)} in egress
    ext_secret = find(external, "Secret", "datahavn-audit")["data"]
    assert "postgres-password" not in ext_secret
    assert base64.b64decode(ext_secret["db-url"]).decode() == "postgresql+psycopg://u:p@db.example.org:5432/audit"


# --- the airlock ---------------------------------------------------------------------------


def airlock_pod(docs) -> dict:
    return find(docs, "Deployment", "datahavn-airlock")["spec"]["template"]


def ingress_rules(docs, labels: dict) -> list[dict]:
    """Every ingress allowance that applies to a pod with ``labels``; fails if none confines it."""
    policies = [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and "Ingress" in d["spec"].get("policyTypes", [])
        and selects(d["spec"]["podSelector"], labels)
    ]
    assert policies, f"no NetworkPolicy confines the ingress of pods labelled {labels}"
    return [rule for p in policies for rule in p["spec"].get("ingress") or []]


def admits(docs, target: dict, source: dict, port: int) -> bool:
    """Whether a pod labelled ``source`` may open TCP ``port`` on a pod labelled ``target`` (same namespace)."""
    for rule in ingress_rules(docs, target):
        ports = rule.get("ports")
        if ports is not None and {"protocol": "TCP", "port": port} not in ports:
            continue
        for peer in rule.get("from") or []:
            if set(peer) == {"podSelector"} and selects(peer["podSelector"], source):
                return True
    return False


def hub_config(tmp_path, monkeypatch, docs, airlock_token: str | None = "airlock-token"):
    """The hub's configuration, as zero-to-jupyterhub's hub loads it: kube_config.py on the render's settings.

    ``airlock_token``: the hub's DATAHAVN_AIRLOCK_API_TOKEN (from the datahavn-airlock Secret), None if absent.
    """
    from traitlets.config import Config

    from .test_kube import run_kube_config

    data = json.loads(find(docs, "ConfigMap", "datahavn-hub-config")["data"]["datahavn.json"])
    data["stateDir"] = str(tmp_path)  # the audit store's key, not /srv/datahavn
    (tmp_path / "hub" / "secrets").mkdir(parents=True)
    (tmp_path / "hub" / "secrets" / "audit-key").write_text("ab" * 32)
    (tmp_path / "datahavn.json").write_text(json.dumps(data))
    monkeypatch.setenv("DATAHAVN_SETTINGS", str(tmp_path / "datahavn.json"))
    monkeypatch.setenv("DATAHAVN_AUDIT_API_TOKEN", "audit-token")
    monkeypatch.setenv("DATAHAVN_AUDIT_DB_URL", f"sqlite:///{tmp_path}/audit.sqlite")
    if airlock_token is None:
        monkeypatch.delenv("DATAHAVN_AIRLOCK_API_TOKEN", raising=False)
    else:
        monkeypatch.setenv("DATAHAVN_AIRLOCK_API_TOKEN", airlock_token)
    c = Config()
    source = CHART / "files" / "kube_config.py"
    run_kube_config(c, source)
    return c.JupyterHub


def test_airlock_deployment_environment(docs, settings):
    pod = airlock_pod(docs)
    assert find(docs, "Deployment", "datahavn-airlock")["spec"]["strategy"] == {"type": "Recreate"}
    # the hub's own NetworkPolicy (zero-to-jupyterhub's) lets it in to ask who a token belongs to
    assert pod["metadata"]["labels"]["hub.jupyter.org/network-access-hub"] == "true"
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "datahavn.hub_config.airlock.service"]
    assert container["image"] == "registry.example.org/datahavn/k8s-hub:0.1.0"
    assert container["ports"] == [{"name": "http", "containerPort": 8003}]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert len(env) == len(container["env"])  # no name twice
    assert env == {
        "DATAHAVN_STATE_DIR": str(settings.layout.root),
        "DATAHAVN_AIRLOCK_DIR": str(settings.layout.airlock),
        "DATAHAVN_AIRLOCK_PORT": "8003",
        # the audit service's database, from the same Secret
        "DATAHAVN_AUDIT_DB_URL": {"secretKeyRef": {"name": "datahavn-audit", "key": "db-url"}},
        "JUPYTERHUB_API_TOKEN": {"secretKeyRef": {"name": "datahavn-airlock", "key": "api-token"}},
        "JUPYTERHUB_API_URL": "http://hub:8081/hub/api",
        "JUPYTERHUB_BASE_URL": "/",
        "JUPYTERHUB_SERVICE_NAME": "datahavn-airlock",
        "JUPYTERHUB_SERVICE_PREFIX": "/services/datahavn-airlock/",
        "JUPYTERHUB_SERVICE_URL": "http://0.0.0.0:8003",
        "JUPYTERHUB_CLIENT_ID": "service-datahavn-airlock",
        "JUPYTERHUB_OAUTH_CALLBACK_URL": "/services/datahavn-airlock/oauth_callback",
    }
    # the same hub-service variables as the audit service's, with its own values
    (audit,) = find(docs, "Deployment", "datahavn-audit")["spec"]["template"]["spec"]["containers"]
    hub_vars = {e["name"] for e in audit["env"] if e["name"].startswith("JUPYTERHUB_")}
    assert hub_vars == {name for name in env if name.startswith("JUPYTERHUB_")}


@pytest.mark.parametrize(
    "sets, image",
    [
        # no image of its own: the hub's, which holds datahavn (as the audit service's)
        (("airlock.image.name=", "jupyterhub.hub.image.tag=v9"), "registry.example.org/datahavn/k8s-hub:v9"),
        (("airlock.image.name=reg/airlock", "airlock.image.tag=v2"), "reg/airlock:v2"),
        (("airlock.image.name=reg/airlock", "airlock.image.tag="), "reg/airlock"),
    ],
)
def test_airlock_image(chart, sets, image):
    (container,) = airlock_pod(render(chart, *sets))["spec"]["containers"]
    assert container["image"] == image


def test_airlock_mounts_every_project_read_only(docs, settings):
    spec = airlock_pod(docs)["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert len(volumes) == len(spec["volumes"])
    mounts = container["volumeMounts"]
    by_path = {m["mountPath"]: m for m in mounts}
    assert len(by_path) == len(mounts)
    lay = settings.layout
    # its own store, read-write; the audit store's HMAC key where the audit service and the hub have it
    store = by_path[str(lay.airlock)]
    assert not store.get("readOnly") and "subPath" not in store
    assert volumes[store["name"]]["persistentVolumeClaim"] == {"claimName": "datahavn-airlock"}
    key = by_path[str(lay.audit_key.parent)]
    assert key["readOnly"] is True
    assert volumes[key["name"]]["secret"]["secretName"] == "datahavn-audit"
    assert volumes[key["name"]]["secret"]["items"] == [{"key": "audit-key", "path": lay.audit_key.name}]
    # every project's folders, at the paths a workspace pod has them (kube.project_volumes), all read-only
    project_mounts = [m for m in mounts if m["mountPath"].startswith(f"{lay.projects}/")]
    for project, p in settings.projects.items():
        pod_volumes, pod_mounts = kube.project_volumes(settings, project)
        claim_of = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod_volumes}
        assert set(claim_of.values()) == {p.datasets_claim, p.workspaces_claim}
        for want in pod_mounts:
            got = by_path[want["mountPath"]]
            assert got.get("subPath") == want.get("subPath"), want
            assert volumes[got["name"]]["persistentVolumeClaim"]["claimName"] == claim_of[want["name"]], want
    assert len(project_mounts) == 3 * len(settings.projects)
    for m in project_mounts:
        assert m["readOnly"] is True, m
        assert volumes[m["name"]]["persistentVolumeClaim"]["readOnly"] is True, m
    # and nothing else: no host path, no other claim, no other Secret
    claims = {p.datasets_claim for p in settings.projects.values()} | {
        p.workspaces_claim for p in settings.projects.values()
    }
    for v in spec["volumes"]:
        assert set(v) - {"name"} <= {"persistentVolumeClaim", "secret", "emptyDir"}, v
        if "persistentVolumeClaim" in v:
            assert v["persistentVolumeClaim"]["claimName"] in claims | {"datahavn-airlock"}, v
    writable = {m["mountPath"] for m in mounts if not m.get("readOnly")}
    assert writable == {str(lay.airlock), "/tmp"}


def test_airlock_runs_as_root_with_one_capability(docs):
    spec = airlock_pod(docs)["spec"]
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "runAsGroup": 0,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # no fsGroup: the kubelet would give the projects' volumes to its group
    (container,) = spec["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": False,
        "runAsUser": 0,
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"], "add": ["DAC_READ_SEARCH"]},
    }
    assert container["resources"] == values()["airlock"]["resources"]


def test_airlock_claim_service_and_secret(docs):
    import base64

    pvc = find(docs, "PersistentVolumeClaim", "datahavn-airlock")
    assert pvc["spec"] == {
        "accessModes": ["ReadWriteOnce"],
        "storageClassName": "standard",
        "resources": {"requests": {"storage": "20Gi"}},
    }
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    service = find(docs, "Service", "datahavn-airlock")["spec"]
    assert service["ports"] == [{"name": "http", "port": 8003, "targetPort": "http", "protocol": "TCP"}]
    assert selects({"matchLabels": service["selector"]}, airlock_pod(docs)["metadata"]["labels"])
    # the Service selects the airlock alone, not the audit service
    audit = find(docs, "Deployment", "datahavn-audit")["spec"]["template"]["metadata"]["labels"]
    assert not selects({"matchLabels": service["selector"]}, audit)
    secret = find(docs, "Secret", "datahavn-airlock")["data"]
    assert {k: base64.b64decode(v).decode() for k, v in secret.items()} == {
        "api-token": yaml.safe_load(LINT_VALUES.read_text())["airlock"]["apiToken"]
    }


def test_airlock_network_policies(chart, docs, settings):
    pod = airlock_pod(docs)
    labels = pod["metadata"]["labels"]
    policy = find(docs, "NetworkPolicy", "datahavn-airlock")["spec"]
    assert selects(policy["podSelector"], labels) and policy["policyTypes"] == ["Ingress", "Egress"]
    # in: user servers (their server's token), the proxy (checkers' page), the hub; on 8003 only
    assert policy["ingress"] == [
        {
            "from": [
                {"podSelector": {"matchLabels": {"component": "singleuser-server"}}},
                {"podSelector": {"matchLabels": {"app": "jupyterhub", "component": "proxy"}}},
                HUB[0],
            ],
            "ports": tcp(8003),
        }
    ]
    assert admits(docs, labels, server_pod(settings, "alice", "brca")["metadata"]["labels"], 8003)
    assert not admits(docs, labels, dask_pods(settings, "alice", "brca")[1]["metadata"]["labels"], 8003)
    assert not admits(
        docs, labels, find(docs, "Deployment", "datahavn-audit")["spec"]["template"]["metadata"]["labels"], 8003
    )
    # out: the hub API, the audit store's database and DNS; nothing else
    assert_confined(docs, pod, [HUB, POSTGRESQL, DNS])
    rules = egress_rules(docs, labels)
    for target in (HUB, POSTGRESQL, DNS):
        assert {"to": [target[0]], "ports": target[1]} in rules, target
    # and the chart's PostgreSQL lets it in (NetworkPolicies add up), still with no way out
    postgres = find(docs, "StatefulSet", "datahavn-postgresql")["spec"]["template"]["metadata"]["labels"]
    assert admits(docs, postgres, labels, 5432)
    extra = find(docs, "NetworkPolicy", "datahavn-postgresql-from-airlock")["spec"]
    assert extra["policyTypes"] == ["Ingress"] and "egress" not in extra
    assert not admits(docs, postgres, server_pod(settings, "alice", "brca")["metadata"]["labels"], 5432)
    # an external database: there, and no PostgreSQL policy of ours
    external = render(chart, "audit.externalDatabase.url=postgresql+psycopg://u:p@db.example.org:5432/audit")
    egress = find(external, "NetworkPolicy", "datahavn-airlock")["spec"]["egress"]
    assert {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": tcp(5432)} in egress
    assert POSTGRESQL[0] not in [peer for rule in egress for peer in rule["to"]]
    assert not [d for d in external if d["kind"] == "NetworkPolicy" and "postgresql" in d["metadata"]["name"]]


def test_user_servers_may_reach_the_airlock(docs, settings):
    target = airlock_pod(docs)
    (container,) = target["spec"]["containers"]
    port = container["ports"][0]["containerPort"]
    workspaces = find(docs, "NetworkPolicy", "datahavn-workspaces")["spec"]
    rules = [
        r
        for r in workspaces["egress"]
        if {"protocol": "TCP", "port": port} in r.get("ports", [])
        and any(selects(peer.get("podSelector", {}), target["metadata"]["labels"]) for peer in r["to"])
    ]
    assert rules == [{"to": [AIRLOCK[0]], "ports": AIRLOCK[1]}]
    for project in settings.projects:
        assert {"to": [AIRLOCK[0]], "ports": AIRLOCK[1]} in egress_rules(
            docs, server_pod(settings, "alice", project)["metadata"]["labels"]
        )


def test_hub_registers_the_airlock_and_its_checkers(docs, tmp_path, monkeypatch):
    from datahavn.tokens import AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE

    hub = hub_config(tmp_path, monkeypatch, docs)
    services = {s["name"]: s for s in hub.services}
    assert services["datahavn-airlock"] == {
        "name": "datahavn-airlock",
        "url": f"http://datahavn-airlock.{NAMESPACE}:8003",
        "api_token": "airlock-token",
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": [AIRLOCK_REVIEW_SCOPE, AUDIT_SCOPE],
    }
    assert AIRLOCK_REVIEW_SCOPE == "custom:datahavn:airlock-review" and AIRLOCK_REVIEW_SCOPE in hub.custom_scopes
    roles = {r["name"]: r for r in hub.load_roles}
    assert roles["datahavn-airlock-checker"] == {
        "name": "datahavn-airlock-checker",
        "description": "Output checkers: review airlock export requests",
        "scopes": ["custom:datahavn:airlock-review", "access:services!service=datahavn-airlock"],
        "users": ["checker1", "checker2"],
        "groups": ["datahavn-airlock-checkers"],  # `datahavn airlock checker add` adds to it
    }
    # with an airlock, researchers reach its page (their requests, their downloads)
    assert "access:services!service=datahavn-airlock" in roles["user"]["scopes"]
    # researchers do not review: the scope is the checkers' only
    holders = [name for name, r in roles.items() if AIRLOCK_REVIEW_SCOPE in r.get("scopes", [])]
    assert holders == ["datahavn-airlock-checker"]
    assert len([s for s in hub.services if s["name"] == "datahavn-airlock"]) == 1


def test_airlock_requires_its_token(chart):
    result = helm(
        "template", RELEASE, str(chart), "-n", NAMESPACE, "--kube-version", kube_version(),
        "-f", str(LINT_VALUES), "--set", "airlock.apiToken=",
    )  # fmt: skip
    assert result.returncode != 0
    assert "airlock.apiToken is required" in result.stderr and "openssl rand" in result.stderr


def test_without_airlock(chart, tmp_path, monkeypatch):
    import kubernetes_validate

    # no token needed then
    docs = render(chart, "airlock.enabled=false", "airlock.apiToken=")
    for doc in docs:
        kubernetes_validate.validate(doc, kube_version(), strict=True)
    assert not [d for d in docs if "airlock" in d["metadata"]["name"]]
    assert not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "airlock"]
    assert "8003" not in yaml.safe_dump(docs)
    settings = kube.KubeSettings.from_dict(
        json.loads(find(docs, "ConfigMap", "datahavn-hub-config")["data"]["datahavn.json"])
    )
    assert settings.airlock_url is None and settings.checkers == ()
    assert_confined(docs, server_pod(settings, "alice", "brca"), [HUB, AUDIT, TRAEFIK, DNS])
    # the hub registers no airlock and no checker role (and needs no airlock token)
    hub = hub_config(tmp_path, monkeypatch, docs, airlock_token=None)
    assert "datahavn-airlock" not in {s["name"] for s in hub.services}
    assert "datahavn-airlock-checker" not in {r["name"] for r in hub.load_roles}


def test_without_dask_gateway(chart):
    docs = render(chart, "dask-gateway.enabled=false")
    assert not [d for d in docs if "dask" in d["metadata"]["name"]]
    settings = kube.KubeSettings.from_dict(
        json.loads(find(docs, "ConfigMap", "datahavn-hub-config")["data"]["datahavn.json"])
    )
    assert settings.gateway is None
    assert_confined(docs, server_pod(settings, "alice", "brca"), [HUB, AUDIT, AIRLOCK, DNS])


def test_readme_minimal_values_install(chart):
    example = CHART / "examples" / "minimal.yaml"
    assert example.read_text() in (CHART.parent / "README.md").read_text()  # the README shows this very file
    import kubernetes_validate

    docs = render(chart, values=(example,))
    for doc in docs:
        kubernetes_validate.validate(doc, kube_version(), strict=True)
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    assert claims == {"datahavn-brca-workspaces", "datahavn-airlock"}
