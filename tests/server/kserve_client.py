"""Drive a model server with KServe's python SDK (``kserve==0.21.0``), in KServe's own venv.

Why a separate process and venv: the SDK brings its own stack (hack/client-venvs.sh), and its
generated gRPC module defines the protocol's message names as the server's does (one process cannot
hold both). tests/server/test_kserve_client.py runs this script.

Usage: ``python kserve_client.py MODE URL`` with ``{"model", "id", "inputs": [{"name", "datatype",
"shape", "data"}]}`` on stdin; MODE is ``rest-json``, ``rest-binary`` (binary inputs and outputs,
the protocol's binary tensor extension) or ``grpc`` (URL is then ``host:port``). Prints
``{"outputs": {name: list}, "id": ...}`` or ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_}


def request(spec: dict[str, Any], binary: bool) -> InferRequest:
    inputs = []
    for item in spec["inputs"]:
        tensor = InferInput(item["name"], item["shape"], item["datatype"])
        tensor.set_data_from_numpy(np.asarray(item["data"], dtype=DTYPES[item["datatype"]]), binary_data=binary)
        inputs.append(tensor)
    outputs = [RequestedOutput(name, {"binary_data": True}) for name in spec.get("outputs", [])] if binary else None
    return InferRequest(spec["model"], inputs, request_id=spec.get("id"), request_outputs=outputs)


async def run(mode: str, url: str, spec: dict[str, Any]) -> dict[str, Any]:
    try:
        if mode == "grpc":
            client = InferenceGRPCClient(url, timeout=20)
            response = await client.infer(request(spec, binary=False))
            await client.close()
        else:
            rest = InferenceRESTClient(RESTConfig(protocol="v2", timeout=20))
            response = await rest.infer(url, request(spec, binary=mode == "rest-binary"), model_name=spec["model"])
            await rest.close()
    except Exception as exc:  # the test reads the client's own message
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"id": response.id, "outputs": {o.name: o.as_numpy().tolist() for o in response.outputs}}


def main() -> None:
    print(json.dumps(asyncio.run(run(sys.argv[1], sys.argv[2], json.load(sys.stdin)))))


if __name__ == "__main__":
    main()
