"""The options a researcher may set on a Dask cluster, within the project's limits (pure).

One rule for every gateway engine: worker cores, worker memory and a worker count, each bounded by
:class:`DaskLimits` (the chart's ``dask`` settings, or ``$DATAHAVN_DASK_LIMITS`` on one
machine). The project is never an option: it comes from the caller's token.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

GIB = 1 << 30


class LimitsError(ValueError):
    """Limits an administrator set that Datahavn cannot run with."""


class OptionsError(ValueError):
    """Options a cluster cannot be made with (the gateway answers 422 with this message)."""


@dataclass(frozen=True)
class DaskLimits:
    """Per-project Dask limits; worker sizes are what users may choose within."""

    max_workers: int = 4
    max_cores: float = 8.0
    max_memory_gib: float = 32.0
    worker_cores: float = 1.0
    worker_cores_max: float = 2.0
    worker_memory_gib: float = 2.0
    worker_memory_gib_max: float = 8.0
    scheduler_cores: float = 1.0
    scheduler_memory_gib: float = 2.0
    idle_timeout_seconds: int = 1800

    #: chart key -> field
    KEYS = {
        "maxWorkers": "max_workers",
        "maxCores": "max_cores",
        "maxMemoryGiB": "max_memory_gib",
        "workerCores": ("worker_cores", "worker_cores_max"),
        "workerMemoryGiB": ("worker_memory_gib", "worker_memory_gib_max"),
        "schedulerCores": "scheduler_cores",
        "schedulerMemoryGiB": "scheduler_memory_gib",
        "idleTimeoutSeconds": "idle_timeout_seconds",
    }

    @classmethod
    def from_dict(cls, where: str, *layers: Mapping) -> DaskLimits:
        """Defaults, then each layer (the chart's defaults, the project's own) on top."""
        values: dict = {}
        for layer in layers:
            for key, value in (layer or {}).items():
                target = cls.KEYS.get(key)
                if target is None:
                    raise LimitsError(f"{where}: unknown Dask setting {key!r}")
                if isinstance(target, tuple):
                    if not isinstance(value, Mapping) or set(value) - {"default", "max"}:
                        raise LimitsError(f"{where}.{key}: give default and max")
                    for sub, name in zip(("default", "max"), target, strict=True):
                        if sub in value:
                            values[name] = value[sub]
                else:
                    values[target] = value
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise LimitsError(f"{where}: {name} must be a positive number, got {value!r}")
        limits = cls(**values)
        if not isinstance(limits.max_workers, int) or not isinstance(limits.idle_timeout_seconds, int):
            raise LimitsError(f"{where}: maxWorkers and idleTimeoutSeconds are whole numbers")
        if limits.worker_cores > limits.worker_cores_max or limits.worker_cores_max > limits.max_cores:
            raise LimitsError(f"{where}: need workerCores.default <= workerCores.max <= maxCores")
        if (
            limits.worker_memory_gib > limits.worker_memory_gib_max
            or limits.worker_memory_gib_max > limits.max_memory_gib
        ):
            raise LimitsError(f"{where}: need workerMemoryGiB.default <= workerMemoryGiB.max <= maxMemoryGiB")
        return limits


def option_fields(limits: DaskLimits) -> list[dict]:
    """The options a user may set: worker size and count within the project's bounds. Not the project."""
    return [
        {"kind": "float", "field": "worker_cores", "default": limits.worker_cores, "min": 0.1,
         "max": limits.worker_cores_max, "label": "Worker cores"},
        {"kind": "float", "field": "worker_memory", "default": limits.worker_memory_gib, "min": 0.25,
         "max": limits.worker_memory_gib_max, "label": "Worker memory (GiB)"},
        # read by the client before it scales; the gateway holds the cluster to it
        {"kind": "int", "field": "workers", "default": 0, "min": 0, "max": limits.max_workers,
         "label": "Workers"},
    ]  # fmt: skip


@dataclass(frozen=True)
class Sizes:
    cores: float
    memory_gib: float
    workers: int


def check_options(project: str, limits: DaskLimits, options: Mapping) -> Sizes:
    """The sizes ``options`` ask for, or :class:`OptionsError` naming the bound they cross."""
    fields = {f["field"]: f for f in option_fields(limits)}
    unknown = set(options) - set(fields)
    if unknown:
        raise OptionsError(f"unknown cluster options {sorted(unknown)}; the options are {sorted(fields)}"
                           " (the project is not an option)")  # fmt: skip
    values = {}
    for name, f in fields.items():
        value = options.get(name, f["default"])
        if isinstance(value, bool) or not isinstance(value, int | float) or (f["kind"] == "int" and value % 1):
            raise OptionsError(f"{name} must be a {'whole ' if f['kind'] == 'int' else ''}number, got {value!r}")
        if not f["min"] <= value <= f["max"]:
            raise OptionsError(f"{name}={value:g} is outside project {project}'s limits ({f['min']:g}..{f['max']:g})")
        values[name] = value
    sizes = Sizes(float(values["worker_cores"]), float(values["worker_memory"]), int(values["workers"]))
    # dask-gateway counts the scheduler in the cluster's totals, and would quietly start fewer workers
    cores = sizes.workers * sizes.cores + limits.scheduler_cores
    memory = sizes.workers * sizes.memory_gib + limits.scheduler_memory_gib
    if cores > limits.max_cores or memory > limits.max_memory_gib:
        raise OptionsError(
            f"{sizes.workers} workers of {sizes.cores:g} cores and {sizes.memory_gib:g} GiB, with the scheduler's "
            f"{limits.scheduler_cores:g} and {limits.scheduler_memory_gib:g} GiB, exceed project {project}'s "
            f"limits ({limits.max_cores:g} cores, {limits.max_memory_gib:g} GiB in all)"
        )
    return sizes


def common_config(limits: DaskLimits, sizes: Sizes) -> dict:
    """The ``ClusterConfig`` values every engine sets alike: sizes, the cluster's bounds, the idle timeout."""
    return {
        "worker_cores": sizes.cores,
        "worker_memory": int(sizes.memory_gib * GIB),
        "scheduler_cores": limits.scheduler_cores,
        "scheduler_memory": int(limits.scheduler_memory_gib * GIB),
        "cluster_max_workers": limits.max_workers,
        "cluster_max_cores": limits.max_cores,
        "cluster_max_memory": int(limits.max_memory_gib * GIB),
        "idle_timeout": float(limits.idle_timeout_seconds),
    }


def gateway_options(limits: DaskLimits, handler):
    """dask-gateway ``Options`` of :func:`option_fields`, turned into a config by ``handler(options, user)``."""
    from dask_gateway_server.options import Float, Integer, Options

    kinds = {"float": Float, "int": Integer}
    fields = [kinds[f["kind"]](f["field"], default=f["default"], min=f["min"], max=f["max"], label=f["label"])
              for f in option_fields(limits)]  # fmt: skip
    return Options(*fields, handler=handler)
