"""The Python gRPC floor: a bare ``grpc.aio`` server answering ``ModelInfer`` and nothing else useful.

Why it exists: it is to the gRPC mode what ``raw_asgi_app.py`` is to HTTP — the least a Python
server on ``grpc.aio`` can do for the request ``grpc_load.py`` sends (``raw_input_contents``, as
``tritonclient.grpc`` sends): parse the ``ModelInferRequest`` (the protobuf messages of
``tritonclient.grpc.service_pb2``, package ``inference`` as in every v2 server), run the same
onnxruntime session (``floor_model.py``: one intra-op thread) and answer with
``raw_output_contents``. No validation, no metrics, any model name; a malformed request raises and
gRPC answers UNKNOWN. ``ModelReady`` answers true. It also bounds the load generator: whatever
the generator reaches against this server, it reaches at least that against any other.

Run as ``python raw_grpc_app.py MODEL_PATH PORT`` (binds 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import sys

import grpc
import numpy as np
from floor_model import FloorModel, _datatype  # beside this file: run as a script, its directory is on sys.path
from tritonclient.grpc import service_pb2 as pb

SERVICE = "inference.GRPCInferenceService"


def main() -> None:
    path, port = sys.argv[1], int(sys.argv[2])
    model = FloorModel(path)

    async def model_infer(request: pb.ModelInferRequest, context: object) -> pb.ModelInferResponse:
        tensor = request.inputs[0]
        x = np.frombuffer(request.raw_input_contents[0], dtype="<f4").astype(np.float32).reshape(tuple(tensor.shape))
        response = pb.ModelInferResponse(model_name=request.model_name, id=request.id)
        for name, result in model.run(tensor.name, x):
            response.outputs.add(name=name, datatype=_datatype(result), shape=result.shape)
            response.raw_output_contents.append(result.astype(result.dtype.newbyteorder("<"), copy=False).tobytes())
        return response

    async def model_ready(request: pb.ModelReadyRequest, context: object) -> pb.ModelReadyResponse:
        return pb.ModelReadyResponse(ready=True)

    handlers = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            model_infer, pb.ModelInferRequest.FromString, pb.ModelInferResponse.SerializeToString
        ),
        "ModelReady": grpc.unary_unary_rpc_method_handler(
            model_ready, pb.ModelReadyRequest.FromString, pb.ModelReadyResponse.SerializeToString
        ),
    }

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
