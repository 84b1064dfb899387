"""Datahavn: a secure analysis workspace for genomic data, built on JupyterHub.

``datahavn`` holds what every side shares (names, grants, state layout, the hub
client and the CLI). The hub side lives in ``datahavn.hub_config``, the
single-user server extensions in ``datahavn.extensions`` and the kernel-side
library in ``datahavn.kernels``; this package imports none of them.
"""

__version__ = "0.1.0"
