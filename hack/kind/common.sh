#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Shared settings for the kind path (Docker users only). Sourced, never run.
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"
# Prefer the pinned kubectl/helm that hack/build-tools.sh builds, when they exist.
if [ -d "$BIN_DIR" ]; then PATH="$BIN_DIR:$PATH"; fi
KIND_CLUSTER=${KIND_CLUSTER:-modelrollout}
OPERATOR_IMAGE=${OPERATOR_IMAGE:-modelrollout/operator:dev}
SERVER_IMAGE=${SERVER_IMAGE:-modelrollout/modelserver:dev}
ENVOY_GATEWAY_VERSION=${ENVOY_GATEWAY_VERSION:-v1.7.2}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
E2E_NAMESPACE=${E2E_NAMESPACE:-ml}
export PATH KUBECONFIG="${KIND_KUBECONFIG:-$HOME/.kube/config}"

need() { # CMD HINT: fail early with what to install instead of half-way through
  command -v "$1" >/dev/null 2>&1 || { log "missing '$1': $2"; exit 1; }
}

ctx() { echo "kind-$KIND_CLUSTER"; }
k() { kubectl --context "$(ctx)" "$@"; }
