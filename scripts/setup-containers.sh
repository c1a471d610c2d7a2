#!/usr/bin/env bash
# Install and configure what `mlctl build`, the podman target and the container tests need, as
# root on a Debian machine (idempotent): podman, buildah, runc, debootstrap (a stand-in base
# image when Docker Hub is out of reach), rclone (the storage initializer's), docker-registry and
# apache2-utils (a real registry with htpasswd for the tests), iptables (a Service port that is
# not its targetPort, KServe's 80 → 8080, redirected in the pod's network namespace); then the
# public images the podman target runs, or stand-ins where they cannot be pulled
# (scripts/standin-images.sh).
#
# Settings for these machines (../shared/NOTES.md), written only where none exist yet:
#   /etc/containers/containers.conf  runc (crun fails on their hybrid cgroups), cgroupfs, a file
#                                    events log, k8s-file logs, and ulimits under root's hard limits
#   /etc/containers/storage.conf     the overlay driver, before podman's first use (a driver
#                                    mismatch makes every container exit wait 20 s)
set -euo pipefail
log() { printf '==> %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then log "not root: skipping system packages (install podman yourself)"; exit 0; fi
if ! command -v apt-get >/dev/null; then log "no apt-get: skipping system packages"; exit 0; fi

PACKAGES="podman buildah runc iptables debootstrap rclone docker-registry apache2-utils"
missing=$(for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || printf '%s ' "$p"; done)
if [ -n "$missing" ]; then
  log "installing $missing"
  apt-get update -q >/dev/null
  # docker-registry's package starts a registry on :5000 where an init system runs; the tests
  # start their own on a free loopback port.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
fi

mkdir -p /etc/containers
if [ ! -e /etc/containers/storage.conf ] && [ ! -d /var/lib/containers/storage/overlay ]; then
  log "writing /etc/containers/storage.conf (overlay)"
  cat > /etc/containers/storage.conf <<'EOF'
[storage]
driver = "overlay"
runroot = "/run/containers/storage"
graphroot = "/var/lib/containers/storage"
EOF
fi
if [ ! -e /etc/containers/containers.conf ]; then
  nofile=$(ulimit -Hn); nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  [ "$nproc" = unlimited ] && nproc=1048576
  nofile=$(( nofile < 20000 ? nofile : 20000 )); nproc=$(( nproc < 32768 ? nproc : 32768 ))
  log "writing /etc/containers/containers.conf (runc, cgroupfs, nofile $nofile, nproc $nproc)"
  cat > /etc/containers/containers.conf <<EOF
[containers]
log_driver = "k8s-file"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
fi
podman info --format '==> podman {{.Version.Version}}: {{.Store.GraphDriverName}}, {{.Host.OCIRuntime.Name}}, {{.Host.CgroupManager}}' >&2
bash "$(dirname "$0")/standin-images.sh"
