"""A workspace that cannot start fails fast, says why, and can be retried at once."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from datahavn import admin


@pytest.fixture
def broken_user_env():
    """A users' environment whose server exits at once with a message, as a broken install would."""
    prefix = Path(tempfile.mkdtemp(prefix="datahavn-broken-env-", dir="/tmp"))
    os.chmod(prefix, 0o755)
    (prefix / "bin").mkdir(mode=0o755)
    script = prefix / "bin" / "jupyterhub-singleuser"
    script.write_text("#!/bin/sh\necho 'ImportError: the server cannot start (test)' >&2\nexit 3\n")
    script.chmod(0o755)
    yield prefix
    shutil.rmtree(prefix)


def test_failed_spawn_fails_fast_with_the_reason(make_hub, broken_user_env, unique):
    hub = make_hub("broken", DATAHAVN_USER_ENV=str(broken_user_env))
    # names of its own: unix accounts are machine-wide, and the session hub's must not be touched
    user, project = unique("u"), unique("p")
    admin.add_user(hub.api, user)
    admin.create_project(hub.api, project)
    admin.grant(hub.api, user, project)
    for attempt in range(2):  # the second try must not hang on the first one's port
        t0 = time.monotonic()
        r = hub.rest("POST", f"/users/{user}/servers/{project}")
        took = time.monotonic() - t0
        assert r.status_code == 500, r.text
        message = r.json()["message"]
        assert "exited during start-up (status 3)" in message
        assert "the server cannot start" in message
        assert took < 15, f"attempt {attempt}: spawn failure took {took:.1f} s"
        assert hub.server(user, project) is None
