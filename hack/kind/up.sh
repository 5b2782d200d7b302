#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make kind-up: a kind cluster with a Gateway API implementation (Envoy Gateway) and one Gateway,
# `public-gw` in namespace `gateways`, that ModelDeployments attach their HTTPRoutes to.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need docker "install Docker (the kind path needs a Docker engine)"
need kind "go install sigs.k8s.io/kind@latest"
need kubectl "bash hack/build-tools.sh"

if kind get clusters 2>/dev/null | grep -qx "$KIND_CLUSTER"; then
  log "kind cluster $KIND_CLUSTER exists"
else
  kind create cluster --name "$KIND_CLUSTER" --wait 120s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi

log "installing Envoy Gateway $ENVOY_GATEWAY_VERSION (includes the Gateway API CRDs)"
k apply --server-side --force-conflicts \
  -f "https://github.com/envoyproxy/gateway/releases/download/$ENVOY_GATEWAY_VERSION/install.yaml"
k -n envoy-gateway-system wait deployment/envoy-gateway --for=condition=Available --timeout=300s

k apply -f - <<'YAML'
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: eg}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: gateways}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: public-gw, namespace: gateways}
spec:
  gatewayClassName: eg
  listeners:
  - {name: http, protocol: HTTP, port: 80, allowedRoutes: {namespaces: {from: All}}}
YAML
k -n gateways wait gateway/public-gw --for=condition=Accepted --timeout=120s
log "kind cluster $KIND_CLUSTER ready (context $(ctx))"
