#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# export.sh IMAGE...: write each image from the buildah store as a docker-archive tarball (what
# `ctr images import` reads, names included) and print the paths. A tarball is reused while the
# image ID is unchanged; tarballs of images no longer tagged in the store (replaced by a rebuild,
# hundreds of MB each) are removed.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
mkdir -p "$IMAGES_DIR/archives"
for image in "$@"; do
  id=$(bh inspect --type image --format '{{.FromImageID}}' "$image")
  out="$IMAGES_DIR/archives/${id:0:16}.tar"
  if [ ! -f "$out" ]; then
    bh push --quiet "$image" "docker-archive:$out.tmp:$image" >/dev/null
    mv "$out.tmp" "$out"
  fi
  echo "$out"
done
keep=$(bh images --filter dangling=false --no-trunc --format '{{.ID}}' | sed 's/^sha256://' | cut -c1-16)
for archive in "$IMAGES_DIR"/archives/*.tar; do
  [ -e "$archive" ] || continue
  grep -qx "$(basename "$archive" .tar)" <<<"$keep" || rm -f "$archive"
done
