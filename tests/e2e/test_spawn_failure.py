"""A workspace that cannot start fails fast, says why, and can be retried at once."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest


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


def test_failed_spawn_fails_fast_with_the_reason(make_hub, broken_user_env):
    hub = make_hub("broken", DATAHAVN_USER_ENV=str(broken_user_env))
    user, project = hub.new_member()
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
