"""Drive a model server's gRPC API with NVIDIA's ``tritonclient.grpc``, in a process of its own.

Why a separate process: ``tritonclient.grpc`` registers Triton's ``grpc_service.proto`` (package
``inference``) in protobuf's default descriptor pool, and the server's generated
``open_inference_grpc_pb2`` registers the same message names from its own file; one process cannot
hold both (``duplicate symbol 'inference.ServerLiveRequest'``). tests/server/test_grpc.py imports the
server's stubs, so it runs this script for the tritonclient side.

Usage: ``python triton_grpc_client.py HOST:PORT`` with a JSON request on stdin::

    {"model": "fraud", "id": "...", "inputs": [{"name", "datatype", "shape", "data"}], "outputs": [names]}

Prints one JSON object: the health and metadata calls' answers, and ``infer`` with the outputs as
lists (``as_numpy``), the id and the response parameters, or ``error`` with the status and message.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException, triton_to_np_dtype


def infer(client: triton.InferenceServerClient, spec: dict[str, Any]) -> dict[str, Any]:
    inputs = []
    for item in spec["inputs"]:
        tensor = triton.InferInput(item["name"], item["shape"], item["datatype"])
        tensor.set_data_from_numpy(np.asarray(item["data"], dtype=triton_to_np_dtype(item["datatype"])))
        inputs.append(tensor)
    outputs = [triton.InferRequestedOutput(name) for name in spec.get("outputs", [])] or None
    try:
        result = client.infer(spec["model"], inputs, outputs=outputs, request_id=spec.get("id", ""))
    except InferenceServerException as exc:
        return {"error": {"status": exc.status(), "message": exc.message()}}
    response = result.get_response(as_json=True)
    names = [o["name"] for o in response["outputs"]]
    return {
        "id": response.get("id", ""),
        "model_version": response.get("model_version"),
        "parameters": {k: v.get("string_param") for k, v in response.get("parameters", {}).items()},
        "outputs": {name: result.as_numpy(name).tolist() for name in names},
        "datatypes": {o["name"]: o["datatype"] for o in response["outputs"]},
    }


def main() -> None:
    spec = json.load(sys.stdin)
    client = triton.InferenceServerClient(sys.argv[1])
    report = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(spec["model"]),
        "metadata": client.get_model_metadata(spec["model"], as_json=True),
        "infer": infer(client, spec),
    }
    client.close()
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
