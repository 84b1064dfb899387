"""The hub machine's verbs of the ``datahavn`` command: ``demo`` and ``dataset``.

Plugged into :mod:`datahavn.cli` through the ``datahavn.commands`` entry point, so
the shared package imports no side. What they need (numba, msprime, JupyterHub)
loads only when a verb runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from datahavn import admin
from datahavn.cli import DATASET, PROJECT, Common, Parser, hub_from_args, print_rows
from datahavn.paths import Layout


def _layout(args) -> Layout:
    return Layout(Path(args.state_dir).absolute()) if args.state_dir else Layout.from_env()


def cmd_dataset_import(args):
    from . import datasets

    hub = hub_from_args(args)
    admin.get_project(hub, args.project)  # it must exist in the hub
    manifest = datasets.import_dataset(
        _layout(args), args.project, args.name, args.file, workers=args.workers,
        progress=sys.stderr.isatty() and not args.quiet, actor=hub.whoami(),
        audit_url=os.environ.get("DATAHAVN_AUDIT_DB_URL", ""),
    )  # fmt: skip
    c = manifest["counts"]
    print(f"imported {args.name} into {args.project}: {c['variants']:,} variants x {c['samples']:,} samples "
          f"in {manifest['seconds']:.1f} s")  # fmt: skip


def cmd_dataset_list(args):
    from . import datasets

    layout = _layout(args)
    if args.project and not layout.project(args.project).is_dir():
        raise datasets.DatasetError(f"no such project {args.project!r} on this machine")
    rows = datasets.list_datasets(layout, args.project)
    print_rows(args, rows, ["project", "name", "variants", "samples", "imported_at", "imported_by", "source_sha256"])


def cmd_dataset_verify(args):
    from . import datasets

    bad = datasets.verify_dataset(_layout(args), args.project, args.name)
    if bad:
        print(f"datahavn: error: {args.name} of {args.project} differs from its manifest: {', '.join(bad)}",
              file=sys.stderr)  # fmt: skip
        return 3
    print(f"{args.name} of {args.project} matches its manifest")
    return 0


def _workers(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"{n} is out of range (1..64)")
    return n


def cmd_demo(args):
    from .demo.run import run_demo

    dask = args.dask or os.environ.get("DATAHAVN_DASK_ENGINE") or "local"
    return run_demo(ip=args.ip, port=args.port, state_dir=args.state_dir, dask=dask)


def register(sub, common: Common) -> None:
    """Add ``demo`` and ``dataset`` to the ``datahavn`` command's subparsers."""
    d = sub.add_parser("demo", help="run the demo workspace on this machine (as root)")
    d.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    d.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    d.add_argument("--state-dir", default=None, help="state directory (default /srv/datahavn)")
    d.add_argument("--dask", choices=("local", "slurm"), default=None,
                   help="where project.dask() runs clusters: local (in the kernel's box; the default, or "
                        "$DATAHAVN_DASK_ENGINE) or slurm "
                        "(dask-gateway on this machine's Slurm; start it with `bash scripts/slurm.sh`)")  # fmt: skip
    d.set_defaults(func=cmd_demo)

    state_opts = Parser(add_help=False)
    state_opts.add_argument("--state-dir", help="state directory (default: $DATAHAVN_STATE_DIR or /srv/datahavn)")
    ds = sub.add_parser("dataset", help="import and list datasets").add_subparsers(
        dest="action", required=True, parser_class=Parser
    )
    di = ds.add_parser("import", parents=[common.hub, state_opts], help="import a VCF/BCF into a project (as root)")
    di.add_argument("project", type=PROJECT)
    di.add_argument("name", type=DATASET, help="the dataset's name in the project (a new one)")
    di.add_argument("file", help="a VCF or BCF file, plain, gzip or bgzip")
    di.add_argument("--workers", type=_workers, default=min(4, os.cpu_count() or 1),
                    help="threads to use (default: the cores, at most 4)")  # fmt: skip
    di.add_argument("--quiet", action="store_true", help="no progress bar")
    di.set_defaults(func=cmd_dataset_import)
    dl = ds.add_parser("list", parents=[state_opts, common.out], help="list datasets")
    dl.add_argument("--project", type=PROJECT)
    dl.set_defaults(func=cmd_dataset_list)
    dv = ds.add_parser("verify", parents=[state_opts], help="check a dataset's files against its manifest")
    dv.add_argument("project", type=PROJECT)
    dv.add_argument("name", type=DATASET)
    dv.set_defaults(func=cmd_dataset_verify)
