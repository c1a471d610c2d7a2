#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: the README's test command, and what CI runs.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k spec -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The container suite's system packages (as root with apt; MLCTL_NO_SYSTEM_SETUP=1 skips this).
[ -n "${MLCTL_NO_SYSTEM_SETUP:-}" ] || bash scripts/setup-containers.sh
# Lint and format first (pyproject's [tool.ruff]): a failure here fails the run in seconds.
.venv/bin/ruff check .
.venv/bin/ruff format --check .
exec .venv/bin/python -m pytest "$@"
