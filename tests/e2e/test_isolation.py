"""What a researcher's kernel can and cannot touch (the OS enforces it, not the UI)."""

import grp
import json
import pwd

import pytest

from datahavn.names import account_name

from ..hubs import host_pids, refused, wait_for


async def test_alice_brca_kernel_sees_brca_data_only(hub, kernel):
    lay = hub.layout
    # carol's cardio and brca workspaces exist, so there is another account's files to try
    hub.start("carol", "cardio")
    hub.start("carol", "brca")
    k = await kernel("alice", "brca")
    brca_store = lay.data("brca") / "cohort.vcz"

    ok = await k.execute(
        "import zarr, os\n"
        f"g = zarr.open_group({str(brca_store)!r}, mode='r')\n"
        "print(g['call_genotype'].shape[1:], int(g['call_genotype'][:10].sum()) >= 0)\n"
        "print(sorted(os.listdir('data')))\n"
    )
    assert ok.status == "ok", ok.error
    assert "(300, 2) True" in ok.stdout
    assert "cohort.vcz" in ok.stdout

    # the project's shared folder is writable by members
    shared = await k.execute("open('shared/alice-was-here.txt', 'w').write('hi'); print('ok')")
    assert shared.stdout.strip() == "ok", shared.error

    attempts = {
        "write brca data": f"open({str(brca_store / 'new-file')!r}, 'w')",
        "modify brca data": f"open({str(brca_store / '.zgroup')!r}, 'a')",
        "read cardio data": f"os.listdir({str(lay.data('cardio'))!r})",
        "read cardio store": f"open({str(lay.data('cardio') / 'cohort.vcz' / '.zgroup')!r})",
        "read another user's workspace": f"os.listdir({str(lay.workspace('brca', 'carol'))!r})",
        "read another account's home": f"os.listdir({str(lay.workspace('cardio', 'carol'))!r})",
        "read the hub state dir": f"os.listdir({str(lay.hub)!r})",
        "read the hub DB": f"open({str(lay.hub_db)!r}, 'rb').read(16)",
        "read the admin token": f"open({str(lay.secrets / 'admin-token')!r})",
        "read cardio via the shared link trick": f"os.listdir({str(lay.work('cardio'))!r})",
    }
    # the projects folder, in the box, holds this project only
    listed = await k.execute(f"import os; print(os.listdir({str(lay.projects)!r}))")
    assert listed.stdout.strip() == "['brca']" or refused(listed.error), listed
    for what, code in attempts.items():
        r = await k.execute(f"import os\n{code}")
        assert r.status == "error", f"{what}: succeeded"
        # refused by the permissions, or not even there: the kernel's box holds only its own project
        assert refused(r.error), f"{what}: {r.error}"


async def test_one_person_two_projects_are_two_identities(hub, kernel):
    k_brca = await kernel("carol", "brca")
    k_cardio = await kernel("carol", "cardio")
    who = "import os, json; print(json.dumps([os.getuid(), os.getgid(), os.getgroups()]))"
    uid_a, gid_a, groups_a = json.loads((await k_brca.execute(who)).stdout)
    uid_b, gid_b, groups_b = json.loads((await k_cardio.execute(who)).stdout)
    assert uid_a != uid_b, "carol's two workspaces share a uid"
    assert gid_a != gid_b, "carol's two workspaces share a gid"
    assert pwd.getpwuid(uid_a).pw_name == account_name("carol", "brca")
    assert grp.getgrgid(gid_b).gr_name == "dh-cardio"
    # the project's group is the only group
    assert groups_a == [gid_a] and groups_b == [gid_b]

    # the cardio kernel's pid on the machine (inside its box it is another number, which means nothing here)
    target = host_pids(account_name("carol", "cardio"), b"datahavn.kernels.launch")[0]
    r = await k_brca.execute(f"import os, signal; os.kill({target}, signal.SIGTERM)")
    assert refused(r.error), r.error
    r = await k_brca.execute(
        "import ctypes, ctypes.util\n"
        "libc = ctypes.CDLL(ctypes.util.find_library('c'), use_errno=True)\n"
        f"rc = libc.ptrace(16, {target}, None, None)  # PTRACE_ATTACH\n"
        "print(rc, ctypes.get_errno())"
    )
    rc, errno = r.stdout.split()
    assert rc == "-1" and errno in ("1", "3"), f"ptrace attach: rc={rc} errno={errno} (1 = EPERM, 3 = ESRCH)"
    r = await k_brca.execute(f"open('/proc/{target}/environ').read()")
    assert refused(r.error), r.error
    # and the target is alive and well
    assert (await k_cardio.execute("print('alive')")).stdout.strip() == "alive"


@pytest.mark.parametrize("path", ["/etc/shadow", "/root"])
async def test_kernel_runs_without_privileges(hub, kernel, path):
    k = await kernel("alice", "brca")
    r = await k.execute(f"import os\nos.listdir({path!r}) if os.path.isdir({path!r}) else open({path!r}).read()")
    assert r.status == "error" and refused(r.error), r.error


def test_researchers_cannot_mint_tokens(hub):
    """A token of one's own would reach every workspace of that person, across projects."""
    token = hub.user_token("carol")
    r = hub.rest("POST", "/users/carol/tokens", token=token, json={"note": "bridge"})
    assert r.status_code == 403, r.text
    # what the hub gave carol still works for her own servers
    assert hub.rest("GET", "/user", token=token).json()["name"] == "carol"
    # the hub records a request just after answering it
    wait_for(lambda: any("POST /hub/api/users/carol/tokens -> 403" in str(e.get("detail"))
                         for e in hub.events(kind="denied", user="carol")),
             timeout=10, message="the refusal was not recorded")  # fmt: skip
