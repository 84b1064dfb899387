#!/usr/bin/env bash
# make test: lint, then every test (they start real hubs, servers, kernels and a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
# a real PostgreSQL for the audit store's PostgreSQL tests
DATAHAVN_TEST_PG_URL=$(bash scripts/postgres.sh)
export DATAHAVN_TEST_PG_URL
# a real single-node Slurm for project.dask() through dask-gateway (tests/e2e/test_dask_slurm.py)
bash scripts/slurm.sh >/dev/null
.venv/bin/python -m pytest tests "$@"
