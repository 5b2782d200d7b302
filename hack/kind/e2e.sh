#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# make kind-e2e: a real rollout on kind. Serves the example ONNX models from an in-cluster file
# server, creates a ModelDeployment behind the Gateway, rolls out a better model (must succeed), then
# an artifact whose sha256 does not match (its pods never become ready: it must be rolled back, the
# better model staying stable). No Prometheus here, so no metric gates: the local `make demo` is
# where gates are exercised.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
need kubectl "bash hack/build-tools.sh"
cd "$REPO_ROOT"
NS=$E2E_NAMESPACE
MODELS=examples/models

sha() { awk -v f="$1" '$2 == f || $2 == "*"f {print $1}' "$MODELS/SHA256SUMS"; }

field() { k -n "$NS" get mdep fraud -o jsonpath="$1"; }

wait_phase() { # PHASE [TIMEOUT]: the operator has seen the latest spec and reports PHASE
  local want=$1 deadline=$((SECONDS + ${2:-300})) seen
  while :; do
    seen="$(field '{.metadata.generation} {.status.observedGeneration} {.status.phase}')"
    read -r gen observed phase <<<"$seen"
    if [ "$gen" = "$observed" ] && [ "$phase" = "$want" ]; then return 0; fi
    if [ $SECONDS -ge $deadline ]; then
      log "timed out waiting for phase $want (generation $gen, observed ${observed:-none}, phase ${phase:-none})"
      k -n "$NS" get mdep fraud -o yaml
      exit 1
    fi
    sleep 2
  done
}

rollout() { # MODEL [SHA256]: point the ModelDeployment at examples/models/MODEL.onnx
  k -n "$NS" apply -f - <<YAML
apiVersion: modelrollout.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud}
spec:
  model:
    name: fraud
    uri: http://model-store.$NS.svc:8000/$1.onnx
    sha256: "${2:-$(sha "$1.onnx")}"
  serving: {replicas: 2, warmup: {requests: 10}}
  traffic:
    gatewayAPI:
      parentRefs: [{name: public-gw, namespace: gateways}]
      hostnames: [models.example.com]
  strategy:
    canary: {steps: [20, 50, 100], stepDuration: 10s}
  bake: {duration: 10s}
  progressDeadlineSeconds: 120
YAML
}

k create namespace "$NS" --dry-run=client -o yaml | k apply -f -
k -n "$NS" create configmap model-files --dry-run=client -o yaml \
  --from-file="$MODELS/baseline.onnx" --from-file="$MODELS/better.onnx" |
  k apply -f -
k -n "$NS" apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: model-store}
spec:
  selector: {matchLabels: {app: model-store}}
  template:
    metadata: {labels: {app: model-store}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 10001}
      containers:
      - name: http
        image: python:3.11-slim
        command: [python, -m, http.server, "8000", --directory, /models]
        ports: [{containerPort: 8000}]
        readinessProbe: {httpGet: {path: /baseline.onnx, port: 8000}}
        securityContext: {readOnlyRootFilesystem: true, allowPrivilegeEscalation: false}
        volumeMounts: [{name: models, mountPath: /models}]
      volumes: [{name: models, configMap: {name: model-files}}]
---
apiVersion: v1
kind: Service
metadata: {name: model-store}
spec:
  selector: {app: model-store}
  ports: [{port: 8000, targetPort: 8000}]
YAML
k -n "$NS" rollout status deployment/model-store --timeout=180s

log "1/3 first revision: baseline"
rollout baseline
wait_phase Succeeded
first=$(field '{.status.stableRevision}')

log "2/3 canary rollout: better (must succeed)"
rollout better
wait_phase Succeeded
second=$(field '{.status.stableRevision}')
[ "$second" != "$first" ] || { log "stable revision did not change"; exit 1; }

log "3/3 canary rollout: corrupted artifact, sha256 mismatch (must be rolled back)"
rollout baseline "$(sha better.onnx)"
wait_phase RolledBack
[ "$(field '{.status.stableRevision}')" = "$second" ] || { log "stable revision changed on rollback"; exit 1; }

k -n "$NS" get mdep,deploy,svc,httproute
log "kind e2e passed: $first -> $second, corrupted artifact rolled back"
