#!/usr/bin/env bash
# Regenerate the model server's gRPC modules from the vendored Open Inference Protocol .proto:
#   server-image/modelserver/proto/open_inference_grpc_pb2.py       (messages)
#   server-image/modelserver/proto/open_inference_grpc_pb2.pyi      (their types, for mypy)
#   server-image/modelserver/proto/open_inference_grpc_pb2_grpc.py  (service stub and servicer)
#
# The generated files are checked in (the image installs no grpcio-tools); tests/server/test_grpc.py
# fails when they differ from what this script makes. protoc runs with server-image/ as the include
# root so the generated imports are package-absolute (`from modelserver.proto import ...`).
# grpcio-tools comes from the `dev` extra (pinned there: its version is written into the output).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${1:-$ROOT/server-image}"
PROTO="modelserver/proto/open_inference_grpc.proto"

"$PY" -c "import grpc_tools" 2>/dev/null || { echo "grpcio-tools not installed in $PY (pip install -e '.[dev]')" >&2; exit 1; }
mkdir -p "$OUT/modelserver/proto"
cd "$ROOT/server-image"
"$PY" -m grpc_tools.protoc -I . --python_out="$OUT" --pyi_out="$OUT" --grpc_python_out="$OUT" "$PROTO"
echo "generated into $OUT/modelserver/proto"
