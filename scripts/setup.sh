#!/usr/bin/env bash
# Set up everything mlctl and its tests need on a fresh machine, idempotently:
#   .venv        mlctl + training (torch 2.13.0 CPU) + test tools
#   .venv-serve  the seldon-core serving runtime (requirements/serve.txt), kept apart because
#                seldon-core pins old Flask/click/jsonschema/numpy
#   .venv-kserve the KServe runtime (requirements/kserve.txt: `python -m runtime.kserve_server`),
#                kept apart from .venv-serve because kserve needs numpy 2, protobuf 6 and FastAPI
#   .venv-checkov  checkov (requirements/checkov.txt), the rule set the tests run over the release
#   .mlctl/bin   helm and kubectl when they are not on PATH (scripts/fetch-tools.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
log() { printf '==> %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then log "creating .venv"; "$PY" -m venv .venv; fi
log "installing mlctl[train,dev] into .venv"
.venv/bin/pip install -q --disable-pip-version-check -c requirements/constraints.txt -e '.[train,dev]'

if [ ! -x .venv-serve/bin/python ]; then log "creating .venv-serve"; "$PY" -m venv .venv-serve; fi
log "installing the serving runtime into .venv-serve"
.venv-serve/bin/pip install -q --disable-pip-version-check -c requirements/constraints.txt -r requirements/serve.txt

if [ ! -x .venv-kserve/bin/python ]; then log "creating .venv-kserve"; "$PY" -m venv .venv-kserve; fi
log "installing the KServe runtime into .venv-kserve"
.venv-kserve/bin/pip install -q --disable-pip-version-check -c requirements/constraints.txt -r requirements/kserve.txt

if [ ! -x .venv-checkov/bin/python ]; then log "creating .venv-checkov"; "$PY" -m venv .venv-checkov; fi
log "installing checkov into .venv-checkov"
.venv-checkov/bin/pip install -q --disable-pip-version-check -r requirements/checkov.txt

bash scripts/fetch-tools.sh
log "ready: .venv/bin/mlctl --help"
