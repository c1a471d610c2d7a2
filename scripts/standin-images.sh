#!/usr/bin/env bash
# Stand-ins for the two public images the podman target runs, on a machine that cannot pull
# them (these sandboxes cannot reach Docker Hub); elsewhere podman pulls the real ones and this
# script leaves them alone (idempotent: an image that is present or can be pulled is kept).
#   docker.io/library/python:3.11-slim   every mlctl image's base: Debian bookworm's python3.11
#                                        from debootstrap, a venv at /usr/local as the official
#                                        image has it (about a minute)
#   docker.io/seldonio/rclone-storage-initializer:1.17.1
#                                        Seldon's storage initializer, built as Seldon builds it
#                                        (scripts/standins/), with Debian's rclone
# Needs root, podman, debootstrap and rclone (scripts/setup-containers.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '==> %s\n' "$*" >&2; }
BASE=docker.io/library/python:3.11-slim
INITIALIZER=docker.io/seldonio/rclone-storage-initializer:1.17.1

have() { podman image exists "$1" || podman pull --quiet "$1" >/dev/null 2>&1; }

if ! have "$BASE"; then
  log "$BASE cannot be pulled here: building a stand-in with debootstrap"
  root=$(mktemp -d /var/tmp/mlctl-debootstrap.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  debootstrap --variant=minbase --include=python3.11-venv,python3-venv,ca-certificates,netbase,tzdata \
    bookworm "$root" http://deb.debian.org/debian >/dev/null
  chroot "$root" python3.11 -m venv /usr/local
  rm -rf "$root/var/cache/apt/archives" "$root/var/lib/apt/lists"
  tar -C "$root" -c . | podman import --change 'CMD ["python3"]' \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' --quiet - "$BASE" >/dev/null
  rm -rf "$root"
fi

if ! have "$INITIALIZER"; then
  log "$INITIALIZER cannot be pulled here: building a stand-in (Debian's rclone)"
  ctx=$(mktemp -d)
  cp /usr/bin/rclone "$ctx/rclone"
  cp scripts/standins/seldon-rclone-initializer.Dockerfile "$ctx/Dockerfile"
  podman build --quiet --network none --pull=never --tag "$INITIALIZER" "$ctx" >/dev/null
  rm -rf "$ctx"
fi
log "images: $BASE, $INITIALIZER"
