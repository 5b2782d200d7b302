#!/usr/bin/env bash
# Shared paths for the hack/ scripts. Sourced, never run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
CACHE_DIR=${MODELROLLOUT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrollout}
BIN_DIR="$CACHE_DIR/bin"
TESTENV_DIR=${MODELROLLOUT_TESTENV:-$REPO_ROOT/.testenv}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# Whether PID runs. A zombie does not: in a container whose PID 1 reaps no orphans, a stopped
# process stays a zombie, and `kill -0` alone would wait out the whole grace period for it.
running() {
  local stat
  read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

# stop_pidfiles DIR NAME...: SIGTERM every process named by DIR/NAME.pid at once, SIGKILL the ones
# still running after STOP_GRACE tenths of a second (default 50), remove the PID files. Together, not
# one after another: each component takes about 2 s to shut down gracefully. STOP_GRACE=0 kills at
# once, for callers that delete the components' state right after: an orderly exit buys nothing there.
stop_pidfiles() {
  local dir=$1 name pid
  shift
  local -A pids=()
  for name in "$@"; do
    [ -f "$dir/$name.pid" ] || continue
    pid=$(cat "$dir/$name.pid")
    if running "$pid"; then
      kill "$pid" 2>/dev/null || true
      pids[$name]=$pid
    fi
  done
  local _alive
  for _ in $(seq "${STOP_GRACE:-50}"); do
    _alive=0
    for name in "${!pids[@]}"; do running "${pids[$name]}" && _alive=1; done
    [ $_alive -eq 1 ] || break
    sleep 0.1
  done
  for name in "$@"; do
    if [ -n "${pids[$name]:-}" ]; then
      kill -9 "${pids[$name]}" 2>/dev/null || true
      log "stopped $name (pid ${pids[$name]})"
    fi
    rm -f "$dir/$name.pid"
  done
}
