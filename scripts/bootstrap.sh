#!/usr/bin/env bash
# Install what cronpipe needs on a fresh Debian machine, then the Python environment.
# Idempotent: each step is skipped when its result is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing+=(postgresql)
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "cronpipe: missing system packages: ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  echo "cronpipe: installing ${missing[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The dashboard's browser tests (tests/e2e/test_dashboard.py) drive Debian's Chromium with
# Playwright; nothing else needs it, so a machine where it cannot be installed skips them.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "cronpipe: installing chromium from Debian's packages (for the browser tests)" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } \
      || echo "cronpipe: could not install chromium; the browser tests will be skipped" >&2
  else
    echo "cronpipe: chromium is missing (sudo apt-get install -y chromium); the browser tests will be skipped" >&2
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "cronpipe: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "cronpipe: installing Python dependencies" >&2
  .venv/bin/pip install -q -e '.[test]' > .venv/pip-install.log 2>&1 || { tail -20 .venv/pip-install.log >&2; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi
