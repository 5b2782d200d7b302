#!/usr/bin/env bash
# Stops every process cluster-up.sh started (by the PIDs it recorded), the real node included, and
# removes the cluster state.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN="$TESTENV_DIR/run"
# The real node first (its processes, mounts, cgroups and network namespace), while its PIDs are known.
bash "$HACK_DIR/node/node.sh" down
# The control plane all at once: its state is removed right below, so nothing needs an orderly exit.
STOP_GRACE=0 stop_pidfiles "$RUN" kwok kube-scheduler kube-controller-manager kube-apiserver etcd
rm -rf "$TESTENV_DIR/etcd" "$TESTENV_DIR/run" "$TESTENV_DIR/pki" "$TESTENV_DIR/kubeconfig"
