#!/usr/bin/env bash
# The Open Inference Protocol clients the model-server tests drive it with, in venvs of their own:
# KServe's python SDK (InferenceRESTClient, InferenceGRPCClient). Why apart from .venv: kserve brings
# its own stack (about 300 MB, its own pins of fastapi, protobuf and grpcio) that must not change
# the project's environment, and its generated gRPC module defines the same message names as ours.
# Idempotent: a stamp holds the spec the venv was built from. Installed with the project venv's uv.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KSERVE_CLIENT_SPEC=${KSERVE_CLIENT_SPEC:-kserve==0.21.0}
DIR="$CACHE_DIR/client-venvs/kserve"
UV="${VENV:-.venv}/bin/uv"

if [ -f "$DIR/.installed" ] && [ "$(cat "$DIR/.installed")" = "$KSERVE_CLIENT_SPEC" ]; then
  exit 0
fi
t0=$SECONDS
rm -rf "$DIR"
if [ -x "$UV" ]; then
  SSL_CERT_FILE=${PIP_CERT:-${SSL_CERT_FILE:-}} "$UV" venv -q "$DIR" --python "${VENV:-.venv}/bin/python"
  SSL_CERT_FILE=${PIP_CERT:-${SSL_CERT_FILE:-}} "$UV" pip install -q --python "$DIR/bin/python" "$KSERVE_CLIENT_SPEC"
else
  python3 -m venv "$DIR"
  "$DIR/bin/pip" install -q --disable-pip-version-check "$KSERVE_CLIENT_SPEC"
fi
echo "$KSERVE_CLIENT_SPEC" >"$DIR/.installed"
log "client venv kserve ($KSERVE_CLIENT_SPEC) ready in $((SECONDS - t0))s: $DIR"
