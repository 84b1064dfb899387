"""The genomics kernel in a real project server: ``project``, allele counts, Dask, confinement."""

from __future__ import annotations

import json
import pwd

import allel
import numpy as np
import requests
import zarr

from datahavn.names import account_name


def reference_counts(hub, project: str, dataset: str = "cohort") -> tuple[np.ndarray, allel.GenotypeArray]:
    root = zarr.open_group(str(hub.layout.data(project) / f"{dataset}.vcz"), mode="r")
    return root["sample_id"][:], allel.GenotypeArray(root["call_genotype"][:])


async def test_genomics_kernel_is_the_default(hub):
    url = hub.start("alice", "brca")
    specs = requests.get(f"{url}api/kernelspecs", headers={"Authorization": f"token {hub.user_token('alice')}"},
                         timeout=30).json()
    assert specs["default"] == "datahavn-genomics"
    assert specs["kernelspecs"]["datahavn-genomics"]["spec"]["display_name"] == "Datahavn Genomics"


async def test_project_counts_match_numpy(hub, kernel):
    k = await kernel("alice", "brca")
    r = await k.execute(
        "import json, numpy as np\n"
        "g = project.genotypes('cohort')\n"
        "cases = [int(i) for i in np.arange(0, g.shape[1], 3)]\n"
        "ac = g.count_alleles().compute()\n"
        "sub = g.count_alleles(subpop=cases).compute()\n"
        "print(json.dumps({'name': project.name, 'datasets': project.datasets(), 'type': type(g).__mro__[1].__name__,"
        " 'ac': ac.tolist(), 'sub': sub.tolist()}))",
        timeout=120,
    )
    assert r.status == "ok", r.error
    out = json.loads(r.stdout)
    assert out["name"] == "brca" and "cohort" in out["datasets"]
    assert out["type"] == "GenotypeDaskArray"
    _, g = reference_counts(hub, "brca")
    top = int(g.max())
    assert np.array_equal(np.array(out["ac"]), g.count_alleles(max_allele=top))
    cases = np.arange(0, g.shape[1], 3)
    assert np.array_equal(np.array(out["sub"]), g.count_alleles(max_allele=top, subpop=cases))


async def test_dask_workers_keep_the_server_identity(hub, kernel):
    k = await kernel("alice", "brca")
    account = pwd.getpwnam(account_name("alice", "brca"))
    r = await k.execute(
        "import os, json\n"
        "c = project.dask()\n"
        "threads = c.run(lambda: (os.getuid(), os.getgid(), os.getgroups(), os.getpid()))\n"
        "addr = c.scheduler.address\n"
        "c.close(); c.cluster.close(); project._client = None\n"
        "p = project.dask(workers=2, cores=1, processes=True)\n"
        "procs = p.run(lambda: (os.getuid(), os.getgid(), os.getgroups(), os.getpid()))\n"
        "paddr = p.scheduler.address\n"
        "total = int(project.genotypes('cohort').count_alleles().sum().compute())\n"
        "print(json.dumps({'kernel': os.getpid(), 'threads': list(threads.values()), 'addr': addr,"
        " 'procs': list(procs.values()), 'paddr': paddr, 'total': total}))\n"
        "p.close(); p.cluster.close()",
        timeout=180,
    )
    assert r.status == "ok", r.error
    out = json.loads(r.stdout)
    ident = [account.pw_uid, account.pw_gid, [account.pw_gid]]
    assert out["threads"] and all(w[:3] == ident for w in out["threads"])
    assert all(w[3] == out["kernel"] for w in out["threads"])  # threads: in the kernel itself
    assert out["addr"].startswith("inproc://")  # nothing listening on the network
    assert len(out["procs"]) == 2 and all(w[:3] == ident for w in out["procs"])
    assert all(w[3] != out["kernel"] for w in out["procs"])  # real worker processes
    assert out["paddr"].startswith("tls://127.0.0.1:")  # only holders of this cluster's certificate connect
    assert out["total"] > 0


async def test_cardio_store_cannot_be_opened_from_brca(hub, kernel):
    hub.start("carol", "cardio")  # cardio's data exists and has readers
    k = await kernel("alice", "brca")
    cardio = hub.layout.data("cardio") / "cohort.vcz"
    attempts = {
        "relative name": "project.open('../../cardio/data/cohort')",
        "dotted name": "project.open('..')",
        "absolute path": f"project.open({str(cardio)!r})",
        "path with suffix": "project.genotypes('cohort.vcz/../../../cardio/data/cohort')",
        "zarr directly": f"import zarr; zarr.open_group({str(cardio)!r}, mode='r')['call_genotype'][:1]",
        "another Project": (
            f"from datahavn.kernels import Project; Project('cardio', {str(cardio.parent.parent)!r}).open('cohort')"
        ),
        "a link in the workspace": (
            f"import os; os.path.lexists('cardio-link') or os.symlink({str(cardio)!r}, 'cardio-link');"
            " import zarr; zarr.open_group('cardio-link', mode='r')['call_genotype'][:1]"
        ),
        "a link in shared, by dataset name": (
            f"import os; os.path.lexists('shared/x.vcz') or os.symlink({str(cardio)!r}, 'shared/x.vcz');"
            " from datahavn.kernels import Project; Project('brca', os.environ['DATAHAVN_PROJECT_DIR']).open('x')"
        ),
    }
    for what, code in attempts.items():
        r = await k.execute(code)
        assert r.status == "error", f"{what}: succeeded: {r.stdout}"
        assert r.error.startswith(("ProjectError", "PermissionError", "FileNotFoundError")), f"{what}: {r.error}"
    # and the project's own store still opens
    ok = await k.execute("print(project.open('cohort')['call_genotype'].shape[1:])")
    assert ok.stdout.strip() == "(300, 2)", ok.error
