"""``datahavn dataset import|list|verify`` on a real hub: permissions, audit, nothing left by a failure."""

from __future__ import annotations

import grp
import json
import os
import stat

from ..hubs import refused
from ..vcf_data import bgzip, simulated_vcf


def state(hub) -> list[str]:
    return ["--state-dir", str(hub.layout.root)]


def leftovers(hub, project: str) -> list[str]:
    return sorted(p.name for p in hub.layout.data(project).iterdir() if p.name.startswith("."))


async def test_import_list_verify(hub, cli, kernel, tmp_path, unique):
    src = tmp_path / "cohort2.vcf.gz"
    src.write_bytes(bgzip(simulated_vcf(samples=25, seed=3).encode()))
    name = unique("ds")
    r = cli("dataset", "import", "brca", name, str(src), *state(hub))
    assert r.returncode == 0, r.stderr
    assert f"imported {name} into brca" in r.stdout
    store = hub.layout.data("brca") / f"{name}.vcz"
    # read-only for the project's group, nothing for anyone else
    gid = grp.getgrnam("dh-brca").gr_gid
    for dirpath, _dirs, files in os.walk(store):
        st = os.stat(dirpath)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o2750), dirpath
        for f in files:
            st = os.stat(os.path.join(dirpath, f))
            assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, gid, 0o640), f
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["name"] == name and manifest["project"] == "brca" and manifest["counts"]["samples"] == 25
    assert manifest["imported_by"] == "datahavn-admin"

    listed = json.loads(cli("dataset", "list", "--project", "brca", "--json", *state(hub)).stdout)
    assert {"cohort", name} <= {row["name"] for row in listed}
    assert cli("dataset", "verify", "brca", name, *state(hub)).returncode == 0

    events = [e for e in hub.events(kind="dataset_import", project="brca") if e["detail"]["dataset"] == name]
    assert len(events) == 1 and events[0]["outcome"] == "ok"
    assert events[0]["actor"] == "datahavn-admin" and events[0]["detail"]["sha256"] == manifest["source"]["sha256"]

    # researchers see it at once, read-only
    k = await kernel("alice", "brca")
    r = await k.execute(f"print({name!r} in project.datasets(), project.genotypes({name!r}).shape)")
    assert r.stdout.strip().startswith("True ("), r.error
    r = await k.execute(f"open(str(project.path({name!r}) / 'manifest.json'), 'a')")
    assert refused(r.error), r.error

    # a changed chunk is found by verify
    chunk = store / "call_genotype" / "0.0.0"
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 1
    chunk.write_bytes(bytes(data))
    r = cli("dataset", "verify", "brca", name, *state(hub))
    assert r.returncode == 3 and "call_genotype" in r.stderr


def test_failed_import_leaves_nothing(hub, cli, tmp_path, unique):
    good = bgzip(simulated_vcf(samples=10, seed=4).encode())
    src = tmp_path / "cut.vcf.gz"
    src.write_bytes(good[: len(good) * 2 // 3])
    before = leftovers(hub, "cardio")
    # a staging folder of an import that was killed: the next import clears it
    abandoned = hub.layout.data("cardio") / ".import-999999999-dead"
    abandoned.mkdir()
    name = unique("bad")
    r = cli("dataset", "import", "cardio", name, str(src), *state(hub))
    assert r.returncode == 1
    assert r.stderr.startswith("datahavn: error:") and r.stderr.count("\n") == 1 and "truncated" in r.stderr
    assert not (hub.layout.data("cardio") / f"{name}.vcz").exists()
    assert leftovers(hub, "cardio") == before
    events = [e for e in hub.events(kind="dataset_import") if e["detail"]["dataset"] == name]
    assert [e["outcome"] for e in events] == ["error"]


def test_import_refusals(hub, cli, tmp_path):
    src = tmp_path / "x.vcf"
    src.write_text(simulated_vcf(samples=5, seed=6))
    cases = {
        ("brca", "cohort", str(src)): "already exists",
        ("nosuch", "x", str(src)): "no such project",
        ("brca", "x2", str(tmp_path / "missing.vcf")): "no such file",
    }
    for (project, name, path), message in cases.items():
        r = cli("dataset", "import", project, name, path, *state(hub))
        assert r.returncode == 1 and message in r.stderr, (project, name, r.stderr)
    for bad in ("../x", "A", ".hidden", "x/y"):
        r = cli("dataset", "import", "brca", bad, str(src), *state(hub))
        assert r.returncode == 2 and "invalid dataset name" in r.stderr, (bad, r.stderr)
    r = cli("dataset", "import", "brca", "ok", str(src), "--workers", "0", *state(hub))
    assert r.returncode == 2 and "out of range" in r.stderr
    env = {k: v for k, v in hub.env.items() if k != "DATAHAVN_ADMIN_TOKEN"}
    r = cli("dataset", "import", "brca", "ok", str(src), *state(hub), env=env)
    assert r.returncode == 1 and "DATAHAVN_ADMIN_TOKEN" in r.stderr
