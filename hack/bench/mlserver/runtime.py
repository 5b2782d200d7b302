"""MLServer custom runtime serving the ONNX model (V2 protocol), same session options as the others."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, options, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        request_input = payload.inputs[0]
        x = NumpyCodec.decode_input(request_input).astype(np.float32, copy=False)
        results = self.session.run(self.output_names, {request_input.name: x})
        outputs = [NumpyCodec.encode_output(n, r) for n, r in zip(self.output_names, results, strict=True)]
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=outputs)
