"""Datasets of a project, on the hub machine: the importer and what administrators do with it.

- :mod:`.manage`: import (as root), list and verify datasets of a project;
- :mod:`.convert`: a VCF or BCF (detected from its first bytes) into a Zarr store, in one pass;
- :mod:`.source` (BGZF and gzip reading), :mod:`.vcf` (the compiled record parser),
  :mod:`.bcf` (through htslib), :mod:`.index_build` (the allele index), :mod:`.writer`
  and :mod:`.chunks` (the store's arrays).

Importing this package is cheap; numba and htslib load with :mod:`.convert`.
"""

from .manage import DatasetError, import_dataset, list_datasets, read_manifest, store_path, verify_dataset

__all__ = ["DatasetError", "import_dataset", "list_datasets", "read_manifest", "store_path", "verify_dataset"]
