#!/usr/bin/env bash
# Installs the project and its extras into the virtualenv $1 (already created by `python3 -m venv`).
#
# With uv when it can be installed and works here (a warm install takes ~40 s instead of pip's
# ~100 s, which a fresh checkout pays on every `make test`), otherwise with pip, the way it always
# did: uv is only a faster installer of the same pins from the same index, so the result is the
# same packages at the same versions. uv does not read pip's configuration, so the settings pip
# gets from its environment are handed over: the CA bundle (PIP_CERT) and a local wheel
# directory (PIP_FIND_LINKS). uv compiles the bytecode as pip does: without it, and with
# PYTHONDONTWRITEBYTECODE=1 set (as on this machine), every Python process would compile its
# imports from source again (kubernetes.client: 1.5 s instead of 0.64 s per process).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV=$1
SPEC=${2:-.[operator,server,dev]}
PY="$VENV/bin/python"

with_uv() {
  "$PY" -m pip install -q uv || return 1
  local args=(pip install -q --python "$PY")
  if [ -n "${PIP_FIND_LINKS:-}" ] && [ -d "$PIP_FIND_LINKS" ]; then args+=(--find-links "$PIP_FIND_LINKS"); fi
  SSL_CERT_FILE=${PIP_CERT:-${SSL_CERT_FILE:-}} "$VENV/bin/uv" "${args[@]}" --compile-bytecode -e "$SPEC"
}

with_pip() {
  "$PY" -m pip install -q --upgrade pip
  "$PY" -m pip install -q -e "$SPEC"
}

t0=$SECONDS
if [ "${MODELROLLOUT_PIP_ONLY:-0}" != 1 ] && with_uv; then
  log "virtualenv $VENV installed with uv in $((SECONDS - t0))s"
else
  [ "${MODELROLLOUT_PIP_ONLY:-0}" = 1 ] || log "uv failed or is unavailable; installing with pip"
  with_pip
  log "virtualenv $VENV installed with pip in $((SECONDS - t0))s"
fi
