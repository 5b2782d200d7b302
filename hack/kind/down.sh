#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make kind-down: delete the kind cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need kind "go install sigs.k8s.io/kind@latest"
kind delete cluster --name "$KIND_CLUSTER"
