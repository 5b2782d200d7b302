#!/usr/bin/env bash
# Builds the local control plane from Go modules into $CACHE_DIR/bin: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok and helm, and versitygw (an S3-compatible
# store), the CNCF distribution registry and fake-gcs-server for the model-storage tests; for the real node (unless
# MODELROLLOUT_REAL_NODE=0) also kubelet and kube-proxy from the same Kubernetes sources, Traefik and
# Prometheus (with Kubernetes service discovery) for the real node's test bed. `build-tools.sh azurite`
# installs Azurite (the azure:// tests' Blob Storage emulator, an npm package) into $CACHE_DIR/azurite.
# Each tool has a stamp file holding the version it was built from, so a warm cache costs nothing
# and a changed pin rebuilds only that tool. `go install pkg@version` refuses modules whose go.mod
# has replace directives (Kubernetes and etcd both do), so each tool is built from a small wrapper
# module whose own replace lines pin the staging modules to their published versions.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$BIN_DIR" "$CACHE_DIR/src"

stamp_ok() { [ -f "$BIN_DIR/.$1.version" ] && [ "$(cat "$BIN_DIR/.$1.version")" = "$2" ] && [ -x "$BIN_DIR/$1" ]; }
stamp() { echo "$2" >"$BIN_DIR/.$1.version"; }

# go build -v prints one line per compiled package: turn that into a progress line every 100.
progress() {
  local name=$1 n=0 start=$SECONDS line
  while IFS= read -r line; do
    n=$((n + 1))
    if [ $((n % 100)) -eq 0 ]; then log "$name: $n packages compiled ($((SECONDS - start))s)"; fi
    case $line in *": "* | *error* | *cannot* | *undefined*) echo "$line" >&2 ;; esac
  done
  log "$name: done, $n packages compiled in $((SECONDS - start))s"
}

# new_wrapper NAME -> prints the directory of a fresh wrapper module
new_wrapper() {
  local dir="$CACHE_DIR/src/$1"
  rm -rf "$dir" && mkdir -p "$dir"
  printf 'module modelrollout.local/build/%s\n\ngo 1.24\n' "$1" >"$dir/go.mod"
  echo "$dir"
}

go_build() { # DIR NAME OUT LDFLAGS PKG...  (OUT: a file, or a directory ending in /)
  local dir=$1 name=$2 out=$3 ldflags=$4
  shift 4
  (cd "$dir" && go build -v -trimpath -ldflags "-s -w $ldflags" -o "$out" "$@" 2>&1) | progress "$name"
  test "${PIPESTATUS[0]}" -eq 0
}

build_kubernetes() { # TOOLS: space-separated commands under k8s.io/kubernetes/cmd
  local v=$KUBERNETES_VERSION tools=$1 t missing=0
  for t in $tools; do stamp_ok "$t" "$v" || missing=1; done
  [ $missing -eq 0 ] && return 0
  log "kubernetes $v: resolving modules"
  local dir gomod minor staging
  dir=$(new_wrapper kubernetes)
  gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging=${v/v1./v0.}
  {
    echo "require k8s.io/kubernetes $v"
    # Upstream points every staging module at ./staging/src/k8s.io/X; point them at the published tag.
    sed -n 's#^[[:space:]]*\(k8s\.io/[a-z0-9-]*\) => \./staging/.*#replace \1 => \1 '"$staging"'#p' "$gomod"
  } >>"$dir/go.mod"
  log "kubernetes $v: $(grep -c '^replace' "$dir/go.mod") staging replace lines generated from upstream go.mod"
  (cd "$dir" && go get "k8s.io/kubernetes@$v" >/dev/null)
  minor=${v#v1.}; minor=${minor%%.*}
  local ld=""
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
    ld+=" -X $p.buildDate=1970-01-01T00:00:00Z -X $p.gitCommit=modelrollout-build"
  done
  log "kubernetes $v: compiling $tools (cold: minutes to tens of minutes on 2 cores)"
  local pkgs=()
  for t in $tools; do pkgs+=("k8s.io/kubernetes/cmd/$t"); done
  go_build "$dir" kubernetes "$BIN_DIR/" "$ld" "${pkgs[@]}"
  for t in $tools; do stamp "$t" "$v"; done
}

build_simple() { # BINARY MODULE VERSION PACKAGE LDFLAGS
  local bin=$1 mod=$2 v=$3 pkg=$4 ld=${5:-}
  stamp_ok "$bin" "$v" && return 0
  log "$bin $v: resolving modules"
  local dir
  dir=$(new_wrapper "$bin")
  (cd "$dir" && go get "$mod@$v" >/dev/null)
  go_build "$dir" "$bin" "$BIN_DIR/$bin.tmp" "$ld" "$pkg"
  mv "$BIN_DIR/$bin.tmp" "$BIN_DIR/$bin"
  stamp "$bin" "$v"
}

# kwok's own node lifecycle Stages (initialize + heartbeat), taken from the kwok module itself so they
# always match the pinned kwok; our pod Stages live in hack/kwok/stages.yaml.
kwok_node_stages() {
  local out="$CACHE_DIR/kwok-stages/$KWOK_VERSION" dir
  [ -f "$out/node-heartbeat.yaml" ] && return 0
  dir=$(cd "$CACHE_DIR/src" && GOFLAGS="" go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$out"
  cp "$dir/kustomize/stage/node/fast/node-initialize.yaml" "$dir/kustomize/stage/node/heartbeat/node-heartbeat.yaml" "$out/"
  chmod 644 "$out"/*.yaml
}

# Traefik's go.mod points three modules at forks; `go build` of a dependency ignores its replace lines,
# so the wrapper repeats every replace that names a published module (local paths are dropped).
build_traefik() {
  local v=$TRAEFIK_VERSION mod=github.com/traefik/traefik/v3
  stamp_ok traefik "$v" && return 0
  log "traefik $v: resolving modules (cold: about 6 min on 2 cores)"
  local dir gomod
  dir=$(new_wrapper traefik)
  gomod=$(cd "$dir" && go mod download -json "$mod@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "require $mod $v"
    awk '/^replace \($/ {b=1; next} b && /^\)/ {b=0} b && /=>/ {print "replace " $0}
         /^replace [^(]/ {print}' "$gomod" | grep -v '=> \.' | sed 's/^replace[[:space:]]*/replace /'
  } >>"$dir/go.mod"
  log "traefik $v: $(grep -c '^replace' "$dir/go.mod") replace lines from upstream go.mod"
  (cd "$dir" && go get "$mod@$v" >/dev/null)
  go_build "$dir" traefik "$BIN_DIR/traefik.tmp" "-X $mod/pkg/version.Version=$v" "$mod/cmd/traefik"
  mv "$BIN_DIR/traefik.tmp" "$BIN_DIR/traefik"
  stamp traefik "$v"
}

# Prometheus for the real node, whose pods it must find through Kubernetes service discovery
# (Debian's build has no kubernetes_sd). Built with every other discovery plugin left out.
build_prometheus() {
  local v=$PROMETHEUS_VERSION mod=github.com/prometheus/prometheus
  stamp_ok prometheus "$v" && return 0
  log "prometheus $v: resolving modules"
  local dir
  dir=$(new_wrapper prometheus)
  (cd "$dir" && go get "$mod@$v" >/dev/null)
  go_build "$dir" prometheus "$BIN_DIR/prometheus.tmp" "-X github.com/prometheus/common/version.Version=$v" \
    -tags remove_all_sd,enable_kubernetes_sd "$mod/cmd/prometheus"
  mv "$BIN_DIR/prometheus.tmp" "$BIN_DIR/prometheus"
  stamp prometheus "$v"
}

# Azurite is JavaScript: npm installs the pinned version into its own prefix (a temporary one first,
# so an interrupted install is never taken for a finished one) and bin/azurite-blob points into it.
# `make azurite` (part of `make test`) runs this after system-deps, which installs npm when it is missing.
install_azurite() {
  local v=$AZURITE_VERSION dir="$CACHE_DIR/azurite"
  stamp_ok azurite-blob "$v" && return 0
  command -v npm >/dev/null || { log "azurite needs npm (Node.js 20+): make system-deps installs it"; exit 1; }
  log "azurite $v: npm install"
  rm -rf "$dir" "$dir.tmp"
  npm install --prefix "$dir.tmp" --no-audit --no-fund --no-update-notifier --loglevel=error "azurite@$v" >&2
  mv "$dir.tmp" "$dir"
  ln -sfn "$dir/node_modules/.bin/azurite-blob" "$BIN_DIR/azurite-blob"
  stamp azurite-blob "$v"
}

main() { # [all|cluster|traefik|prometheus|azurite]
  local what=${1:-all}
  case $what in
    all | cluster) ;;
    traefik | prometheus) "build_$what"; return ;;
    azurite) install_azurite; return ;;
    *) log "usage: $0 [all|cluster|traefik|prometheus|azurite]"; exit 2 ;;
  esac
  command -v go >/dev/null || { log "the go tool is required (https://go.dev/doc/install)"; exit 1; }
  local start=$SECONDS
  build_simple etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3 \
    "-X go.etcd.io/etcd/api/v3/version.GitSHA=modelrollout"
  build_simple kwok sigs.k8s.io/kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  build_simple helm helm.sh/helm/v3 "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  # The model-storage tests' S3-compatible store (cold: about 3 min on 2 cores).
  build_simple versitygw github.com/versity/versitygw "$VERSITYGW_VERSION" github.com/versity/versitygw/cmd/versitygw
  # The oci:// model tests' registry (CNCF distribution).
  build_simple registry github.com/distribution/distribution/v3 "$DISTRIBUTION_VERSION" \
    github.com/distribution/distribution/v3/cmd/registry \
    "-X github.com/distribution/distribution/v3/version.version=$DISTRIBUTION_VERSION"
  # The gs:// model tests' GCS stand-in (cold: about 1.5 min on 2 cores).
  build_simple fake-gcs-server github.com/fsouza/fake-gcs-server "$FAKE_GCS_SERVER_VERSION" \
    github.com/fsouza/fake-gcs-server
  kwok_node_stages
  build_kubernetes "kube-apiserver kube-controller-manager kube-scheduler kubectl"
  if [ "${MODELROLLOUT_REAL_NODE:-1}" != 0 ]; then
    build_kubernetes "kubelet kube-proxy"
    # The test bed's proxy; cluster-up (what = cluster) does not wait for it.
    [ "$what" = cluster ] || { build_traefik && build_prometheus; }
  fi
  log "toolchain ready in $BIN_DIR ($((SECONDS - start))s)"
}

main "$@"
