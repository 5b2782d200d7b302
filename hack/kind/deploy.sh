#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make kind-deploy: build the operator and model-server images, load them into kind, install the chart.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need docker "install Docker (the kind path needs a Docker engine)"
need kind "go install sigs.k8s.io/kind@latest"
need helm "bash hack/build-tools.sh"

cd "$REPO_ROOT"
docker build -t "$OPERATOR_IMAGE" .
docker build -t "$SERVER_IMAGE" server-image
kind load docker-image --name "$KIND_CLUSTER" "$OPERATOR_IMAGE" "$SERVER_IMAGE"

helm upgrade --install modelrollout charts/modelrollout \
  --kube-context "$(ctx)" --namespace modelrollout-system --create-namespace \
  --set image.repository="${OPERATOR_IMAGE%:*}" --set image.tag="${OPERATOR_IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --set operator.modelServerImage="$SERVER_IMAGE" \
  --set watch.mode=cluster --set operator.logFormat=plain \
  --wait --timeout 300s
k -n modelrollout-system rollout status deployment/modelrollout --timeout=120s
log "operator deployed; logs: kubectl --context $(ctx) -n modelrollout-system logs deploy/modelrollout -f"
