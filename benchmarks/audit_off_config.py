# Benchmark-only hub additions (DATAHAVN_HUB_EXTRA_CONFIG): the project "auditoff" runs its
# server with the audited connection's base class (the same kernel websocket, minus the
# audit), so that one hub serves both sides of the comparison through the same proxy.
# Never use this in a deployment.
from datahavn.hub_config.spawners.local import ProjectSpawner

BASELINE = "datahavn.extensions.connection.LowLatencyConnection"


class BenchmarkSpawner(ProjectSpawner):
    def get_args(self):
        args = super().get_args()
        if self.name == "auditoff":
            args += [f"--ServerApp.kernel_websocket_connection_class={BASELINE}",
                     "--ServerApp.jpserver_extensions=datahavn.extensions=False"]  # fmt: skip
        return args


c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = BenchmarkSpawner
