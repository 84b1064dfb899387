# Datahavn: `make demo` runs the workspace on this machine; `make test` runs every test.
.PHONY: install demo test lint

install:
	bash scripts/install.sh

demo: install
	.venv/bin/datahavn demo $(DEMO_ARGS)

test: install
	bash scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
