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
        "proxyAddress": "tls://traefik-dh-dask-gateway.dh:80",
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
            # no DATAHAVN_DASK_*: the spawner adds them, with a token (test_kubespawner_gives_the_pod_its_dask_token)
            "DATAHAVN_SANDBOX": "pod",
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
    without = kube.KubeSettings.from_dict(data)
    spec = kube.server_spec(without, "bob", "cardio", "img")
    assert not any(k.startswith(("DASK_", "DATAHAVN_DASK")) for k in spec["environment"])
    assert kube.dask_engine(without) == ("local", "", "")
    assert kube.dask_engine(settings) == (
        "kubernetes", "http://traefik-dh-dask-gateway.dh:80/services/dask-gateway", "tls://traefik-dh-dask-gateway.dh:80"
    )  # fmt: skip
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


def test_dask_identity():
    """Only a workspace's Dask token names a (user, project) to the gateway; a server's own token does not."""
    dask = {"kind": "user", "name": "alice", "scopes": [tokens.dask_token_scope("alice", "brca")]}
    assert tokens.dask_token_scope("alice", "brca") == "custom:datahavn:dask!server=alice/brca"
    assert tokens.dask_identity(dask) == ("alice", "brca")
    server = {**dask, "scopes": ["access:servers!server=alice/brca", "users:activity!user"]}
    person = {**dask, "scopes": ["access:servers!user=alice", "servers!user=alice", "custom:datahavn:dask!user"]}
    two = {**dask, "scopes": [tokens.dask_token_scope("alice", "brca"), tokens.dask_token_scope("alice", "cardio")]}
    someone_elses = {**dask, "name": "bob"}
    service = {**dask, "kind": "service"}
    bad_name = {**dask, "scopes": ["custom:datahavn:dask!server=alice/Bad-Name"]}
    for model in (server, person, two, someone_elses, service, bad_name, {}):
        assert tokens.dask_identity(model) is None, model
    assert kube.gateway_user("alice", "brca") == ("dh-brca-alice", ["dh-brca"])


def test_dask_option_fields(settings):
    from datahavn.hub_config.dask.limits import option_fields

    assert option_fields(settings.project("brca").dask) == [
        {"kind": "float", "field": "worker_cores", "default": 1, "min": 0.1, "max": 4, "label": "Worker cores"},
        {"kind": "float", "field": "worker_memory", "default": 2.0, "min": 0.25, "max": 16,
         "label": "Worker memory (GiB)"},
        {"kind": "int", "field": "workers", "default": 0, "min": 0, "max": 8, "label": "Workers"},
    ]  # fmt: skip
    assert not hasattr(kube, "dask_option_fields")  # one rule for every engine: ..dask.limits


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
        "environment": {**BRCA_ENV, "DATAHAVN_USER": "alice"},
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
        ({"worker_cores": 4.5}, r"worker_cores=4.5 is outside project brca's limits \(0.1..4\)"),
        ({"worker_memory": 17}, r"worker_memory=17 is outside project brca's limits \(0.25..16\)"),
        ({"worker_cores": 0}, "outside project brca's limits"),
        ({"workers": 9}, r"workers=9 is outside project brca's limits \(0..8\)"),
        ({"workers": 2.5}, "workers must be a whole number"),
        ({"workers": 8, "worker_cores": 4}, r"8 workers of 4 cores and 2 GiB, with the scheduler's 1 and 2 GiB"),
        ({"workers": 5, "worker_memory": 16}, r"exceed project brca's limits \(16 cores, 32 GiB in all\)"),
        ({"worker_cores": True}, "worker_cores must be a number"),
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
    db.add_all([alice, bob, brca, cardio, orm.OAuthClient(identifier="jupyterhub")])
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

    minted = []

    def make(user: str, project: str):
        from jupyterhub import orm

        orm_user = hub_db.query(orm.User).filter_by(name=user).one()

        def new_api_token(scopes, note):
            """As JupyterHub's User.new_api_token, without its scope checks (the hub's roles are not loaded here)."""
            token = f"dask-token-{len(minted)}"
            row = orm.APIToken(note=note, scopes=list(scopes), client_id="jupyterhub")
            row.token = token
            orm_user.api_tokens.append(row)
            hub_db.commit()
            minted.append({"user": user, "scopes": list(scopes), "note": note, "token": token})
            return token

        fake_user = types.SimpleNamespace(name=user, id=orm_user.id, url=f"/user/{user}/", db=hub_db,
                                          orm_user=orm_user, new_api_token=new_api_token)  # fmt: skip
        orm_spawner = types.SimpleNamespace(name=project, display_name=project, server=None)
        sp = kube_spawner.KubeProjectSpawner(_mock=True, user=fake_user, orm_spawner=orm_spawner, db=hub_db)
        sp.datahavn_settings = str(path)
        sp.image = "reg/singleuser:1"
        sp.audit_events = events
        sp.minted = minted
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


def dask_tokens(hub_db, user: str) -> list[str]:
    from jupyterhub import orm

    return [t.note for t in hub_db.query(orm.User).filter_by(name=user).one().api_tokens]


def test_kubespawner_gives_the_pod_its_dask_token(make_spawner, hub_db):
    """With the chart's gateway: the kernels' four DATAHAVN_DASK_* variables, the token minted for this pair only."""
    sp = make_spawner("alice", "brca")
    sp.environment = {"FROM_CHART": "1", "DATAHAVN_DASK_ENGINE": "local"}  # ours win
    sp.apply_project()
    assert sp.minted == [{"user": "alice", "scopes": ["custom:datahavn:dask!server=alice/brca"],
                          "note": "datahavn dask-gateway: brca", "token": "dask-token-0"}]  # fmt: skip
    dask = {k: v for k, v in sp.environment.items() if k.startswith("DATAHAVN_DASK")}
    assert dask == {
        "DATAHAVN_DASK_ENGINE": "kubernetes",
        "DATAHAVN_DASK_GATEWAY": "http://traefik-dh-dask-gateway.dh:80/services/dask-gateway",
        "DATAHAVN_DASK_PROXY": "tls://traefik-dh-dask-gateway.dh:80",
        "DATAHAVN_DASK_TOKEN": "dask-token-0",
    }
    assert sp.environment["FROM_CHART"] == "1" and sp.environment["DATAHAVN_PROJECT"] == "brca"
    # in the pod KubeSpawner makes; the kernels keep them (the sandbox's allow-list)
    from datahavn.extensions.sandbox import KEEP

    (notebook,) = to_dict(asyncio.run(sp.get_pod_manifest()))["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in notebook["env"]}
    assert dask.items() <= env.items() and set(dask) <= set(KEEP)
    # a restart replaces the token; dropping it (at every halt: test_kubespawner_stop_drops_the_dask_token) deletes it
    sp.apply_project()
    assert sp.environment["DATAHAVN_DASK_TOKEN"] == "dask-token-1"
    assert dask_tokens(hub_db, "alice") == ["datahavn dask-gateway: brca"]
    sp.drop_dask_token()
    assert dask_tokens(hub_db, "alice") == []


def test_kubespawner_without_a_gateway_runs_dask_in_the_kernel(make_spawner, tmp_path):
    data = copy.deepcopy(SETTINGS)
    data["gateway"] = {"enabled": False}
    sp = make_spawner("bob", "brca")
    sp.datahavn_settings = str(tmp_path / "no-gateway.json")
    (tmp_path / "no-gateway.json").write_text(json.dumps(data))
    sp.apply_project()
    assert {k: v for k, v in sp.environment.items() if "DASK" in k} == {"DATAHAVN_DASK_ENGINE": "local"}
    assert sp.minted == []


def test_kubespawner_stop_drops_the_dask_token(make_spawner, hub_db, monkeypatch):
    import kubespawner

    async def stop(self, now=False):
        pass

    monkeypatch.setattr(kubespawner.KubeSpawner, "stop", stop)
    sp = make_spawner("bob", "brca")
    sp.apply_project()
    assert dask_tokens(hub_db, "bob") == ["datahavn dask-gateway: brca"]
    asyncio.run(sp.stop())
    assert dask_tokens(hub_db, "bob") == [] and sp.audit_events[-1]["kind"] == "stop"


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
    # registered for its API token only: the hub does not proxy the gateway (nor its clusters' dashboards)
    assert services["dask-gateway"] == {"name": "dask-gateway", "api_token": "x", "display": False}
    assert services["datahavn-audit"]["url"] == "http://datahavn-audit.dh:8002"
    assert services["datahavn-audit"]["api_token"] == "t" * 40
    roles = {r["name"]: r for r in hub.load_roles}
    assert "z2jh-role" in roles
    assert not any(s.startswith("tokens") for s in roles["user"]["scopes"])
    assert roles["datahavn-auditor"]["users"] == ["auditor"]
    assert roles["datahavn-dask-gateway"] == {
        "name": "datahavn-dask-gateway",
        "scopes": ["read:groups", "read:servers"],
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
    dask_model = {"kind": "user", "name": "alice", "scopes": [tokens.dask_token_scope("alice", "brca")]}
    # the server's own token (what dask-gateway's JupyterHub auth took before) opens nothing here
    server_model = {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/brca"]}
    person_model = {"kind": "user", "name": "alice", "scopes": ["access:servers!user=alice", "tokens!user=alice"]}
    group = {"name": "brca", "users": ["alice"], "properties": props}
    auth = make_authenticator(
        gateway,
        {
            ("/user", "dask"): (200, dask_model),
            ("/user", "srv"): (200, server_model),
            ("/user", "personal"): (200, person_model),
            ("/groups/brca", "gateway-token"): (200, group),
        },
    )
    user = asyncio.run(auth.authenticate(request_with("dask")))
    assert (user.name, user.groups, user.admin) == ("dh-brca-alice", {"dh-brca"}, False)
    assert (user.datahavn_user, user.datahavn_project) == ("alice", "brca")
    assert auth.asked == [("/user", "dask"), ("/groups/brca", "gateway-token")]
    for other in ("srv", "personal"):
        with pytest.raises(web.HTTPForbidden, match="Dask token"):
            asyncio.run(auth.authenticate(request_with(other)))
    with pytest.raises(web.HTTPUnauthorized):
        asyncio.run(auth.authenticate(request_with("unknown")))
    group["users"] = []  # revoked
    with pytest.raises(web.HTTPForbidden, match="No current grant"):
        asyncio.run(auth.authenticate(request_with("dask")))

    # its clusters: options within the project's bounds; everything else pinned by the project
    alice = gateway.ProjectUser("alice", "brca")
    options = asyncio.run(gateway.cluster_options(alice))
    assert [f.field for f in options.fields] == ["worker_cores", "worker_memory", "workers"]
    chosen = options.parse_options({"worker_cores": 3.0, "workers": 4})
    assert options.get_configuration(chosen, alice) == kube.cluster_config(
        settings, "alice", "brca", {"worker_cores": 3.0, "worker_memory": 2.0, "workers": 4}
    )
    for bad in ({"worker_cores": 5.0}, {"workers": 9}, {"project": "cardio"}, {"image": "evil"}):
        with pytest.raises(ValueError):
            options.parse_options(bad)
    # each size within its bound, together beyond the project's: refused by the handler (the gateway: 422)
    with pytest.raises(kube.KubeSettingsError, match="exceed project brca's limits"):
        options.get_configuration(options.parse_options({"worker_cores": 4.0, "workers": 8}), alice)
    # a user the gateway did not make from a workspace's token has no options
    with pytest.raises(web.HTTPForbidden):
        asyncio.run(gateway.cluster_options(types.SimpleNamespace(name="dh-brca-alice")))


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
    # what the dask-gateway chart's own config has set by then
    c.DaskGateway.backend_class = "dask_gateway_server.backends.kubernetes.KubeBackend"
    c.KubeBackend.gateway_instance = "dh-dask-gateway"
    kube_gateway.configure(c)
    assert c.DaskGateway.authenticator_class is kube_gateway.ProjectGatewayAuthenticator
    assert c.DaskGateway.backend_class == "datahavn.hub_config.dask.kube_backend.DatahavnKubeBackend"
    assert c.Backend.cluster_options is kube_gateway.cluster_options
    assert c.JupyterHubAuthenticator.use_service_access_scopes is False
    assert 0 < c.Authenticator.cache_max_age <= 60
    # the chart's KubeBackend settings reach Datahavn's subclass
    from traitlets import import_item

    backend = import_item(c.DaskGateway.backend_class)(config=c)
    assert backend.gateway_instance == "dh-dask-gateway" and backend.cluster_options is kube_gateway.cluster_options


# --- glue: the gateway's Kubernetes backend (records, the grant watch, who a cluster is) ----------


def test_spec_identity():
    from datahavn.hub_config.dask.kube_backend import spec_identity

    env = {"DATAHAVN_USER": "alice", "DATAHAVN_PROJECT": "brca"}
    assert spec_identity("dh-brca-alice", env) == ("alice", "brca")
    for username, environment in [
        ("dh-cardio-alice", env),  # the gateway user of another pair
        ("dh-brca-bob", env),
        ("dh-brca-alice", {"DATAHAVN_PROJECT": "brca"}),  # a cluster of the old config, or of no workspace
        ("dh-brca-alice", {}),
        ("dh-Bad-alice", {"DATAHAVN_USER": "alice", "DATAHAVN_PROJECT": "Bad"}),
    ]:
        assert spec_identity(username, environment) == (None, None), (username, environment)


class FakeCustomObjects:
    """The DaskCluster objects the backend creates and patches (the Kubernetes API's CustomObjectsApi)."""

    def __init__(self):
        self.created, self.patched = [], []

    async def create_namespaced_custom_object(self, group, version, namespace, plural, obj):
        self.created.append({**obj, "metadata": {**obj["metadata"], "namespace": namespace}})

    async def patch_namespaced_custom_object(self, group, version, namespace, plural, name, patch):
        self.patched.append((f"{namespace}.{name}", patch))


@pytest.fixture
def kube_backend(gateway, monkeypatch):
    """Datahavn's KubeBackend as the gateway sets it, on a fake API, its records collected."""
    from traitlets.config import Config

    from datahavn.hub_config.audit import hub as audit_hub
    from datahavn.hub_config.dask.kube_backend import DatahavnKubeBackend

    records = []

    def record(kind, strict=False, **fields):
        if getattr(record, "fail", False):
            raise audit_hub.AuditUnavailable("test")
        records.append({"kind": kind, "strict": strict, **fields})

    monkeypatch.setattr(audit_hub, "record", record)
    c = Config()
    c.KubeClusterConfig.namespace = "dh"  # the chart's: the release's namespace
    backend = DatahavnKubeBackend(config=c, gateway_instance="dh-dask-gateway", cluster_options=gateway.cluster_options)
    backend.custom_client = FakeCustomObjects()
    backend.clusters = {}
    backend.records, backend.record_hook = records, record
    return backend


def cached(backend, obj, status="RUNNING"):
    """The cluster as KubeBackend's cache holds it once the API server reported the object (sync_cluster)."""
    from dask_gateway_server import models

    name = f"{obj['metadata']['namespace']}.{obj['metadata']['name']}"
    backend.clusters[name] = models.Cluster(
        name=name, username=obj["spec"]["username"], token="", options=obj["spec"]["options"],
        config=obj["spec"]["config"], status=models.ClusterStatus[status],
    )  # fmt: skip
    return name


def test_kube_backend_records_a_start_with_its_workspace(kube_backend, settings):
    from datahavn.hub_config.kube.gateway import ProjectUser

    name = asyncio.run(kube_backend.start_cluster(ProjectUser("alice", "brca"), {"worker_cores": 2.0, "workers": 2}))
    (obj,) = kube_backend.custom_client.created
    assert name == f"dh.{obj['metadata']['name']}"
    # the DaskCluster object: the pair's account, the config of cluster_config (the pair in its environment)
    assert obj["spec"]["username"] == "dh-brca-alice"
    config = obj["spec"]["config"]
    assert config["environment"] == kube.cluster_config(settings, "alice", "brca", {})["environment"]
    assert (config["environment"]["DATAHAVN_USER"], config["environment"]["DATAHAVN_PROJECT"]) == ("alice", "brca")
    # dask-gateway counts the scheduler in the cluster's cores: (16 - 1) // 2 workers, not maxWorkers (8)
    assert config["worker_cores"] == 2.0 and config["cluster_max_workers"] == 7
    # recorded before KubeBackend's cache knows the cluster, with its workspace
    assert kube_backend.records == [
        {"kind": "dask_cluster_start", "strict": True, "user": "alice", "project": "brca", "server": "alice/brca",
         "actor": "datahavn-dask", "outcome": "requested",
         "detail": {"cluster": name, "account": "dh-brca-alice",
                    "options": {"worker_cores": 2.0, "workers": 2}}},
    ]  # fmt: skip
    # once the cache has it, its identity is read from there (and the note of its creation dropped)
    cached(kube_backend, obj)
    assert kube_backend.cluster_identity(name) == ("alice", "brca") and kube_backend._created == {}
    assert kube_backend.cluster_identity("dh.unknown") == (None, None)
    # stopped: recorded with the reason, then the object is marked inactive
    asyncio.run(kube_backend.stop_cluster(name))
    assert kube_backend.records[-1]["kind"] == "dask_cluster_stop"
    assert kube_backend.records[-1]["user"] == "alice" and kube_backend.records[-1]["detail"]["reason"] == "requested"
    assert kube_backend.custom_client.patched == [(name, [{"op": "add", "path": "/spec/active", "value": False}])]


def test_kube_backend_refuses_to_start_unrecorded(kube_backend):
    from aiohttp import web

    from datahavn.hub_config.kube.gateway import ProjectUser

    kube_backend.record_hook.fail = True
    with pytest.raises(web.HTTPServiceUnavailable, match="nothing was started"):
        asyncio.run(kube_backend.start_cluster(ProjectUser("alice", "brca"), {}))
    (obj,) = kube_backend.custom_client.created
    # the object just made is stopped at once
    assert kube_backend.custom_client.patched == [
        (f"dh.{obj['metadata']['name']}", [{"op": "add", "path": "/spec/active", "value": False}])
    ]


def test_kube_backend_refuses_options_beyond_the_project(kube_backend):
    from dask_gateway_server.backends.base import PublicException

    from datahavn.hub_config.kube.gateway import ProjectUser

    for options, message in [({"project": "cardio"}, "project"), ({"worker_cores": 4.0, "workers": 8}, "exceed")]:
        with pytest.raises(PublicException, match=message):
            asyncio.run(kube_backend.start_cluster(ProjectUser("alice", "brca"), options))
    assert kube_backend.custom_client.created == [] and kube_backend.records == []


def test_kube_backend_stops_clusters_whose_grant_lapsed(kube_backend, settings):
    from datahavn.hub_config.kube.gateway import ProjectUser

    names = {}
    for user in ("alice", "bob"):
        asyncio.run(kube_backend.start_cluster(ProjectUser(user, "brca"), {}))
        names[user] = cached(kube_backend, kube_backend.custom_client.created[-1])
    # a DaskCluster the gateway did not make for a workspace (e.g. of the previous config): no pair
    foreign = {
        "metadata": {"name": "f00", "namespace": "dh"},
        "spec": {"username": "dh-brca-alice", "options": {}, "config": {"environment": {"DATAHAVN_PROJECT": "brca"}}},
    }
    names["foreign"] = cached(kube_backend, foreign)
    props = grants.with_grant(grants.new_project_properties("d", by="admin"), "alice", None, "r", "admin")
    asked = []

    async def grant(user, project):
        asked.append((user, project))
        return grants.grant_status(project, props, ["alice"], user)

    running = {("alice", "brca"): True}

    async def workspace_running(user, project):
        return running[user, project]

    kube_backend._authenticator = types.SimpleNamespace(grant=grant, workspace_running=workspace_running)
    stopped = asyncio.run(kube_backend.stop_lapsed())
    assert sorted(stopped) == sorted([names["bob"], names["foreign"]])
    assert sorted(asked) == [("alice", "brca"), ("bob", "brca")]
    stops = {r["detail"]["cluster"]: r for r in kube_backend.records if r["kind"] == "dask_cluster_stop"}
    assert stops[names["bob"]]["user"] == "bob" and stops[names["bob"]]["detail"]["reason"] == "grant none"
    assert stops[names["foreign"]]["user"] is None
    assert stops[names["foreign"]]["detail"]["reason"] == "no Datahavn workspace"
    assert {n for n, _ in kube_backend.custom_client.patched} == {names["bob"], names["foreign"]}
    # alice's workspace stops (its kernel killed, nothing closed the cluster): the gateway stops it
    running["alice", "brca"] = False
    kube_backend.grant_check_period = -1.0  # the cluster is older than a period
    assert names["alice"] in asyncio.run(kube_backend.stop_lapsed())  # (the fake cache still lists the others)
    reasons = {r["detail"]["cluster"]: r["detail"]["reason"] for r in kube_backend.records
               if r["kind"] == "dask_cluster_stop"}  # fmt: skip
    assert reasons[names["alice"]] == "workspace stopped"


@pytest.mark.filterwarnings("ignore:It is recommended to use web.AppKey")  # dask-gateway's own app keys are str
def test_kube_backend_opens_the_audit_store_at_setup(kube_backend, monkeypatch, tmp_path):
    from aiohttp import web
    from dask_gateway_server.backends.kubernetes.backend import KubeBackend

    from datahavn.hub_config.audit import hub as audit_hub
    from datahavn.hub_config.dask import kube_backend as module

    async def nothing(self, *args):
        pass

    monkeypatch.setattr(KubeBackend, "setup", nothing)
    monkeypatch.setattr(KubeBackend, "cleanup", nothing)
    monkeypatch.setattr(audit_hub, "_store", None)
    with pytest.raises(RuntimeError, match="DATAHAVN_AUDIT_DB_URL and \\$DATAHAVN_AUDIT_KEY"):
        module.open_gateway_store({"DATAHAVN_AUDIT_DB_URL": "sqlite://"})
    monkeypatch.setenv("DATAHAVN_AUDIT_DB_URL", f"sqlite:///{tmp_path}/audit.sqlite")
    monkeypatch.setenv("DATAHAVN_AUDIT_KEY", "ab" * 32 + "\n")  # as the chart's Secret holds it

    async def run():
        app = web.Application()
        app["authenticator"] = object()
        await kube_backend.setup(app)
        store = audit_hub._store
        try:
            assert store is kube_backend._store
            store.append({"schema": 1, "kind": "dask_cluster_start"})
            assert store.verify().ok
        finally:
            await kube_backend.cleanup()

    asyncio.run(run())
