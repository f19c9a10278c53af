.PHONY: up down test bootstrap services clean

# Bring the whole local stack up (Kafka, PostgreSQL, worker, gateway, API) and show it working.
up: bootstrap
	.venv/bin/cronpipe up

# Stop everything `make up` started.
down:
	.venv/bin/cronpipe down

# Run the whole test suite against real Kafka and PostgreSQL (started and stopped here).
test:
	bash scripts/test.sh $(PYTEST_ARGS)

bootstrap:
	bash scripts/bootstrap.sh

# Stop everything and delete local state (Kafka data, PostgreSQL cluster, venv).
clean: down
	rm -rf .cronpipe .venv
