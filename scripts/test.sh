#!/usr/bin/env bash
# make test: lint, then every test (they start real hubs, servers, kernels and a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
# a real PostgreSQL for the audit store's PostgreSQL tests
DATAHAVN_TEST_PG_URL=$(bash scripts/postgres.sh)
export DATAHAVN_TEST_PG_URL
.venv/bin/python -m pytest tests "$@"
