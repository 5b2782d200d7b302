"""Fuzzing: nothing a client sends may produce a 5xx (the baseline model never emits NaN).

Two layers, both bounded in examples so the suite stays fast:
- schemathesis generates requests for every operation in ``/openapi.json`` and checks the
  answers against the documented status codes, content types and schemas;
- hypothesis builds near-valid infer and feedback bodies for the real model name (random shapes,
  datatypes, element types, nesting, ids, named features), which reach much deeper than
  schema-driven generation with random model names can.
"""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from examples.models import dataset

from .conftest import MODEL_NAME, ServerProcess
from .promtext import value

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_openapi_operations_never_5xx(baseline: ServerProcess) -> None:
    """Every documented operation, fuzzed from the schema the server itself publishes."""
    api = schemathesis.openapi.from_url(baseline.url + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12
    before = _answered(baseline)
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        run()
    assert _answered(baseline) - before >= 5 * len(operations), "schemathesis sent (almost) nothing"


def _answered(server: ServerProcess) -> float:
    return value(server.metrics(), "modelserver_requests_total")


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)  # fmt: skip
datatypes = st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "BYTES", "FP16", "UINT8", "nope", 3, None])
shapes = st.one_of(st.lists(st.integers(-2, 6), max_size=4), st.just([1, 5]), st.just([2, 5]), scalars)
data = st.one_of(
    st.lists(scalars, max_size=12),
    st.lists(st.lists(scalars, min_size=5, max_size=5), max_size=3),
    st.lists(st.floats(-1e40, 1e40), min_size=5, max_size=10),
    scalars,
)
tensor = st.fixed_dictionaries(
    {"name": st.sampled_from(["input", "other", 1]), "shape": shapes, "datatype": datatypes, "data": data},
    optional={"parameters": st.one_of(st.dictionaries(st.text(max_size=3), scalars, max_size=2), scalars)},
)
feature_values = st.dictionaries(
    st.sampled_from([*dataset.FEATURE_NAMES, "bogus"]),
    st.one_of(scalars, st.sampled_from(dataset.CHANNELS), st.floats(-1e40, 1e40)),
    max_size=6,
)
output_lists = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["label", "x", 2])}), max_size=2)
features_param = st.one_of(feature_values, st.lists(feature_values, max_size=3), scalars)
infer_bodies = st.one_of(
    st.fixed_dictionaries(
        {"inputs": st.one_of(st.lists(tensor, max_size=2), scalars)},
        optional={"id": st.one_of(st.text(max_size=300), scalars), "outputs": st.one_of(output_lists, scalars)},
    ),
    st.fixed_dictionaries({"parameters": st.fixed_dictionaries({"features": features_param})}),
    scalars,
)


@given(body=infer_bodies)
@FUZZ
def test_infer_fuzz_never_5xx(baseline: ServerProcess, body: object) -> None:
    response = requests.post(f"{baseline.url}/v2/models/{MODEL_NAME}/infer", json=body, timeout=10)
    assert response.status_code in (200, 400, 413), response.text
    assert "error" in response.json() if response.status_code != 200 else "outputs" in response.json()


feedback_bodies = st.one_of(
    st.fixed_dictionaries({}, optional={"id": st.one_of(st.text(max_size=8), scalars),
                                        "token": st.one_of(st.text(max_size=40), scalars),
                                        "truth": st.one_of(scalars, st.lists(scalars, max_size=3))}),
    st.fixed_dictionaries({"feedback": st.one_of(scalars, st.lists(st.one_of(scalars, st.fixed_dictionaries(
        {"id": st.one_of(st.text(max_size=8), scalars), "truth": st.one_of(scalars, st.lists(scalars, max_size=3))})),
        max_size=4))}),
)  # fmt: skip


@given(body=feedback_bodies)
@FUZZ
def test_feedback_fuzz_never_5xx(baseline: ServerProcess, body: object) -> None:
    response = requests.post(f"{baseline.url}/v2/models/{MODEL_NAME}/feedback", json=body, timeout=10)
    assert response.status_code in (200, 400, 404), response.text
