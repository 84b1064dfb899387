# Test-only hub additions (DATAHAVN_HUB_EXTRA_CONFIG), from the test's environment:
# DATAHAVN_TEST_ALLOW, one "host:port" every kernel may reach; DATAHAVN_TEST_SANDBOX, the kernels' box.
import os

c = get_config()  # noqa: F821
if os.environ.get("DATAHAVN_TEST_ALLOW"):
    c.ProjectSpawner.network_allow = [os.environ["DATAHAVN_TEST_ALLOW"]]
if os.environ.get("DATAHAVN_TEST_SANDBOX"):
    c.ProjectSpawner.kernel_sandbox = os.environ["DATAHAVN_TEST_SANDBOX"]
