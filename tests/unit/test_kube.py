"""Datahavn on Kubernetes, the Python side, without a cluster.

The pure builders (``hub_config/kube.py``) are checked against literal dicts, as
kubespawner's tests check ``make_pod``. Where kubespawner and dask-gateway-server
are installed, the glue is checked too: KubeSpawner builds the real pod from our
settings, dask-gateway's controller the real worker pod, both valid Kubernetes
objects; the hub config file is loaded as zero-to-jupyterhub loads it.
"""

from __future__ import annotations

import asyncio
import copy
import json
import types

import pytest

from datahavn import grants, tokens
from datahavn.hub_config import kube

KUBE_VERSION = "1.32.0"

#: What the chart renders into datahavn.json (templates/hub/configmap.yaml).
SETTINGS = {
    "stateDir": "/srv/datahavn",
    "auditUrl": "http://datahavn-audit.dh:8002",
    "auditors": ["auditor"],
    "jupyterConfigMap": "datahavn-jupyter-config",
    "daskDefaults": {"maxWorkers": 4, "workerCores": {"default": 1, "max": 2}},
    "projects": {
        "brca": {
            "gid": 20001,
            "datasetsClaim": "datahavn-brca-datasets",
            "workspacesClaim": "datahavn-brca-workspaces",
            "dask": {"maxWorkers": 8, "maxCores": 16, "workerCores": {"max": 4}, "workerMemoryGiB": {"max": 16}},
        },
        "cardio": {
            "gid": None,
            "datasetsClaim": "cardio-datasets-nfs",
            "workspacesClaim": "datahavn-cardio-workspaces",
            "dask": {},
        },
    },
    "gateway": {
        "enabled": True,
        "address": "http://traefik-dh-dask-gateway.dh:80/services/dask-gateway",
        "proxyAddress": "gateway://traefik-dh-dask-gateway.dh:80",
        "publicAddress": "/services/dask-gateway/",
        "serviceUrl": "http://traefik-dh-dask-gateway.dh:80",
        "image": "reg/singleuser:1",
        "imagePullPolicy": "IfNotPresent",
    },
}
ALICE_BRCA_UID = 379146951
SC_ALICE_BRCA = (
    {
        "runAsNonRoot": True,
        "runAsUser": ALICE_BRCA_UID,
        "runAsGroup": 20001,
        "supplementalGroups": [],
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    {
        "runAsNonRoot": True,
        "runAsUser": ALICE_BRCA_UID,
        "runAsGroup": 20001,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    },
)
BRCA_VOLUMES = [
    {"name": "datasets", "persistentVolumeClaim": {"claimName": "datahavn-brca-datasets", "readOnly": True}},
    {"name": "workspaces", "persistentVolumeClaim": {"claimName": "datahavn-brca-workspaces"}},
]
BRCA_MOUNTS = [
    {"name": "datasets", "mountPath": "/srv/datahavn/projects/brca/data", "readOnly": True},
    {"name": "workspaces", "mountPath": "/srv/datahavn/projects/brca/work", "subPath": "work"},
    {"name": "workspaces", "mountPath": "/srv/datahavn/projects/brca/shared", "subPath": "shared"},
]
WS = "/srv/datahavn/projects/brca/work/alice"

#: what alice's brca server and her Dask workers both get
BRCA_ENV = {
    "HOME": WS,
    "USER": "dh-brca-alice",
    "SHELL": "/usr/sbin/nologin",
    "PYTHONNOUSERSITE": "1",
    "DATAHAVN_PROJECT": "brca",
    "DATAHAVN_PROJECT_DIR": "/srv/datahavn/projects/brca",
    "DATAHAVN_WORKSPACE": WS,
    "NUMBA_CACHE_DIR": f"{WS}/.cache/numba",
    "MPLCONFIGDIR": f"{WS}/.cache/matplotlib",
}


@pytest.fixture
def settings() -> kube.KubeSettings:
    return kube.KubeSettings.from_dict(SETTINGS)


# --- identity ------------------------------------------------------------------------


def run_kube_config(c, source) -> None:
    """Load the hub's Kubernetes config file ``source`` into ``c``, as zero-to-jupyterhub does, then close its store."""
    from datahavn.hub_config.audit import hub as audit_hub

    try:
        exec(compile(source.read_text(), str(source), "exec"), {"get_config": lambda: c, "__file__": str(source)})
    finally:
        store, audit_hub._store = audit_hub._store, None
        if store is not None:
            store.close()


def test_uid_rule_is_stable_per_pair_and_in_range():
    assert kube.workspace_uid("alice", "brca") == ALICE_BRCA_UID
    assert kube.workspace_uid("bob", "brca") == 686088469
    assert kube.workspace_uid("alice", "cardio") == 190291193
    assert kube.derived_gid("cardio") == 255210
    ids = {kube.workspace_uid(u, p) for u in ("alice", "bob", "carol") for p in ("brca", "cardio", "x")}
    assert len(ids) == 9
    assert all(kube.UID_MIN <= i < kube.UID_MIN + kube.UID_SPAN < 2**31 for i in ids)
    ident = kube.identity("alice", "brca", 20001)
    assert (ident.account, ident.uid, ident.gid) == ("dh-brca-alice", ALICE_BRCA_UID, 20001)
    with pytest.raises(ValueError):
        kube.workspace_uid("Alice", "brca")


def test_uid_clash_is_detected(monkeypatch):
    assert kube.uid_clashes("alice", "brca", ["alice", "bob", "carol"]) == []
    monkeypatch.setattr(kube.ids, "UID_SPAN", 1)  # every pair collides
    assert kube.uid_clashes("alice", "brca", ["alice", "bob", "carol"]) == ["bob", "carol"]


# --- settings --------------------------------------------------------------------------


def test_settings_parse(settings):
    brca, cardio = settings.project("brca"), settings.project("cardio")
    assert (brca.gid, cardio.gid) == (20001, 255210)
    assert brca.dask == kube.DaskLimits(max_workers=8, max_cores=16, worker_cores_max=4, worker_memory_gib_max=16)
    assert cardio.dask == kube.DaskLimits(max_workers=4)
    assert settings.auditors == ("auditor",)
    with pytest.raises(kube.KubeSettingsError, match="no volumes on this cluster"):
        settings.project("other")


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s["projects"]["cardio"].update(gid=20001), "would share gid 20001"),
        (lambda s: s["projects"]["cardio"].update(gid=kube.UID_MIN + 5), "uid range"),
        (lambda s: s["projects"]["cardio"].update(gid=0), "must be a whole number"),
        (lambda s: s["projects"].update({"Bad-Name": s["projects"]["cardio"]}), "invalid project name"),
        (lambda s: s["projects"]["brca"]["dask"].update(maxWorkerz=1), "unknown Dask setting 'maxWorkerz'"),
        (lambda s: s["projects"]["brca"]["dask"].update(workerCores={"default": 5, "max": 4}), "workerCores"),
        (lambda s: s["daskDefaults"].update(maxCores=1), "workerCores.max <= maxCores"),
        (lambda s: s["daskDefaults"].update(maxWorkers=-1), "positive number"),
        (lambda s: s["daskDefaults"].update(maxWorkers=2.5), "whole numbers"),
        (lambda s: s.pop("auditUrl"), "missing setting 'auditUrl'"),
    ],
)
def test_settings_refused(change, message):
    data = copy.deepcopy(SETTINGS)
    change(data)
    with pytest.raises(kube.KubeSettingsError, match=message):
        kube.KubeSettings.from_dict(data)


# --- the server pod ----------------------------------------------------------------------


def test_server_spec(settings):
    spec = kube.server_spec(settings, "alice", "brca", "reg/singleuser:1")
    init = spec.pop("init_containers")
    assert spec == {
        "uid": ALICE_BRCA_UID,
        "gid": 20001,
        "fs_gid": None,
        "supplemental_gids": [],
        "privileged": False,
        "allow_privilege_escalation": False,
        "pod_security_context": SC_ALICE_BRCA[0],
        "container_security_context": SC_ALICE_BRCA[1],
        "service_account": None,
        "automount_service_account_token": False,
        "storage_pvc_ensure": False,
        "volumes": BRCA_VOLUMES
        + [
            {"name": "jupyter-config", "configMap": {"name": "datahavn-jupyter-config", "defaultMode": 0o444}},
            {"name": "runtime", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "10Gi"}},
        ],
        "volume_mounts": BRCA_MOUNTS
        + [
            {"name": "jupyter-config", "mountPath": "/srv/datahavn/config/jupyter", "readOnly": True},
            {"name": "runtime", "mountPath": f"/run/datahavn/{ALICE_BRCA_UID}"},
            {"name": "tmp", "mountPath": "/tmp", "subPath": "tmp"},
            {"name": "tmp", "mountPath": "/var/tmp", "subPath": "var-tmp"},
        ],
        "extra_labels": {
            "component": "singleuser-server",
            "hub.jupyter.org/network-access-hub": "true",
            "datahavn/project": "brca",
            "datahavn/account": "dh-brca-alice",
        },
        "environment": {
            **BRCA_ENV,
            "JUPYTER_CONFIG_DIR": "/srv/datahavn/config/jupyter",
            "JUPYTER_PREFER_ENV_PATH": "1",
            "JUPYTERLAB_SETTINGS_DIR": f"{WS}/.jupyter/lab/user-settings",
            "JUPYTERLAB_WORKSPACES_DIR": f"{WS}/.jupyter/lab/workspaces",
            "JUPYTER_RUNTIME_DIR": f"/run/datahavn/{ALICE_BRCA_UID}",
            "DATAHAVN_AUDIT_URL": "http://datahavn-audit.dh:8002/services/datahavn-audit/",
            "DATAHAVN_SANDBOX": "pod",
            "DASK_GATEWAY__ADDRESS": "http://traefik-dh-dask-gateway.dh:80/services/dask-gateway",
            "DASK_GATEWAY__PROXY_ADDRESS": "gateway://traefik-dh-dask-gateway.dh:80",
            "DASK_GATEWAY__PUBLIC_ADDRESS": "/services/dask-gateway/",
            "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
        },
        "extra_pod_config": {"enableServiceLinks": False, "shareProcessNamespace": False},
        "notebook_dir": WS,
        "working_dir": WS,
        "disable_user_config": True,
        "default_url": "/lab",
    }
    assert init == [
        {
            "name": "workspace",
            "image": "reg/singleuser:1",
            "command": ["/bin/sh", "-c", kube.WORKSPACE_INIT],
            "env": [{"name": "DATAHAVN_WORKSPACE", "value": WS}],
            "securityContext": SC_ALICE_BRCA[1],
            "volumeMounts": BRCA_MOUNTS[1:],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
        }
    ]
    # KubeSpawner expands {name} templates in these strings: there must be none
    assert not any("{" in text for text in [kube.WORKSPACE_INIT, WS, *spec["environment"].values()])


def test_server_spec_without_gateway_and_for_another_project(settings):
    data = copy.deepcopy(SETTINGS)
    data["gateway"] = {"enabled": False}
    spec = kube.server_spec(kube.KubeSettings.from_dict(data), "bob", "cardio", "img")
    assert not any(k.startswith("DASK_GATEWAY") for k in spec["environment"])
    assert [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v] == [
        "cardio-datasets-nfs",
        "datahavn-cardio-workspaces",
    ]
    assert spec["uid"] == kube.workspace_uid("bob", "cardio") == 888040328
    assert spec["gid"] == spec["pod_security_context"]["runAsGroup"] == 255210


def test_workspace_init_script(tmp_path):
    """The init container's script, run here: creates the folder private, refuses someone else's."""
    import subprocess

    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "data").mkdir()
    ws = work / "alice"
    run = lambda: subprocess.run(  # noqa: E731
        ["/bin/sh", "-c", kube.WORKSPACE_INIT], env={"DATAHAVN_WORKSPACE": str(ws), "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert run().returncode == 0
    assert oct(ws.stat().st_mode & 0o777) == "0o700"
    assert (ws / "data").resolve() == tmp_path / "data" and (ws / "shared").is_symlink()
    assert run().returncode == 0  # idempotent
    for entry in ws.iterdir():
        entry.unlink()
    ws.rmdir()
    ws.symlink_to(tmp_path / "data")  # a planted link is not a workspace
    result = run()
    assert result.returncode == 1 and "not this workspace's own folder" in result.stderr


# --- dask-gateway ----------------------------------------------------------------------


def test_server_identity():
    server = {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/brca", "users:activity!user"]}
    assert tokens.server_identity(server) == ("alice", "brca")
    person = {"kind": "user", "name": "alice", "scopes": ["access:servers!user=alice", "servers!user=alice"]}
    two = {**server, "scopes": ["access:servers!server=alice/brca", "access:servers!server=alice/cardio"]}
    someone_elses = {**server, "name": "bob"}
    service = {**server, "kind": "service"}
    bad_name = {**server, "scopes": ["access:servers!server=alice/Bad-Name"]}
    for model in (person, two, someone_elses, service, bad_name, {}):
        assert tokens.server_identity(model) is None
    assert kube.gateway_user("alice", "brca") == ("dh-brca-alice", ["dh-brca"])


def test_dask_option_fields(settings):
    assert kube.dask_option_fields(settings.project("brca").dask) == [
        {"kind": "float", "field": "worker_cores", "default": 1, "min": 0.1, "max": 4, "label": "Worker cores"},
        {
            "kind": "float",
            "field": "worker_memory",
            "default": 2.0,
            "min": 0.25,
            "max": 16,
            "label": "Worker memory (GiB)",
        },
    ]


def test_cluster_config(settings):
    gib = 1 << 30
    pod_common = {
        "securityContext": SC_ALICE_BRCA[0],
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    labels = {"datahavn/project": "brca", "datahavn/account": "dh-brca-alice"}
    assert kube.cluster_config(settings, "alice", "brca", {"worker_cores": 2.0, "worker_memory": 4.0}) == {
        "image": "reg/singleuser:1",
        "image_pull_policy": "IfNotPresent",
        "environment": BRCA_ENV,
        "worker_cores": 2.0,
        "worker_cores_limit": 2.0,
        "worker_memory": 4 * gib,
        "worker_memory_limit": 4 * gib,
        "scheduler_cores": 1.0,
        "scheduler_cores_limit": 1.0,
        "scheduler_memory": 2 * gib,
        "scheduler_memory_limit": 2 * gib,
        "cluster_max_workers": 8,
        "cluster_max_cores": 16,
        "cluster_max_memory": 32 * gib,
        "idle_timeout": 1800.0,
        "scheduler_extra_pod_labels": labels,
        "worker_extra_pod_labels": labels,
        "scheduler_extra_pod_config": pod_common,
        "scheduler_extra_container_config": {"securityContext": SC_ALICE_BRCA[1]},
        "worker_extra_pod_config": {**pod_common, "volumes": BRCA_VOLUMES},
        "worker_extra_container_config": {
            "securityContext": SC_ALICE_BRCA[1],
            "volumeMounts": BRCA_MOUNTS,
            "workingDir": WS,
        },
    }


@pytest.mark.parametrize(
    "options, message",
    [
        ({"worker_cores": 4.5}, "up to 4 cores"),
        ({"worker_memory": 17}, "16 GiB"),
        ({"worker_cores": 0}, "up to"),
        ({"project": "cardio"}, "the project is not an option"),
        ({"image": "evil"}, "not an option"),
    ],
)
def test_cluster_config_refuses(settings, options, message):
    with pytest.raises(kube.KubeSettingsError, match=message):
        kube.cluster_config(settings, "alice", "brca", options)


# --- glue: KubeSpawner --------------------------------------------------------------------


def to_dict(obj) -> dict:
    from kubernetes_asyncio.client import ApiClient

    async def serialize():
        async with ApiClient() as api:
            return api.sanitize_for_serialization(obj)

    return asyncio.run(serialize())


@pytest.fixture
def hub_db():
    """An in-memory JupyterHub database: alice and bob in brca with grant records; cardio empty."""
    from jupyterhub import orm

    db = orm.new_session_factory("sqlite://")()
    alice, bob = orm.User(name="alice"), orm.User(name="bob")
    props = grants.new_project_properties("d", by="admin")
    for user in ("alice", "bob"):
        props = grants.with_grant(props, user, None, "r", "admin")
    brca = orm.Group(name="brca", properties=props)
    brca.users = [alice, bob]
    cardio = orm.Group(name="cardio", properties=grants.new_project_properties("d", by="admin"))
    db.add_all([alice, bob, brca, cardio])
    db.commit()
    yield db
    db.close()


@pytest.fixture
def make_spawner(tmp_path, monkeypatch, hub_db):
    import kubespawner.spawner

    from datahavn.hub_config.audit import hub as audit_hub
    from datahavn.hub_config.spawners import kube as kube_spawner

    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kw: None)
    monkeypatch.setattr(kubespawner.spawner, "shared_client", lambda name: None)
    events = []
    monkeypatch.setattr(audit_hub, "record", lambda kind, **f: events.append({"kind": kind, **f}))
    path = tmp_path / "datahavn.json"
    path.write_text(json.dumps(SETTINGS))

    def make(user: str, project: str):
        orm_user = hub_db.query(__import__("jupyterhub").orm.User).filter_by(name=user).one()
        fake_user = types.SimpleNamespace(name=user, id=orm_user.id, url=f"/user/{user}/", db=hub_db)
        orm_spawner = types.SimpleNamespace(name=project, display_name=project, server=None)
        sp = kube_spawner.KubeProjectSpawner(_mock=True, user=fake_user, orm_spawner=orm_spawner, db=hub_db)
        sp.datahavn_settings = str(path)
        sp.image = "reg/singleuser:1"
        sp.audit_events = events
        return sp

    return make


def validate(doc: dict) -> None:
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_kubespawner_builds_the_project_pod(make_spawner):
    sp = make_spawner("alice", "brca")
    sp.environment = {"FROM_CHART": "1"}
    sp.apply_project()
    pod = to_dict(asyncio.run(sp.get_pod_manifest()))
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    validate(pod)
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert spec["securityContext"] == SC_ALICE_BRCA[0]
    (notebook,) = spec["containers"]
    assert notebook["securityContext"] == SC_ALICE_BRCA[1]
    assert [c["securityContext"]["runAsUser"] for c in spec["initContainers"]] == [ALICE_BRCA_UID]
    claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert claims == ["datahavn-brca-datasets", "datahavn-brca-workspaces"]
    assert {"component": "singleuser-server", "datahavn/project": "brca"}.items() <= pod["metadata"]["labels"].items()
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert env["FROM_CHART"] == "1" and env["DATAHAVN_PROJECT"] == "brca" and env["USER"] == "dh-brca-alice"
    assert notebook["workingDir"] == WS


def test_kubespawner_refuses_without_a_grant(make_spawner):
    from datahavn.hub_config.spawners.base import WorkspaceError

    for user, project, status, text in [
        ("alice", "cardio", 403, "you have not been granted access"),
        ("alice", "", 400, "belong to projects"),
        ("alice", "nowhere", 403, "not been granted"),
    ]:
        sp = make_spawner(user, project)
        with pytest.raises(WorkspaceError) as e:
            asyncio.run(sp.start())
        assert e.value.status_code == status and text in e.value.jupyterhub_message
    assert [ev["kind"] for ev in sp.audit_events] == ["spawn_refused"] * 3


def test_kubespawner_refuses_a_project_without_volumes_or_a_clashing_uid(make_spawner, hub_db, monkeypatch):
    from jupyterhub import orm

    from datahavn.hub_config.spawners.base import WorkspaceError

    hub_db.add(orm.Group(name="other", properties=grants.new_project_properties("d", by="a")))
    hub_db.query(orm.Group).filter_by(name="other").one().users = [hub_db.query(orm.User).filter_by(name="alice").one()]
    hub_db.commit()
    with pytest.raises(WorkspaceError, match="no volumes on this cluster") as e:
        asyncio.run(make_spawner("alice", "other").start())
    assert e.value.status_code == 500
    monkeypatch.setattr(kube.ids, "UID_SPAN", 1)
    with pytest.raises(WorkspaceError, match="collides with bob"):
        asyncio.run(make_spawner("alice", "brca").start())


def test_kubespawner_stops_a_revoked_workspace_at_poll(make_spawner, hub_db, monkeypatch):
    import kubespawner
    from jupyterhub import orm

    stopped = []

    async def running(self):
        return None

    async def stop(self, now=False):
        stopped.append(now)

    monkeypatch.setattr(kubespawner.KubeSpawner, "poll", running)
    monkeypatch.setattr(kubespawner.KubeSpawner, "stop", stop)
    sp = make_spawner("bob", "brca")
    assert asyncio.run(sp.poll()) is None and stopped == []
    group = hub_db.query(orm.Group).filter_by(name="brca").one()
    group.users = [u for u in group.users if u.name != "bob"]  # removed on the admin page
    hub_db.commit()
    assert asyncio.run(sp.poll()) == 0
    assert stopped == [True]
    assert sp.audit_events[-1]["kind"] == "stop" and sp.audit_events[-1]["detail"] == "grant revoked"


# --- glue: the hub config file ------------------------------------------------------------


def test_hub_config_file_on_top_of_zero_to_jupyterhub(tmp_path, monkeypatch):
    from pathlib import Path

    from traitlets.config import Config

    from datahavn.hub_config.spawners.kube import KubeProjectSpawner
    from datahavn.tokens import AUDIT_SCOPE

    data = copy.deepcopy(SETTINGS)
    data["stateDir"] = str(tmp_path)
    (tmp_path / "hub" / "secrets").mkdir(parents=True)
    (tmp_path / "hub" / "secrets" / "audit-key").write_text("ab" * 32)
    (tmp_path / "datahavn.json").write_text(json.dumps(data))
    monkeypatch.setenv("DATAHAVN_SETTINGS", str(tmp_path / "datahavn.json"))
    monkeypatch.setenv("DATAHAVN_AUDIT_API_TOKEN", "t" * 40)
    monkeypatch.setenv("DATAHAVN_AUDIT_DB_URL", f"sqlite:///{tmp_path}/audit.sqlite")
    c = Config()
    # what zero-to-jupyterhub has set by then (hub.services, hub.loadRoles, hub.config)
    c.JupyterHub.services = [{"name": "dask-gateway", "api_token": "x", "display": False}]
    c.JupyterHub.load_roles = [{"name": "z2jh-role", "scopes": ["read:users"]}]
    c.JupyterHub.tornado_settings = {"headers": {"X": "1"}}
    source = Path(__file__).resolve().parents[2] / "hub_config" / "kube_config.py"
    run_kube_config(c, source)
    hub = c.JupyterHub
    assert hub.spawner_class is KubeProjectSpawner and hub.allow_named_servers is True
    assert c.Spawner.disable_user_config is True and c.KubeSpawner.automount_service_account_token is False
    services = {s["name"]: s for s in hub.services}
    assert services["dask-gateway"]["url"] == "http://traefik-dh-dask-gateway.dh:80"
    assert services["datahavn-audit"]["url"] == "http://datahavn-audit.dh:8002"
    assert services["datahavn-audit"]["api_token"] == "t" * 40
    roles = {r["name"]: r for r in hub.load_roles}
    assert "z2jh-role" in roles
    assert not any(s.startswith("tokens") for s in roles["user"]["scopes"])
    assert roles["datahavn-auditor"]["users"] == ["auditor"]
    assert roles["datahavn-dask-gateway"] == {
        "name": "datahavn-dask-gateway",
        "scopes": ["read:groups"],
        "services": ["dask-gateway"],
    }
    assert AUDIT_SCOPE in hub.custom_scopes
    assert hub.tornado_settings["headers"] == {"X": "1"} and callable(hub.tornado_settings["log_function"])


# --- glue: dask-gateway -------------------------------------------------------------------


@pytest.fixture
def gateway(monkeypatch, settings):
    from datahavn.hub_config.kube import gateway as kube_gateway

    async def current():
        return settings

    monkeypatch.setattr(kube_gateway.settings, "get", current)
    return kube_gateway


def make_authenticator(gw, answers: dict):
    auth = gw.ProjectGatewayAuthenticator(
        jupyterhub_api_url="http://hub:8081/hub/api", jupyterhub_api_token="gateway-token"
    )
    asked = []

    async def hub_get(path, token):
        asked.append((path, token))
        return answers.get((path, token), (404, None))

    auth._hub_get = hub_get
    auth.asked = asked
    return auth


def request_with(token: str):
    return types.SimpleNamespace(headers={"Authorization": f"jupyterhub {token}"})


def test_gateway_accepts_a_workspace_token_with_a_current_grant(gateway, settings):
    from aiohttp import web

    props = grants.with_grant(grants.new_project_properties("d", by="admin"), "alice", None, "r", "admin")
    server_model = {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/brca"]}
    person_model = {"kind": "user", "name": "alice", "scopes": ["access:servers!user=alice", "tokens!user=alice"]}
    group = {"name": "brca", "users": ["alice"], "properties": props}
    auth = make_authenticator(
        gateway,
        {
            ("/user", "srv"): (200, server_model),
            ("/user", "personal"): (200, person_model),
            ("/groups/brca", "gateway-token"): (200, group),
        },
    )
    user = asyncio.run(auth.authenticate(request_with("srv")))
    assert (user.name, user.groups, user.admin) == ("dh-brca-alice", {"dh-brca"}, False)
    assert auth.asked == [("/user", "srv"), ("/groups/brca", "gateway-token")]
    with pytest.raises(web.HTTPForbidden):
        asyncio.run(auth.authenticate(request_with("personal")))
    with pytest.raises(web.HTTPUnauthorized):
        asyncio.run(auth.authenticate(request_with("unknown")))
    group["users"] = []  # revoked
    with pytest.raises(web.HTTPForbidden, match="No current grant"):
        asyncio.run(auth.authenticate(request_with("srv")))

    # its clusters: options within the project's bounds; everything else pinned by the project
    options = asyncio.run(gateway.cluster_options(gateway.ProjectUser("alice", "brca")))
    chosen = options.parse_options({"worker_cores": 3.0})
    assert options.get_configuration(chosen, gateway.ProjectUser("alice", "brca")) == kube.cluster_config(
        settings, "alice", "brca", {"worker_cores": 3.0, "worker_memory": 2.0}
    )
    for bad in ({"worker_cores": 5.0}, {"project": "cardio"}, {"image": "evil"}):
        with pytest.raises(ValueError):
            options.parse_options(bad)


def dask_pod(settings, user: str, project: str, worker: bool = True) -> dict:
    """The pod dask-gateway's controller makes for our cluster config."""
    from dask_gateway_server.backends.kubernetes.backend import KubeClusterConfig
    from dask_gateway_server.backends.kubernetes.controller import KubeController

    controller = KubeController(gateway_instance="dh-dask-gateway", api_url="http://api-dh-dask-gateway.dh:8000/api")
    config = KubeClusterConfig(**kube.cluster_config(settings, user, project, {}))
    pod = controller.make_pod("dh", "c0ffee", config, is_worker=worker)
    pod["metadata"]["name"] = pod["metadata"].get("name") or pod["metadata"]["generateName"] + "x"
    return pod


def test_dask_gateway_builds_project_pods(gateway, settings):
    for worker in (True, False):
        pod = dask_pod(settings, "alice", "brca", worker)
        validate(pod)
        spec = pod["spec"]
        assert spec["securityContext"] == SC_ALICE_BRCA[0]
        assert spec["containers"][0]["securityContext"] == SC_ALICE_BRCA[1]
        assert spec["automountServiceAccountToken"] is False
        labels = pod["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "dask-gateway" and labels["datahavn/project"] == "brca"
        claims = [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v]
        assert claims == (["datahavn-brca-datasets", "datahavn-brca-workspaces"] if worker else [])


def test_gateway_configure():
    from traitlets.config import Config

    from datahavn.hub_config.kube import gateway as kube_gateway

    c = Config()
    kube_gateway.configure(c)
    assert c.DaskGateway.authenticator_class is kube_gateway.ProjectGatewayAuthenticator
    assert c.Backend.cluster_options is kube_gateway.cluster_options
    assert c.JupyterHubAuthenticator.use_service_access_scopes is False
    assert c.Authenticator.cache_max_age == 60
