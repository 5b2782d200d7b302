"""An onnxruntime session plus the V2 view of its inputs and outputs.

Why: request validation needs each input's datatype and shape (with ``-1`` for variable dims and
the symbolic dimension names that must agree across inputs), and the metadata endpoint must report
them exactly as onnxruntime sees them. The session is created from bytes, so nothing but ONNX
parsing ever touches the artifact.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from . import datatypes
from .datatypes import DataType
from .errors import LoadError

log = logging.getLogger("modelserver.model")


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output: V2 datatype, shape with ``-1`` for variable dims, symbolic names."""

    name: str
    datatype: DataType
    shape: tuple[int, ...]
    symbols: tuple[str | None, ...]

    def metadata(self) -> dict[str, object]:
        return {"name": self.name, "datatype": self.datatype.v2, "shape": list(self.shape)}


class OnnxModel:
    """A loaded ONNX model; :meth:`run` is thread-safe (onnxruntime sessions are)."""

    def __init__(
        self, data: bytes, intra_op_threads: int = 1, execution_provider: str = "cpu", external_data: Path | None = None
    ) -> None:
        """``external_data``: the directory holding the files the graph's external tensors name
        (:mod:`.external_data`); onnxruntime reads them while it builds the session."""
        options = ort.SessionOptions()
        if external_data is not None:
            options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(external_data))
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = _providers(execution_provider)
        try:
            self.session = ort.InferenceSession(data, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for every parse failure
            raise LoadError(f"onnxruntime could not load the model: {exc}") from exc
        if providers[0] not in self.session.get_providers():
            # onnxruntime falls back to the CPU when the CUDA libraries or the device are missing.
            raise LoadError(
                f"execution provider {execution_provider}: onnxruntime did not enable {providers[0]} "
                f"(active: {', '.join(self.session.get_providers())}); check the GPU, its driver and CUDA libraries"
            )
        self.execution_provider = execution_provider
        self.inputs = tuple(_spec(a) for a in self.session.get_inputs())
        self.outputs = tuple(_spec(a) for a in self.session.get_outputs() if _is_tensor(a, "output"))
        if not self.outputs:
            raise LoadError("the model has no tensor outputs the V2 protocol can return")
        self.input_by_name = {t.name: t for t in self.inputs}
        self.output_by_name = {t.name: t for t in self.outputs}
        self.output_names = [t.name for t in self.outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run all outputs; onnxruntime errors propagate (the caller decides 400 vs 500)."""
        results = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, results, strict=True))


PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _providers(execution_provider: str) -> list[str]:
    """The providers to ask onnxruntime for, the CPU last as the fallback for unsupported operators;
    a provider this onnxruntime build does not have is a load error that says which build is needed."""
    wanted = PROVIDERS[execution_provider]
    if wanted not in ort.get_available_providers():
        raise LoadError(
            f"execution provider {execution_provider}: this onnxruntime build has no {wanted} "
            f"(available: {', '.join(ort.get_available_providers())}); use an image with onnxruntime-gpu "
            "on a node with an NVIDIA GPU"
        )
    return [wanted] if wanted == "CPUExecutionProvider" else [wanted, "CPUExecutionProvider"]


def _is_tensor(arg: ort.NodeArg, role: str) -> bool:
    """Non-tensor outputs (e.g. skl2onnx's ZipMap ``seq(map(...))``) are skipped, not fatal."""
    if arg.type in datatypes.BY_ONNX:
        return True
    log.warning("skipping %s %r of unsupported type %s", role, arg.name, arg.type)
    return False


def _spec(arg: ort.NodeArg) -> TensorSpec:
    try:
        datatype = datatypes.from_onnx(arg.type)
    except ValueError as exc:
        raise LoadError(f"tensor {arg.name!r}: {exc}") from exc
    dims = arg.shape or []
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in dims)
    symbols = tuple(d if isinstance(d, str) else None for d in dims)
    return TensorSpec(arg.name, datatype, shape, symbols)
