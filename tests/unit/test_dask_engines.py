"""The Dask engines' rules as data: options and limits, the Slurm cluster config, the kernel's view, staging."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import pytest

from datahavn import tokens
from datahavn.extensions.dask_box import job_box
from datahavn.extensions.sandbox import KernelBox, Relay, bwrap_argv, kernel_env, relayed
from datahavn.hub_config.dask.limits import OptionsError, check_options, option_fields
from datahavn.hub_config.dask.slurm import (
    DatahavnSlurmBackend,
    SlurmSettingsError,
    make_staging,
    parse_limits,
    project_limits,
    slurm_cluster_config,
)
from datahavn.hub_config.kube.settings import DaskLimits
from datahavn.hub_config.workspace import dask_env, host_port
from datahavn.paths import Layout

LIMITS = DaskLimits(max_workers=4, max_cores=6.0, max_memory_gib=8.0, worker_cores=1.0, worker_cores_max=2.0,
                    worker_memory_gib=1.0, worker_memory_gib_max=4.0, scheduler_cores=1.0,
                    scheduler_memory_gib=1.0)  # fmt: skip
GIB = 1 << 30


def test_options_are_sizes_and_a_count_within_the_project_never_the_project():
    assert [(f["field"], f["min"], f["max"]) for f in option_fields(LIMITS)] == [
        ("worker_cores", 0.1, 2.0), ("worker_memory", 0.25, 4.0), ("workers", 0, 4)]  # fmt: skip
    sizes = check_options("brca", LIMITS, {})
    assert (sizes.cores, sizes.memory_gib, sizes.workers) == (1.0, 1.0, 0)
    assert check_options("brca", LIMITS, {"worker_cores": 2, "worker_memory": 1.5, "workers": 2}).workers == 2


@pytest.mark.parametrize(
    "options, message",
    [
        ({"project": "cardio"}, "unknown cluster options ['project']"),
        ({"environment": {}}, "the project is not an option"),
        ({"workers": 5}, "workers=5 is outside project brca's limits (0..4)"),
        ({"workers": 1.5}, "workers must be a whole number"),
        ({"workers": True}, "workers must be a whole number"),
        ({"worker_cores": 64}, "worker_cores=64 is outside"),
        ({"worker_memory": "4G"}, "worker_memory must be a number"),
        # 3 x 2 cores and the scheduler's 1 is 7 > 6: dask-gateway would quietly start two
        ({"workers": 3, "worker_cores": 2}, "with the scheduler's 1 and 1 GiB, exceed project brca's limits"),
        ({"workers": 2, "worker_memory": 4}, "exceed project brca's limits (6 cores, 8 GiB in all)"),
    ],
)
def test_options_beyond_the_limits_are_refused_with_the_bound(options, message):
    with pytest.raises(OptionsError) as e:
        check_options("brca", LIMITS, options)
    assert message in str(e.value)


def test_the_slurm_cluster_config_pins_the_workspace(tmp_path):
    layout = Layout(tmp_path)
    config = slurm_cluster_config(layout, "/opt/env", "alice", "brca", LIMITS, {"workers": 2}, "debug")
    ws = str(tmp_path / "projects/brca/work/alice")
    assert config == {
        "worker_cores": 1.0,
        "worker_memory": GIB,
        "scheduler_cores": 1.0,
        "scheduler_memory": GIB,
        "cluster_max_workers": 4,
        "cluster_max_cores": 6.0,
        "cluster_max_memory": 8 * GIB,
        "idle_timeout": 1800.0,
        "worker_threads": 1,
        "scheduler_cmd": ["/opt/env/bin/python", "-I", "-m", "datahavn.extensions.dask_box", "scheduler"],
        "worker_cmd": ["/opt/env/bin/python", "-I", "-m", "datahavn.extensions.dask_box", "worker"],
        "environment": {
            "HOME": str(tmp_path / "dask/dh-brca-alice"),
            "USER": "dh-brca-alice",
            "SHELL": "/usr/sbin/nologin",
            "PYTHONNOUSERSITE": "1",
            "DATAHAVN_PROJECT": "brca",
            "DATAHAVN_PROJECT_DIR": str(tmp_path / "projects/brca"),
            "DATAHAVN_WORKSPACE": ws,
            "NUMBA_CACHE_DIR": f"{ws}/.cache/numba",
            "MPLCONFIGDIR": f"{ws}/.cache/matplotlib",
            "DATAHAVN_USER": "alice",
            "DATAHAVN_USER_ENV": "/opt/env",
            "DATAHAVN_DASHBOARD_PREFIX": "/user/alice/brca/datahavn/dask/",
        },
        "partition": "debug",
        "staging_directory": str(tmp_path / "dask/{username}"),
    }
    with pytest.raises(ValueError, match="unknown cluster options"):
        slurm_cluster_config(layout, "/opt/env", "alice", "brca", LIMITS, {"staging_directory": "/tmp"})


def test_per_project_limits_from_the_environment():
    defaults, projects = parse_limits('{"defaults": {"maxWorkers": 2}, "projects": {"brca": {"maxWorkers": 3}}}')
    assert project_limits(defaults, projects, "brca").max_workers == 3
    assert project_limits(defaults, projects, "cardio").max_workers == 2
    assert parse_limits("") == ({}, {})
    for text, message in [
        ("{", "is not JSON"),
        ('{"brca": {}}', 'give {"defaults"'),
        ('{"defaults": {"maxWorkerz": 2}}', "unknown Dask setting 'maxWorkerz'"),
        ('{"projects": {"brca": {"maxWorkers": -1}}}', "must be a positive number"),
    ]:
        with pytest.raises(SlurmSettingsError, match=message.replace("(", r"\(").replace("{", r"\{")):
            parse_limits(text)


def test_dask_env_and_the_token_that_opens_only_the_gateway():
    assert dask_env("local") == {"DATAHAVN_DASK_ENGINE": "local"}
    assert dask_env("slurm", "http://127.0.0.1:5", "tls://127.0.0.1:6", "t0k") == {
        "DATAHAVN_DASK_ENGINE": "slurm", "DATAHAVN_DASK_GATEWAY": "http://127.0.0.1:5",
        "DATAHAVN_DASK_PROXY": "tls://127.0.0.1:6", "DATAHAVN_DASK_TOKEN": "t0k"}  # fmt: skip
    with pytest.raises(ValueError, match="needs the gateway's address"):
        dask_env("slurm", "http://127.0.0.1:5", "", "")
    with pytest.raises(ValueError, match="unknown Dask engine 'yarn'"):
        dask_env("yarn")
    assert [host_port(a) for a in ("http://h:1/x", "tls://h:2", "h:3")] == ["h:1", "h:2", "h:3"]
    scope = tokens.dask_token_scope("alice", "brca")
    assert scope == "custom:datahavn:dask!server=alice/brca"
    assert tokens.dask_identity({"kind": "user", "name": "alice", "scopes": [scope]}) == ("alice", "brca")
    for model in [
        {"kind": "user", "name": "alice", "scopes": ["access:servers!server=alice/brca"]},  # the server's own
        {"kind": "user", "name": "bob", "scopes": [scope]},  # someone else's
        {"kind": "service", "name": "alice", "scopes": [scope]},
        {"kind": "user", "name": "alice", "scopes": [scope, tokens.dask_token_scope("alice", "cardio")]},
        {"kind": "user", "name": "alice", "scopes": [f"{tokens.DASK_SCOPE}!user=alice"]},
    ]:
        assert tokens.dask_identity(model) is None, model


def test_a_kernel_reaches_the_gateway_through_its_relays():
    relays = (Relay("gw.example", 8000, "/r/net-0.sock"), Relay("10.0.0.5", 8786, "/r/net-1.sock"))
    assert relayed("http://gw.example:8000", relays) == "http://127.0.0.1:8000"
    assert relayed("http://gw.example:8000/services/x", relays) == "http://127.0.0.1:8000/services/x"
    assert relayed("tls://10.0.0.5:8786", relays) == "tls://127.0.0.1:8786"
    assert relayed("tls://10.0.0.6:8786", relays) == "tls://10.0.0.6:8786"  # not allow-listed: left, unreachable
    box = KernelBox(user_env="/e", project_dir="/p", workspace="/p/work/a", tmp="/t", kernel_dir="/k", cwd="/p",
                    account="dh-p-a", uid=1500, gid=1400, group="dh-p", relays=relays)  # fmt: skip
    env = kernel_env({"DATAHAVN_DASK_GATEWAY": "http://gw.example:8000", "DATAHAVN_DASK_TOKEN": "t",
                      "DATAHAVN_DASK_ENGINE": "slurm", "JUPYTERHUB_API_TOKEN": "secret"}, box)  # fmt: skip
    assert env["DATAHAVN_DASK_GATEWAY"] == "http://127.0.0.1:8000" and env["DATAHAVN_DASK_TOKEN"] == "t"
    assert "JUPYTERHUB_API_TOKEN" not in env


def test_a_job_is_boxed_like_a_kernel_but_keeps_the_network(tmp_path):
    env = {"DATAHAVN_PROJECT": "brca", "DATAHAVN_PROJECT_DIR": "/s/projects/brca",
           "DATAHAVN_WORKSPACE": "/s/projects/brca/work/alice", "DATAHAVN_USER_ENV": "/opt/env",
           "USER": "dh-brca-alice"}  # fmt: skip
    box = job_box(env, "/s/dask/dh-brca-alice/c1", 1500, 1400, "42")
    assert (box.kernel_dir, box.cwd, box.tmp, box.group) == (
        "/s/dask/dh-brca-alice/c1",
        "/s/dask/dh-brca-alice/c1",
        "/s/dask/dh-brca-alice/c1/tmp-42",
        "dh-brca",
    )
    job = bwrap_argv(box, ["/opt/env/bin/dask", "worker"], (), network=True)
    kernel = bwrap_argv(box, ["/opt/env/bin/dask", "worker"], ())
    assert "--unshare-net" in kernel and "--unshare-net" not in job
    assert [a for a in kernel if a != "--unshare-net"] == job  # everything else is the kernel's box
    assert job[job.index("/tmp") - 1] == "/s/dask/dh-brca-alice/c1/tmp-42/tmp"
    with pytest.raises(KeyError):
        job_box({}, "/x", 1, 1, "1")


def test_staging_is_made_by_root_and_handed_to_the_account(tmp_path):
    layout = Layout(tmp_path)
    nobody = pwd.getpwnam("nobody")
    staging = layout.dask / "nobody" / "c1"
    make_staging(layout, nobody, staging, {"dask.pem": "KEY", "dask.crt": "CERT"})
    parent = os.stat(staging.parent)
    assert (parent.st_uid, stat.S_IMODE(parent.st_mode)) == (0, 0o711)  # the account cannot plant links here
    assert (os.stat(staging).st_uid, stat.S_IMODE(os.stat(staging).st_mode)) == (nobody.pw_uid, 0o700)
    key = staging / "dask.pem"
    assert key.read_text() == "KEY" and stat.S_IMODE(key.stat().st_mode) == 0o600 and key.stat().st_uid == nobody.pw_uid
    with pytest.raises(FileExistsError):  # a cluster's folder is always new
        make_staging(layout, nobody, staging, {})
    with pytest.raises(RuntimeError, match="is not under"):
        make_staging(layout, nobody, Path("/tmp/elsewhere"), {})


def test_the_gateway_submits_only_as_a_workspace_account():
    backend = DatahavnSlurmBackend.__new__(DatahavnSlurmBackend)
    for name, message in [("root", "not a Datahavn workspace's account"),
                          ("nobody", "not a Datahavn workspace's account"),
                          ("dh-nosuch-account", "no unix account")]:  # fmt: skip
        with pytest.raises(RuntimeError, match=message):
            backend.account(name)
