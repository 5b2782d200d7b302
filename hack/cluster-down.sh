#!/usr/bin/env bash
# Stops every process cluster-up.sh started (by the PIDs it recorded), the real node included, and
# removes the cluster state.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN="$TESTENV_DIR/run"
# The real node first (its processes, mounts, cgroups and network namespace), while its PIDs are known.
bash "$HACK_DIR/node/node.sh" down
for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
  f="$RUN/$name.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$f"
done
rm -rf "$TESTENV_DIR/etcd" "$TESTENV_DIR/run" "$TESTENV_DIR/pki" "$TESTENV_DIR/kubeconfig"
