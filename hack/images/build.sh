#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make image`: build the operator and model-server images from the project's Dockerfiles.
#
#   build.sh [app|testbed|all]   app (default): operator + model server; testbed: the Traefik and
#                                Prometheus images the real node runs; all: both
#
# With a working Docker engine: `docker build`, as before. Without one (this machine): buildah with
# chroot isolation and overlay storage (vfs where overlayfs cannot be mounted) in
# ~/.cache/modelrollout/images/store-<driver>, from the same Dockerfiles.
# Their base, python:3.11-slim, cannot be pulled here (no registry), so that name is given, inside
# this private store only, to the Debian image hack/images/base.sh makes with debootstrap; the
# Python wheels still come from the package index, as in a Docker build. Each image's size and
# build time is printed and appended to $IMAGES_DIR/build-times.tsv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

docker_works() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

report() { # IMAGE SECONDS
  local size
  size=$(bh images --format '{{.Size}}' "$1" 2>/dev/null | head -1)
  log "image $1: $size, built in $2s"
  printf '%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$1" "$size" "$2" >>"$IMAGES_DIR/build-times.tsv"
}

inputs_digest() { # PATH...: one digest of every file under PATHs (caches and bytecode left out)
  find "$@" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-64
}

bud() { # IMAGE CONTEXT INPUTS [ARGS...]: buildah's `docker build`, skipped when nothing it reads changed
  # INPUTS: a digest of what the build reads (the Dockerfile and the context's files not ignored).
  # With vfs storage even an all-cached build takes minutes (each step's container and layer is a
  # full copy of the root filesystem: 137 s for the operator), so an image whose inputs and base
  # image are unchanged is kept as it is (with overlay that saves a few seconds).
  local image=$1 context=$2 inputs=$3 t0=$SECONDS stamp
  shift 3
  inputs="$inputs $(bh inspect --type image --format '{{.FromImageID}}' "$BASE_IMAGE" 2>/dev/null || true)"
  stamp="$IMAGES_DIR/inputs/$(echo "$image" | tr '/:' '__')"
  if have_image "$image" && [ "$(cat "$stamp" 2>/dev/null)" = "$inputs" ]; then
    log "image $image: up to date (inputs unchanged)"
    return 0
  fi
  # --layers caches each step like Docker does; the host CA bundle is mounted for pip, not copied.
  bh bud --quiet --isolation chroot --layers --pull-never \
    --volume "$HOST_CA:/etc/ssl/certs/ca-certificates.crt:ro" \
    -t "$image" "$@" "$context" >/dev/null
  mkdir -p "$IMAGES_DIR/inputs"
  echo "$inputs" >"$stamp"
  report "$image" $((SECONDS - t0))
}

app_images() {
  if docker_works; then
    docker build -t "$OPERATOR_IMAGE" .
    docker build -t "$SERVER_IMAGE" server-image
    return 0
  fi
  command -v buildah >/dev/null || { log "neither Docker nor buildah: run make system-deps"; exit 1; }
  bash "$HACK_DIR/images/base.sh" all
  # The Dockerfiles' FROM python:3.11-slim resolves to the debootstrap image in this store only.
  bh tag "$BASE_IMAGE" docker.io/library/python:3.11-slim
  # The files .dockerignore lets into each context (keep in step with it and the Dockerfiles).
  bud "$OPERATOR_IMAGE" . \
    "$(inputs_digest Dockerfile .dockerignore pyproject.toml README.md operator server-image/modelserver)" \
    -f Dockerfile
  bud "$SERVER_IMAGE" server-image "$(inputs_digest server-image)" -f server-image/Dockerfile
}

testbed_images() {
  local dir
  dir=$(mktemp -d)
  # shellcheck disable=SC2064  # expand now: the directory is this call's
  trap "rm -rf '$dir'" RETURN
  # Traefik: one static Go binary built by hack/build-tools.sh from the pinned version.
  bash "$HACK_DIR/build-tools.sh" traefik
  cp "$BIN_DIR/traefik" "$dir/traefik"
  cp "$HACK_DIR/images/traefik.Containerfile" "$dir/Containerfile"
  bud "$TRAEFIK_IMAGE" "$dir" "$(inputs_digest "$dir")" -f "$dir/Containerfile"
  # Prometheus with Kubernetes service discovery (Debian's build has none), also a static binary.
  bash "$HACK_DIR/build-tools.sh" prometheus
  rm -f "$dir"/*
  cp "$BIN_DIR/prometheus" "$dir/prometheus"
  cp "$HACK_DIR/images/prometheus.Containerfile" "$dir/Containerfile"
  bud "$PROMETHEUS_IMAGE" "$dir" "$(inputs_digest "$dir")" -f "$dir/Containerfile"
}

main() {
  mkdir -p "$IMAGES_DIR"
  case "${1:-app}" in
    app) app_images ;;
    testbed) testbed_images ;;
    all) app_images && testbed_images ;;
    *) echo "usage: $0 [app|testbed|all]" >&2; exit 2 ;;
  esac
}

main "$@"
