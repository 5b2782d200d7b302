#!/usr/bin/env bash
# Obtains the upstream CRDs the traffic routers write against, so integration tests run the real
# OpenAPI schemas and CEL rules in the API server instead of our idea of them:
#   - Gateway API, standard channel: sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION, config/crd/standard/
#   - Istio networking: istio.io/api@$ISTIO_API_VERSION, kubernetes/customresourcedefinitions.gen.yaml,
#     keeping only the networking.istio.io CRDs (VirtualService, DestinationRule, ...).
# Both come from their published Go modules (checksummed by the Go toolchain), pinned in
# hack/versions.env. Only CustomResourceDefinition documents are kept: Gateway API's standard
# directory also ships a ValidatingAdmissionPolicy that tests have no business installing.
#
# Output: $CACHE_DIR/crds/gateway-api-<version>/ and $CACHE_DIR/crds/istio-<version>/, one YAML file
# per CRD. Idempotent: a directory with a stamp is reused without touching the network. Prints the
# two directories, one per line, on stdout (logs go to stderr).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Module downloads must not depend on whatever module the caller's directory belongs to.
export GOFLAGS='' GOTOOLCHAIN=local
OUT_ROOT="$CACHE_DIR/crds"

module_dir() { # MODULE@VERSION -> the module's extracted directory in the Go module cache
  local json dir
  json=$(cd "$OUT_ROOT" && go mod download -json "$1")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")
  if [ -z "$dir" ] || [ ! -d "$dir" ]; then
    log "go mod download $1 gave no directory: $json"
    return 1
  fi
  echo "$dir"
}

# split_crds FILE OUTDIR GROUP: write each CustomResourceDefinition document of FILE whose
# spec.group is GROUP (any group when empty) to OUTDIR/<metadata.name>.yaml.
split_crds() {
  awk -v outdir="$2" -v want="$3" '
    function flush() {
      if (kind == "CustomResourceDefinition" && name != "" && (want == "" || group == want)) {
        f = outdir "/" name ".yaml"; printf "%s", doc > f; close(f); n++
      }
      doc = ""; kind = ""; name = ""; group = ""; inmeta = 0
    }
    /^---[[:space:]]*$/ { flush(); next }
    {
      doc = doc $0 "\n"
      if ($0 ~ /^kind:[[:space:]]/) { kind = $2 }
      if ($0 ~ /^metadata:/) { inmeta = 1 } else if ($0 ~ /^[^[:space:]#]/) { inmeta = 0 }
      if (inmeta && $0 ~ /^  name:[[:space:]]/) { name = $2; gsub(/["\047]/, "", name) }
      if ($0 ~ /^  group:[[:space:]]/) { group = $2 }
    }
    END { flush(); print n + 0 }
  ' "$1"
}

fetch() { # NAME MODULE VERSION GROUP FILES...  (FILES relative to the module root)
  local name=$1 module=$2 version=$3 group=$4
  shift 4
  local out="$OUT_ROOT/$name-$version" tmp src file count=0
  if [ -f "$out/.complete" ]; then
    echo "$out"
    return 0
  fi
  log "fetching $name CRDs from Go module $module@$version"
  src=$(module_dir "$module@$version")
  tmp=$(mktemp -d "$OUT_ROOT/.$name-$version.XXXXXX")
  for file in "$@"; do
    [ -f "$src/$file" ] || { log "$module@$version has no $file"; rm -rf "$tmp"; return 1; }
    count=$((count + $(split_crds "$src/$file" "$tmp" "$group")))
  done
  if [ "$count" -eq 0 ]; then
    log "no CRDs found for $name in $module@$version"
    rm -rf "$tmp"
    return 1
  fi
  chmod 755 "$tmp"
  echo "$module@$version" >"$tmp/.complete"
  rm -rf "$out" && mv "$tmp" "$out"
  log "$name: $count CRDs in $out"
  echo "$out"
}

main() {
  mkdir -p "$OUT_ROOT"
  # A throwaway module so `go mod download` has a main module to resolve against.
  [ -f "$OUT_ROOT/go.mod" ] || printf 'module modelrollout.local/crds\n\ngo 1.24\n' >"$OUT_ROOT/go.mod"

  local gw_files=() f mod_dir
  mod_dir=""
  if [ ! -f "$OUT_ROOT/gateway-api-$GATEWAY_API_VERSION/.complete" ]; then
    mod_dir=$(module_dir "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION")
    for f in "$mod_dir"/config/crd/standard/*.yaml; do gw_files+=("config/crd/standard/${f##*/}"); done
  fi
  fetch gateway-api sigs.k8s.io/gateway-api "$GATEWAY_API_VERSION" gateway.networking.k8s.io "${gw_files[@]}"
  fetch istio istio.io/api "$ISTIO_API_VERSION" networking.istio.io kubernetes/customresourcedefinitions.gen.yaml
}

main "$@"
