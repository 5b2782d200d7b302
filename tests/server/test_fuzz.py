"""Fuzzing: nothing a client sends may produce a 5xx (the baseline model never emits NaN).

Two layers, both bounded in examples so the suite stays fast, and seeded (``MODELROLLOUT_FUZZ_SEED``,
printed; the default is fixed, so a failure replays):
- schemathesis generates valid and invalid requests for every operation in ``/openapi.json`` and
  runs every check that applies to a server without authentication or links between operations:
  no 5xx, documented status codes, content types, headers and schemas, invalid data rejected
  (``negative_data_rejection``), valid data accepted (``positive_data_acceptance``), missing
  required headers and unsupported methods refused: the published OpenAPI says exactly what the
  server accepts;
- hypothesis builds near-valid infer and feedback bodies for the real model name (random shapes,
  datatypes, element types, nesting, ids, named features), which reach much deeper than
  schema-driven generation with random model names can.
"""

from __future__ import annotations

import os

import requests
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.generation import GenerationMode

from examples.models import dataset

from .conftest import MODEL_NAME, ServerProcess
from .promtext import value

SEED = int(os.environ.get("MODELROLLOUT_FUZZ_SEED") or 20261129)
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

# Every schemathesis check but those about authentication and links between operations (the
# server has neither): ignored_auth, use_after_free, ensure_resource_availability,
# object_level_authorization; and max_response_time, which is the benchmarks' business.
CHECKS = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
    response_headers_conformance, negative_data_rejection, positive_data_acceptance, missing_required_header,
    unsupported_method,
]  # fmt: skip


def test_openapi_operations_never_5xx(baseline: ServerProcess) -> None:
    """Every documented operation, fuzzed from the schema the server itself publishes."""
    api = schemathesis.openapi.from_url(baseline.url + "/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) >= 12
    before = _answered(baseline)
    print(f"\nfuzz seed {SEED} (MODELROLLOUT_FUZZ_SEED={SEED} replays it)")
    negative = 0
    for operation, mode in [(op, mode) for op in operations for mode in GenerationMode]:

        @seed(SEED)
        @given(case=operation.as_strategy(mode))
        @settings(FUZZ, max_examples=30 if mode == GenerationMode.POSITIVE else 12)
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
            negative += mode == GenerationMode.NEGATIVE
        except Unsatisfiable:
            # Nothing in the request can be made invalid (no parameters, no body): positive only.
            assert mode == GenerationMode.NEGATIVE, operation.label
    assert negative >= 4, "invalid requests were generated for (almost) no operation"
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


@seed(SEED)
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


@seed(SEED)
@given(body=feedback_bodies)
@FUZZ
def test_feedback_fuzz_never_5xx(baseline: ServerProcess, body: object) -> None:
    response = requests.post(f"{baseline.url}/v2/models/{MODEL_NAME}/feedback", json=body, timeout=10)
    assert response.status_code in (200, 400, 404), response.text
