#!/usr/bin/env bash
# make test: lint, then every test (they start real hubs, servers, kernels and a browser).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check .
.venv/bin/python -m pytest tests "$@"
