"""OpenAPI descriptions of the V2 request and response bodies (documentation and fuzzing only).

Why not use these models to parse requests: FastAPI would answer validation failures with its own
422 ``{"detail": ...}`` shape and pydantic adds cost on the hot path. Requests are validated by
:mod:`modelserver.codec`; these models only publish the contract in ``/openapi.json`` so clients,
docs and schemathesis see the real shapes.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

Datatype = Literal[
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
]  # fmt: skip


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestInput(_Open):
    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any] | SkipJsonSchema[None] = Field(
        None,
        description="Row-major flat data, or data nested like `shape`. Required unless the tensor is sent as "
        "binary data (`parameters.binary_data_size`).",
    )
    parameters: dict[str, Any] | None = Field(
        None,
        description="`binary_data_size`: the tensor's length in bytes in the binary data after the JSON part "
        "(binary tensor data extension; needs the Inference-Header-Content-Length header).",
    )


class RequestOutput(_Open):
    name: str
    parameters: dict[str, Any] | None = Field(
        None,
        description="`binary_data`: true to get this output as binary tensor data (overrides "
        "`parameters.binary_data_output` of the request).",
    )


class InferRequest(_Open):
    """V2 infer request. With a feature schema, `parameters.features` may replace `inputs`."""

    id: str | None = Field(None, description="Echoed in the response; a UUID is generated when absent.")
    inputs: list[RequestInput] = Field(
        default_factory=list, description="Input tensors (may be empty when parameters.features is used)."
    )
    outputs: list[RequestOutput] | None = Field(None, description="Return only these outputs.")
    parameters: dict[str, Any] | None = Field(
        None,
        description="`features`: one object or a list of objects mapping feature name to value "
        "(named-feature form, needs metadata.json). `binary_data_output`: true to get every output as "
        "binary tensor data.",
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: Datatype
    data: list[Any] | SkipJsonSchema[None] = Field(
        None, description="Absent when the output follows as binary tensor data."
    )
    parameters: dict[str, Any] | None = Field(
        None, description="`binary_data_size`: the output's length in bytes in the binary data after the JSON part."
    )


class InferResponseParameters(_Open):
    prediction_token: str | None = Field(
        None,
        description="Send it back as `token` in feedback, to any pod of the ModelDeployment. Present when the "
        "server has a feedback key and the model is a classifier.",
    )


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str
    parameters: InferResponseParameters | None = None
    outputs: list[ResponseOutput]


class Error(_Open):
    error: str


class TensorMetadata(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int]


class ModelMetadataResponse(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] = Field(default_factory=dict)


class ServerMetadataResponse(BaseModel):
    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(_Open):
    ready: bool


_TOKEN = "The infer response's `parameters.prediction_token`: accepted by any pod of the ModelDeployment."
_ID = "The infer request's id: joined only by the pod that answered it (per-pod cache)."
Status = Literal[
    "matched", "unknown", "expired", "invalid", "malformed", "forged", "foreign", "replayed", "unsupported"
]


class FeedbackItem(_Open):
    token: str | None = Field(None, description=_TOKEN)
    id: str | None = Field(None, description=_ID)
    truth: str | int | list[str | int] = Field(description="Class name or index; a list for batched requests.")


class FeedbackRequest(_Open):
    """Either one item (`token` or `id`, and `truth`) or a batch under `feedback`."""

    token: str | None = Field(None, description=_TOKEN)
    id: str | None = Field(None, description=_ID)
    truth: str | int | list[str | int] | None = None
    feedback: list[FeedbackItem] | None = None


class FeedbackResult(_Open):
    id: str | None = None
    status: Status
    revision: str | None = Field(None, description="The revision the label was counted for (token feedback).")
    correct: int | None = None
    incorrect: int | None = None
    code: int | None = Field(None, description="In a batch: the status the single form would have answered.")
    error: str | None = None


class FeedbackBatchResponse(BaseModel):
    results: list[FeedbackResult]
    matched: int
    unmatched: int


COMPONENTS: tuple[type[BaseModel], ...] = (
    InferRequest, InferResponse, Error, ModelMetadataResponse, ServerMetadataResponse,
    LiveResponse, ReadyResponse, FeedbackRequest, FeedbackResult, FeedbackBatchResponse,
)  # fmt: skip
