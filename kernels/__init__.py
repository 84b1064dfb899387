"""The kernel library: ``from datahavn.kernels import project`` (preloaded in the Datahavn Genomics kernel).

Importing this is cheap: zarr, Dask and scikit-allel load on first use.
"""

from .project_api import Project, ProjectError

#: The project of this server (from $DATAHAVN_PROJECT and $DATAHAVN_PROJECT_DIR).
project = Project.from_env()

__all__ = ["Project", "ProjectError", "project"]
