"""``project``: the current project's data, as a researcher's kernel sees it.

Every path comes from a dataset *name* checked against one rule and resolved
inside the project's data folder, so nothing here opens a path elsewhere (the
unix permissions stop other ways too: the account's only group is the
project's). Stores open read-only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from datahavn.names import DATASET_MANIFEST, InvalidName, check_project, dataset_store_name
from datahavn.names import DATASET_SUFFIX as SUFFIX


class ProjectError(LookupError):
    """A dataset that is not there, or a name that is not a dataset name."""


class Project:
    """The project this kernel works in: ``name``, ``datasets()``, ``open()``, ``genotypes()``, ``dask()``."""

    def __init__(self, name: str | None, root: str | os.PathLike | None):
        self.name = check_project(name) if name else None
        self._root = Path(root).resolve() if root else None
        self._client = None

    @classmethod
    def from_env(cls) -> Project:
        """The project of this server ($DATAHAVN_PROJECT, $DATAHAVN_PROJECT_DIR)."""
        return cls(os.environ.get("DATAHAVN_PROJECT"), os.environ.get("DATAHAVN_PROJECT_DIR"))

    def __repr__(self) -> str:
        return f"<Project {self.name}>" if self.name else "<Project: not in a Datahavn workspace>"

    @property
    def data_dir(self) -> Path:
        if self._root is None:
            raise ProjectError("not in a Datahavn workspace ($DATAHAVN_PROJECT_DIR is not set)")
        return self._root / "data"

    @property
    def shared_dir(self) -> Path:
        """The project's shared folder (writable by every member): tables such as phenotypes."""
        if self._root is None:
            raise ProjectError("not in a Datahavn workspace ($DATAHAVN_PROJECT_DIR is not set)")
        return self._root / "shared"

    def datasets(self) -> list[str]:
        """Names of the project's datasets."""
        return sorted(p.name[: -len(SUFFIX)] for p in self.data_dir.glob(f"*{SUFFIX}") if not p.name.startswith("."))

    def path(self, name: str) -> Path:
        """The store of dataset ``name``; only a name of this project's data folder is accepted."""
        try:
            folder = dataset_store_name(name)
        except InvalidName as e:
            raise ProjectError(f"{e} (give a dataset name, e.g. one of {self.datasets()})") from None
        data = self.data_dir.resolve()
        store = (data / folder).resolve()
        if store.parent != data:  # a link pointing elsewhere
            raise ProjectError(f"dataset {name} is not in project {self.name}")
        if not store.is_dir():
            raise ProjectError(f"project {self.name} has no dataset {name!r}; it has {self.datasets()}")
        return store

    def open(self, name: str):
        """The dataset's Zarr group, read-only."""
        import zarr
        from zarr.storage import LocalStore

        return zarr.open_group(store=LocalStore(self.path(name), read_only=True), mode="r")

    def manifest(self, name: str) -> dict:
        """What the import recorded: source file and hash, counts, chunking, codecs, checksums."""
        try:
            return json.loads((self.path(name) / DATASET_MANIFEST).read_text())
        except FileNotFoundError:
            raise ProjectError(f"dataset {name} has no manifest (not imported by datahavn)") from None

    def samples(self, name: str) -> list[str]:
        return [str(s) for s in self.open(name)["sample_id"][:]]

    def genotypes(self, name: str):
        """``call_genotype`` as an ``allel.GenotypeDaskArray`` (one Dask block per stored chunk of variants).

        ``count_alleles`` (also with ``subpop=``) reads the store's allele index when there is one.
        """
        import dask.array as da

        from .genotypes import AlleleIndex, ProjectGenotypes

        store = self.path(name)
        root = self.open(name)
        calls = root["call_genotype"]
        values = da.from_zarr(calls, chunks=(calls.chunks[0], -1, -1), inline_array=True)
        g = ProjectGenotypes(values)
        g._index = AlleleIndex.of(store, calls, values.chunks[0])
        if g._index is not None:
            g._max_allele = g._index.max_allele
        elif "variant_allele" in root:
            g._max_allele = root["variant_allele"].shape[1] - 1
        return g

    def dask(self, workers: int | None = None, cores: float | None = None, memory=None, *,
             processes: bool | None = None):  # fmt: skip
        """A ``distributed.Client`` to this kernel's own Dask cluster, started on first use.

        ``workers`` workers of ``cores`` cores and ``memory`` (GiB, or a size such as ``"4GiB"``)
        each, within the project's limits. Where the cluster runs is the administrator's choice
        (``$DATAHAVN_DASK_ENGINE``), the same code everywhere:

        - ``local``: a LocalCluster in the kernel's box. By default threads in the kernel's process
          (fastest on one machine, nothing listening); ``processes=True``: worker processes talking
          TLS with a certificate made for this cluster only;
        - ``slurm`` or ``kubernetes``: dask-gateway starts the cluster as this workspace's account,
          in this project only, with TLS; it stops with ``client.close()`` or when the kernel ends.
        """
        if self._client is not None and self._client.status == "running":
            return self._client
        from .clusters import DaskError, GatewayClusters, local_client

        engine = os.environ.get("DATAHAVN_DASK_ENGINE") or "local"
        if engine == "local":
            self._client = local_client(workers, cores, memory, processes)
        elif processes is not None:
            raise DaskError(f"processes= is for the local engine; this workspace's clusters run on {engine}")
        else:
            self._client = GatewayClusters().start(workers, cores, memory)
        return self._client
