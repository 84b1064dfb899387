# Benchmark-only hub additions (DATAHAVN_HUB_EXTRA_CONFIG): the project "boxoff" starts its kernels without
# bubblewrap (DATAHAVN_SANDBOX=pod: the command, environment and Landlock rules a Kubernetes pod's kernel gets),
# so one hub serves both sides of benchmarks/kernel_start.py through the same proxy. Never use this in a deployment.
from datahavn.hub_config.spawners.local import ProjectSpawner


class BenchmarkSpawner(ProjectSpawner):
    def get_env(self):
        env = super().get_env()
        if self.name == "boxoff":
            env["DATAHAVN_SANDBOX"] = "pod"
        return env


c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = BenchmarkSpawner
