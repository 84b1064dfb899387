"""Datahavn's spawners: the documented base (:mod:`.base`), local processes (:mod:`.local`,
with :mod:`.provision`) and Kubernetes pods (:mod:`.kube`, imported only where kubespawner is)."""

from .base import ProjectSpawnerBase, WorkspaceError

__all__ = ["ProjectSpawnerBase", "WorkspaceError"]
