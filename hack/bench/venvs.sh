#!/usr/bin/env bash
# Create (idempotently) the isolated virtual environments for the competitor servers.
# Why separate venvs: mlserver 1.7.1 pins an older fastapi than ours, and kserve brings its own
# stack; neither may change the project's .venv. They live outside the repository.
set -euo pipefail

BENCH_VENVS="${BENCH_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrollout/bench-venvs}"
PYTHON="${PYTHON:-python3}"
KSERVE_SPEC="${KSERVE_SPEC:-kserve==0.21.0}"
MLSERVER_SPEC="${MLSERVER_SPEC:-mlserver==1.7.1}"
ORT_SPEC="${ORT_SPEC:-onnxruntime>=1.17,<2}"

make_venv() {  # name, pip args...
  local name="$1"; shift
  local dir="$BENCH_VENVS/$name"
  local stamp="$dir/.installed"
  local want="$*"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "bench venv $name: up to date ($dir)"
    return
  fi
  echo "bench venv $name: installing $want"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check --upgrade pip
  "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
  echo "$want" >"$stamp"
}

mkdir -p "$BENCH_VENVS"
make_venv kserve "$KSERVE_SPEC" "$ORT_SPEC" "numpy<3"
# uvloop 0.21.0: mlserver 1.7.1 breaks on newer uvloop's loop policy handling.
make_venv mlserver "$MLSERVER_SPEC" "$ORT_SPEC" "numpy<3" "uvloop==0.21.0"
