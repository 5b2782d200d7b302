#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Shared settings for building images without Docker (buildah, chroot isolation, overlay storage
# where the kernel mounts overlayfs for us, else vfs).
# Sourced, never run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

IMAGES_DIR="$CACHE_DIR/images"

overlay_mounts() { # true when this process may mount overlayfs over a directory under $IMAGES_DIR
  local d ok=1
  mkdir -p "$IMAGES_DIR" && d=$(mktemp -d -p "$IMAGES_DIR" .probe.XXXXXX) || return 1
  mkdir "$d/lower" "$d/upper" "$d/work" "$d/merged"
  if mount -t overlay overlay -o "lowerdir=$d/lower,upperdir=$d/upper,workdir=$d/work" "$d/merged" 2>/dev/null; then
    umount "$d/merged" && ok=0
  fi
  rm -rf "$d"
  return $ok
}

# overlay: a step's layer holds only what the step changed; vfs (no overlay mounts: rootless, some
# containers) copies the whole root filesystem per step: a source-change rebuild of the model-server
# image took 57-135 s with vfs and 16 s with overlay; the vfs store grew to 28 GB over a day of
# rebuilds, the overlay store holds 1.7 GB after a cold build of every image (docs/local-cluster.md).
# MODELROLLOUT_IMAGE_STORAGE=vfs|overlay overrides the probe.
if [ -z "${BUILDAH_DRIVER:-}" ]; then
  BUILDAH_DRIVER=${MODELROLLOUT_IMAGE_STORAGE:-}
  if [ -z "$BUILDAH_DRIVER" ]; then
    if overlay_mounts; then BUILDAH_DRIVER=overlay; else BUILDAH_DRIVER=vfs; fi
  fi
  case $BUILDAH_DRIVER in
    overlay | vfs) ;;
    *) echo "MODELROLLOUT_IMAGE_STORAGE=$BUILDAH_DRIVER: use overlay or vfs (or unset it to probe)" >&2; exit 2 ;;
  esac
  export BUILDAH_DRIVER
fi
# buildah keeps its own store under the cache, so nothing touches a system-wide container store and
# `rm -rf ~/.cache/modelrollout/images` forgets every image. One store per driver (they cannot share).
BUILDAH_STORE="$IMAGES_DIR/store-$BUILDAH_DRIVER"
BUILDAH_RUNROOT="$IMAGES_DIR/run-$BUILDAH_DRIVER"
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: \(.*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
BASE_IMAGE=localhost/modelrollout/python-base:3.11-$DEBIAN_SUITE
PAUSE_IMAGE=localhost/modelrollout/pause:3.10
OPERATOR_IMAGE=${OPERATOR_IMAGE:-localhost/modelrollout/operator:dev}
SERVER_IMAGE=${SERVER_IMAGE:-localhost/modelrollout/modelserver:dev}
TRAEFIK_IMAGE=localhost/modelrollout/traefik:$TRAEFIK_VERSION
PROMETHEUS_IMAGE=localhost/modelrollout/prometheus:$PROMETHEUS_VERSION
# The host's CA bundle is mounted into RUN steps (never stored in an image), so pip trusts whatever
# the host's pip trusts.
HOST_CA=${HOST_CA:-/etc/ssl/certs/ca-certificates.crt}

bh() { buildah --root "$BUILDAH_STORE" --runroot "$BUILDAH_RUNROOT" --storage-driver "$BUILDAH_DRIVER" "$@"; }
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }
