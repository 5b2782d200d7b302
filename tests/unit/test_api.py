"""Pydantic models mirror the CRD rules, so direct callers get the same answers as kubectl users."""

import pytest
from modelrollout.api.types import ModelDeploymentSpec
from modelrollout.durations import format_duration, parse_duration
from pydantic import ValidationError

BASE = {"model": {"name": "fraud", "uri": "https://m/x.onnx"}, "traffic": {"none": {}}}


def spec(**over):
    return ModelDeploymentSpec.model_validate({**BASE, **over})


def test_defaults():
    s = spec()
    assert s.strategy.canary.steps == [5, 10, 25, 50, 100]
    assert s.analysis.interval == "30s" and s.progressDeadlineSeconds == 600
    assert s.traffic.provider == "none"


GW = {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ({"strategy": {"canary": {"steps": [10, 5, 100]}}}, "strictly increasing"),
        ({"strategy": {"canary": {"steps": [10, 50]}}}, "last canary step must be 100"),
        ({"strategy": {"canary": {"steps": [-1, 100]}}}, "between 0 and 100"),
        ({"strategy": {"canary": {"steps": [0, 100]}}}, "needs traffic.canaryRoutes"),
        ({"traffic": {"none": {}, "canaryRoutes": [{"cookie": {"name": "c"}}]}}, "need a traffic layer"),
        ({"traffic": {**GW, "canaryRoutes": [{}]}}, "exactly one of header or cookie"),
        (
            {
                "traffic": {
                    **GW,
                    "canaryRoutes": [{"header": {"name": "x", "value": "(", "match": "RegularExpression"}}],
                }
            },
            "not a valid regular expression",
        ),
        ({"traffic": {**GW, "canaryRoutes": [{"header": {"name": "x y", "value": "1"}}]}}, "name"),
        ({"traffic": {**GW, "canaryRoutes": [{"cookie": {"name": "c", "value": "a;b"}}]}}, "value"),
        (
            {"traffic": {"nginx": {"host": "a"}, "canaryRoutes": [{"cookie": {"name": "c", "value": "yes"}}]}},
            "'always'",
        ),
        ({"traffic": {"none": {}, "nginx": {"host": "a"}}}, "exactly one traffic provider"),
        ({"traffic": {}}, "exactly one traffic provider"),
        ({"analysis": {"interval": "10 minutes"}}, "interval"),
        ({"analysis": {"metrics": [{"name": "x", "max": 1}]}}, "set template"),
        ({"analysis": {"metrics": [{"name": "error-rate", "min": 0.5, "max": 0.1}]}}, "min must be <= max"),
        ({"analysis": {"metrics": [{"name": "c", "template": "custom", "max": 1}]}}, "query is required"),
        ({"model": {"name": "fraud", "uri": "ftp://bucket/x"}}, "uri"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_invalid_specs_name_the_problem(override, fragment):
    with pytest.raises(ValidationError) as err:
        spec(**override)
    assert fragment in str(err.value)


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_message():
    with pytest.raises(ValueError, match="invalid duration '5 min'"):
        parse_duration("5 min")


def test_format_duration():
    assert format_duration(30) == "30s" and format_duration(0.5) == "500ms"
