#!/usr/bin/env bash
# `make demo`: a local control plane, the CRD, the operator, and a ModelDeployment rolled out twice:
# the first revision becomes stable, then a new model walks the canary steps to 100 %.
# With CI=true it exits 0 at the end and stops what it started; otherwise it keeps watching.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
export KUBECONFIG="$TESTENV_DIR/kubeconfig" PATH="$BIN_DIR:$REPO_ROOT/.venv/bin:$PATH"
NS=demo
OPERATOR_PID=""
STARTED_CLUSTER=0

cleanup() {
  if [ -n "$OPERATOR_PID" ] && kill -0 "$OPERATOR_PID" 2>/dev/null; then kill "$OPERATOR_PID"; wait "$OPERATOR_PID" 2>/dev/null || true; fi
  if [ "${CI:-}" = "true" ] && [ "$STARTED_CLUSTER" = 1 ]; then bash hack/cluster-down.sh; fi
}
trap cleanup EXIT

kubectl get --raw /readyz >/dev/null 2>&1 || { STARTED_CLUSTER=1; bash hack/cluster-up.sh; }
kubectl apply --server-side --force-conflicts -f crds/ >/dev/null
kubectl wait --for=condition=Established crd/modeldeployments.modelrollout.io --timeout=60s >/dev/null
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Start from nothing so every run shows the same story (children go with it by garbage collection).
kubectl delete mdep --all -n "$NS" --wait=true >/dev/null

log "starting the operator (log: $TESTENV_DIR/operator-demo.log)"
MODELROLLOUT_TICK_SECONDS=1 .venv/bin/python -m modelrollout run --all-namespaces \
  --liveness=http://127.0.0.1:0/healthz >"$TESTENV_DIR/operator-demo.log" 2>&1 &
OPERATOR_PID=$!

log "applying examples/fraud-none.yaml"
kubectl apply -n "$NS" -f examples/fraud-none.yaml
kubectl wait -n "$NS" mdep/fraud --for=condition=Ready --timeout=120s
kubectl get -n "$NS" mdep,deploy,svc

log "rolling out a new model: canary steps 25% -> 50% -> 100% (weights by replica ratio)"
kubectl patch -n "$NS" mdep/fraud --type=merge \
  -p '{"spec":{"model":{"uri":"https://models.example.com/fraud/better.onnx"},"strategy":{"canary":{"stepDuration":"3s"}}}}'
deadline=$((SECONDS + 120))
last=""
fmt='{.status.phase} stable={.status.stableRevision} canary={.status.canaryRevision} weight={.status.canaryWeight}% step={.status.currentStep} {.status.message}'
while [ $SECONDS -lt $deadline ]; do
  line=$(kubectl get -n "$NS" mdep/fraud -o jsonpath="$fmt" 2>/dev/null)
  if [ "$line" != "$last" ]; then log "$line"; last=$line; fi
  case $line in "Succeeded stable="*" canary= "*) break ;; esac
  sleep 0.5
done
kubectl get -n "$NS" mdep,deploy,svc
kubectl get -n "$NS" mdep/fraud -o jsonpath='{range .status.history[*]}{.revision}{"\t"}{.phase}{"\t"}{.modelURI}{"\n"}{end}'

if [ "${CI:-}" = "true" ]; then
  log "demo finished"
  exit 0
fi
log "watching (Ctrl-C to stop; the cluster stays up: make cluster-down)"
kubectl get -n "$NS" mdep -w
