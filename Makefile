.PHONY: up down test lint bootstrap services clean

# Bring the whole local stack up (Kafka, PostgreSQL, worker, gateway, API) and show it working.
up: bootstrap
	.venv/bin/cronpipe up

# Stop everything `make up` started.
down:
	.venv/bin/cronpipe down

# Run the static checks, then the whole test suite against real Kafka and PostgreSQL
# (started and stopped here).
test: lint
	bash scripts/test.sh $(PYTEST_ARGS)

# Static checks, configured in pyproject.toml: ruff (lint rules and import order) and mypy --strict.
LINTED = schemas ingest consumers api notifier cronpipe tests
lint: bootstrap
	.venv/bin/ruff check $(LINTED)
	.venv/bin/mypy $(LINTED)

bootstrap:
	bash scripts/bootstrap.sh

# Stop everything and delete local state (Kafka data, PostgreSQL cluster, venv).
clean: down
	rm -rf .cronpipe .venv
