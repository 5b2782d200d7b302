"""Turn a parsed infer payload into a validated :class:`~modelserver.codec.InferRequest`.

Why separate from :mod:`modelserver.codec`: this is where the two request forms meet — V2 tensors
in ``inputs`` or named features in ``parameters.features`` (which need the model's feature schema
and move the missing/imputed counters). The feature matrix of either form is counted into the drift
bins only once the model answered (:meth:`~modelserver.runtime.Runtime.count_inputs`), so rows of a
refused request never are.
"""

from __future__ import annotations

from typing import Any

from .binary import BinaryData
from .codec import InferRequest, batch_rows, decode_inputs, decode_plain, parameters, request_id, requested_outputs
from .errors import bad_request
from .runtime import Runtime


def decode_infer(
    payload: dict[str, Any], runtime: Runtime, max_batch: int, data: BinaryData | None = None
) -> InferRequest:
    """Validate the whole request; raises a 400 :class:`~modelserver.errors.ApiError` naming the field.

    ``data`` is the tensor bytes after the JSON part of a binary request (None for plain JSON); all
    of it must belong to inputs. The most common request is checked in one pass
    (:func:`~modelserver.codec.decode_plain`), any other field by field.
    """
    if data is None:
        plain = decode_plain(payload, runtime.model, max_batch)
        if plain is not None:
            return plain
    rid = request_id(payload)
    params = parameters(payload)
    outputs, binary_outputs = requested_outputs(payload, runtime.model, params)
    imputed: tuple[tuple[int, int], ...] = ()
    if "features" in params:
        if data is not None:
            data.finish()  # before the feature counters move: named features have no binary form
        feeds, imputed = _feature_feeds(payload, params["features"], runtime, max_batch)
    elif "inputs" in payload:
        feeds = decode_inputs(payload["inputs"], runtime.model, max_batch, data)
        if data is not None:
            data.finish()
    else:
        raise bad_request("inputs: required (a list of input tensors), or parameters.features with a feature schema")
    return InferRequest(rid, feeds, outputs, batch_rows(feeds), binary_outputs, imputed)


def _feature_feeds(
    payload: dict[str, Any], features: Any, runtime: Runtime, max_batch: int
) -> tuple[dict[str, Any], tuple[tuple[int, int], ...]]:
    if runtime.encoder is None or runtime.feature_input is None:
        raise bad_request("parameters.features: this model has no feature schema (metadata.json); send inputs")
    if payload.get("inputs"):
        raise bad_request("send either inputs or parameters.features, not both")
    encoded = runtime.encoder.encode(features, max_batch)
    runtime.metrics.record_features(encoded.missing, {})
    encoded.raise_for_errors()
    runtime.metrics.record_features({}, encoded.imputed)
    return {runtime.feature_input.name: encoded.matrix}, tuple(encoded.imputed_cells)
