#!/usr/bin/env bash
# make bench-server: benchmark the model server against the raw session.run limit, a raw ASGI
# handler (the Python HTTP floor), a minimal FastAPI handler, KServe and MLServer, and write the
# table to docs/benchmarks.md. Ours, the floors, KServe and MLServer are also measured with the binary
# tensor data extension over HTTP and with gRPC ModelInfer, where each supports it.
#
# Everything that listens runs inside a network namespace created here (KServe's REST server binds
# 0.0.0.0), with only loopback up; the namespace is removed on exit. Without the privileges for
# `ip netns` it falls back to the host's loopback and skips KServe. Bounded: each wrk (or grpc_load.py) phase runs
# BENCH_SECONDS (default 5, max 120) plus a hard timeout, in BENCH_ROUNDS (default 3) rounds; the
# whole run takes ~11 min after the one-time creation of the competitor venvs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
export BENCH_VENVS="${BENCH_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrollout/bench-venvs}"
NETNS="mr-bench-$$"

command -v wrk >/dev/null || { echo "wrk not found: apt-get install -y wrk" >&2; exit 1; }
[[ -x "$PY" ]] || { echo "python not found at $PY (run make setup first)" >&2; exit 1; }

bash "$ROOT/hack/bench/venvs.sh"

cleanup() { ip netns del "$NETNS" 2>/dev/null || true; }

if ip netns add "$NETNS" 2>/dev/null; then
  trap cleanup EXIT INT TERM
  ip netns exec "$NETNS" ip link set lo up
  echo "running inside network namespace $NETNS (loopback only)"
  ip netns exec "$NETNS" "$PY" "$ROOT/hack/bench/run.py" "$@"
else
  echo "cannot create a network namespace (needs root/CAP_SYS_ADMIN): running on host loopback without KServe" >&2
  BENCH_SKIP_KSERVE=1 "$PY" "$ROOT/hack/bench/run.py" "$@"
fi
