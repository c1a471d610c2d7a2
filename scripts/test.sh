#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite: the README's test command, and what CI runs.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k spec -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
