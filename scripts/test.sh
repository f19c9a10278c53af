#!/usr/bin/env bash
# The test command: start a private Kafka and PostgreSQL on test ports (unless
# CRONPIPE_KAFKA_BOOTSTRAP / CRONPIPE_DATABASE_URL point elsewhere), run the whole
# suite against them, and stop what it started. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh

export CRONPIPE_STATE_DIR=${CRONPIPE_TEST_STATE_DIR:-$PWD/.cronpipe/test}
export CRONPIPE_PG_PORT=${CRONPIPE_TEST_PG_PORT:-55433}
started=0
if [ -z "${CRONPIPE_KAFKA_BOOTSTRAP:-}" ] || [ -z "${CRONPIPE_DATABASE_URL:-}" ]; then
  export CRONPIPE_KAFKA_BOOTSTRAP=${CRONPIPE_KAFKA_BOOTSTRAP:-127.0.0.1:${CRONPIPE_TEST_KAFKA_PORT:-19092}}
  out=$(.venv/bin/cronpipe services start)
  export CRONPIPE_DATABASE_URL=${CRONPIPE_DATABASE_URL:-$(.venv/bin/python -c 'import json,sys; print(json.loads(sys.argv[1])["database_url"])' "$out")}
  started=1
fi
cleanup() { if [ "$started" = 1 ]; then CRONPIPE_DATABASE_URL= .venv/bin/cronpipe services stop >/dev/null || true; fi; }
trap cleanup EXIT
echo "cronpipe: testing against Kafka $CRONPIPE_KAFKA_BOOTSTRAP and PostgreSQL $CRONPIPE_DATABASE_URL" >&2
.venv/bin/python -m pytest "$@"
