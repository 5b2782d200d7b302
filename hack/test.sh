#!/usr/bin/env bash
# `make test`'s pytest: the cluster-free tests (tests/unit, tests/server) run in a second pytest
# process beside the cluster suite (tests/real_node, tests/e2e, tests/integration).
#
# Why: the cluster suite spends most of its time waiting for rollout clocks (step durations,
# analysis intervals, probes), one scenario after another, while the 540 cluster-free tests need
# about two minutes of CPU and nothing from the cluster. Side by side, make test is that much
# shorter. Each process keeps its own session (the cluster suite's fixtures, ordering and figures
# are unchanged); the cluster-free log is printed after the cluster suite's, and the exit status is
# the worse of the two. Arguments go to both. Naming a test path, or MODELROLLOUT_TEST_SPLIT=0,
# runs one plain pytest instead.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT" || exit 1
PY=.venv/bin/python

split=${MODELROLLOUT_TEST_SPLIT:-1}
for arg in "$@"; do
  case $arg in tests* | ./tests*) split=0 ;; esac
done
if [ "$split" = 0 ]; then
  exec "$PY" -m pytest "$@"
fi

mkdir -p "$TESTENV_DIR"
local_log="$TESTENV_DIR/pytest-cluster-free.log"
"$PY" -m pytest "$@" tests/unit tests/server > "$local_log" 2>&1 &
local_pid=$!
# Stop the background run if this script is interrupted (its own tests clean up after themselves).
trap 'kill "$local_pid" 2>/dev/null' INT TERM

"$PY" -m pytest "$@" tests/real_node tests/e2e tests/integration
cluster_rc=$?
wait "$local_pid"
local_rc=$?
trap - INT TERM

echo
echo "==================== cluster-free tests (tests/unit, tests/server), run beside the above ===================="
cat "$local_log"
echo "pytest exit status: cluster suite $cluster_rc, cluster-free tests $local_rc"
[ "$cluster_rc" -ne 0 ] && exit "$cluster_rc"
exit "$local_rc"
