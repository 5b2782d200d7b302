"""KServe's Python ModelServer serving the ONNX model through its custom-model API (V2 protocol).

Run inside the benchmark's network namespace (KServe's REST server binds 0.0.0.0):
``python kserve_model.py --model_path PATH --model_name fraud --http_port PORT``.
The session uses the same options as every other contender (one intra-op thread). It answers
binary outputs when the request asks for them, as KServe's own servers do
(``kserve.utils.utils.get_predict_response``): over REST with the binary tensor data extension's
``binary_data_output``, over gRPC when the inputs came in ``raw_input_contents``.
"""

from __future__ import annotations

import argparse

import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer, model_server


class OnnxModel(Model):
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.session: ort.InferenceSession | None = None
        self.load()

    def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        tensor = payload.inputs[0]
        x = tensor.as_numpy().astype(np.float32, copy=False)
        results = self.session.run(self.output_names, {tensor.name: x})
        outputs = []
        for name, result in zip(self.output_names, results, strict=True):
            datatype = "INT64" if result.dtype == np.int64 else "FP32"
            out = InferOutput(name=name, shape=list(result.shape), datatype=datatype)
            # As KServe's own get_predict_response: binary outputs when the request asks for them (REST
            # binary_data_output; gRPC with raw_input_contents), JSON data otherwise.
            out.set_data_from_numpy(result, binary_data=payload.use_binary_outputs)
            outputs.append(out)
        return InferResponse(
            response_id=payload.id,
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--model_path", required=True)
    args, _ = parser.parse_known_args()
    ModelServer(enable_latency_logging=False).start([OnnxModel(args.model_name, args.model_path)])
