#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the two images every other image here starts from, without a registry:
#   * $BASE_IMAGE: a Debian root filesystem made by debootstrap (minbase) with python3 (3.11 on
#     bookworm), venv/ensurepip and CA certificates, docs and apt lists removed. It stands in for
#     python:3.11-slim, which needs a registry this machine cannot reach.
#   * $PAUSE_IMAGE: the pod sandbox (containerd's sandbox_image), one static binary that sleeps
#     until told to stop and reaps orphans.
# Idempotent: each image is rebuilt only when its recipe (this file's content) changed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PACKAGES=python3,python3-venv,python-is-python3,ca-certificates

recipe() { # NAME -> hash of the function that builds NAME and of its inputs
  { declare -f "build_$1"; echo "$PACKAGES $DEBIAN_SUITE"; } | sha256sum | cut -c1-16
}

fresh() { # NAME IMAGE: true when IMAGE exists and was built by the current recipe
  local stamp="$IMAGES_DIR/.$1.recipe"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(recipe "$1")" ] && have_image "$2"
}

mark() { recipe "$1" >"$IMAGES_DIR/.$1.recipe"; }

import_dir() { # DIR IMAGE [CONFIG ARGS...]: commit a directory tree as a one-layer image
  local dir=$1 image=$2 ctr mnt
  shift 2
  ctr=$(bh from scratch)
  mnt=$(bh mount "$ctr")
  tar -C "$dir" -cf - . | tar -C "$mnt" -xf -
  bh umount "$ctr" >/dev/null
  [ $# -eq 0 ] || bh config "$@" "$ctr"
  bh commit --quiet --rm "$ctr" "$image" >/dev/null
}

build_base() {
  fresh base "$BASE_IMAGE" && return 0
  local rootfs="$IMAGES_DIR/rootfs-$DEBIAN_SUITE" t0=$SECONDS
  log "base image: debootstrap $DEBIAN_SUITE (minbase + $PACKAGES) from $DEBIAN_MIRROR"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase --include="$PACKAGES" "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" \
    >"$IMAGES_DIR/debootstrap.log" 2>&1 || { tail -20 "$IMAGES_DIR/debootstrap.log" >&2; exit 1; }
  # Nothing at run time reads these; python:3.11-slim drops them too.
  rm -rf "$rootfs"/usr/share/{doc,man,info,locale,lintian} "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/* "$rootfs"/tmp/*
  find "$rootfs/usr/lib/python3.11" -name __pycache__ -prune -exec rm -rf {} +
  log "base image: rootfs $(du -sm "$rootfs" | cut -f1) MiB after $((SECONDS - t0))s; importing"
  import_dir "$rootfs" "$BASE_IMAGE" --env LANG=C.UTF-8 --cmd '["python3"]'
  rm -rf "$rootfs"
  mark base
  log "base image: $BASE_IMAGE in $((SECONDS - t0))s"
}

build_pause() {
  fresh pause "$PAUSE_IMAGE" && return 0
  local dir
  dir=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the directory is this call's
  trap "rm -rf '$dir'" RETURN
  mkdir -p "$dir/root"
  cat >"$dir/pause.c" <<'C'
/* The pod sandbox: holds the pod's namespaces, reaps orphaned children, exits on SIGINT/SIGTERM. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
  struct sigaction s = {0};
  s.sa_handler = stop; sigaction(SIGINT, &s, NULL); sigaction(SIGTERM, &s, NULL);
  s.sa_handler = reap; s.sa_flags = SA_NOCLDSTOP; sigaction(SIGCHLD, &s, NULL);
  for (;;) pause();
}
C
  cc -static -Os -s -o "$dir/root/pause" "$dir/pause.c"
  import_dir "$dir/root" "$PAUSE_IMAGE" --entrypoint '["/pause"]' --user 65535:65535
  mark pause
  log "pause image: $PAUSE_IMAGE"
}

forget_legacy_store() {
  # Before overlay support the one store was images/store (vfs); its images are rebuilt in the
  # per-driver store, so the old copies (several GB) go.
  if [ -d "$IMAGES_DIR/store" ]; then
    log "removing the old vfs image store $IMAGES_DIR/store (images now live in store-$BUILDAH_DRIVER)"
    rm -rf "$IMAGES_DIR/store" "$IMAGES_DIR/run"
  fi
}

main() {
  mkdir -p "$IMAGES_DIR"
  forget_legacy_store
  case "${1:-all}" in
    pause) build_pause ;;
    base) build_base ;;
    all) build_pause && build_base ;;
    *) echo "usage: $0 [pause|base|all]" >&2; exit 2 ;;
  esac
}

main "$@"
