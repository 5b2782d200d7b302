#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Shared settings for building images without Docker (buildah, chroot isolation, vfs storage).
# Sourced, never run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

IMAGES_DIR="$CACHE_DIR/images"
# buildah keeps its own store under the cache, so nothing touches a system-wide container store and
# `rm -rf ~/.cache/modelrollout/images` forgets every image.
BUILDAH_STORE="$IMAGES_DIR/store"
BUILDAH_RUNROOT="$IMAGES_DIR/run"
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

bh() { buildah --root "$BUILDAH_STORE" --runroot "$BUILDAH_RUNROOT" --storage-driver vfs "$@"; }
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }
