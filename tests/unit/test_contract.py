"""The contract check: signatures from ``modelserver_model_signature_info`` series, compared by rule."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from modelrollout import contract as c
from modelrollout.metrics.connection import PrometheusConnection

NS = "ml"
# The example models' signature (examples/models/README.md), as the model server exports it.
BASELINE = [
    ("input", "input", "FP32", "-1,5"),
    ("output", "label", "INT64", "-1"),
    ("output", "probabilities", "FP32", "-1,2"),
    *[("feature", n, "number", "") for n in ("amount", "account_age_days", "hour", "distance_km")],
    ("feature", "channel", "category", ""),
]


def series(entries: Iterable[tuple[str, str, str, str]], revision: str) -> list[dict[str, str]]:
    return [
        {"io": io, "name": name, "datatype": dt, "shape": shape, "revision": revision, "namespace": NS}
        for io, name, dt, shape in entries
    ]


class FakeSignatures:
    """A MetricsProvider whose Prometheus holds the given series; answers the check's exact PromQL."""

    def __init__(self, by_revision: dict[str, list], error: str | None = None, scraped: tuple = ()) -> None:
        self.by_revision, self.error, self.scraped = by_revision, error, set(scraped)
        self.queries: list[str] = []

    def series(self, promql: str) -> c.SeriesResult:
        self.queries.append(promql)
        if self.error:
            return c.SeriesResult(error=self.error)
        for rev, entries in self.by_revision.items():
            if promql == c.signature_query(NS, rev):
                return c.SeriesResult(tuple(series(entries, rev)))
            if promql == c.scraped_query(NS, rev) and rev in self.scraped:
                return c.SeriesResult(({"revision": rev},))
        return c.SeriesResult()


def check(stable: list, canary: list) -> c.ContractResult:
    return c.check(FakeSignatures({"s1": stable, "c1": canary}), NS, "s1", "c1")


def replace(entries: list, name: str, new: tuple | None) -> list:
    out = [e for e in entries if e[1] != name]
    return [*out, new] if new else out


def test_the_same_signature_is_compatible() -> None:
    assert check(BASELINE, BASELINE) == c.Compatible()


def test_several_pods_reporting_the_same_entry_are_one_entry() -> None:
    assert check(BASELINE, BASELINE + BASELINE) == c.Compatible()


def test_a_symbolic_dim_matches_any_size() -> None:
    assert check(BASELINE, replace(BASELINE, "input", ("input", "input", "FP32", "-1,-1"))) == c.Compatible()
    assert check(replace(BASELINE, "input", ("input", "input", "FP32", "8,5")), BASELINE) == c.Compatible()


@pytest.mark.parametrize(
    ("canary", "difference"),
    [
        (replace(BASELINE, "input", ("input", "input", "FP32", "-1,4")),
         "input 'input': FP32 [-1,5] on stable, FP32 [-1,4] on canary"),
        (replace(BASELINE, "input", ("input", "input", "FP64", "-1,5")),
         "input 'input': FP32 [-1,5] on stable, FP64 [-1,5] on canary"),
        (replace(BASELINE, "input", ("input", "input", "FP32", "-1,5,1")),
         "input 'input': FP32 [-1,5] on stable, FP32 [-1,5,1] on canary"),
        (replace(BASELINE, "input", ("input", "features", "FP32", "-1,5")), "input 'input' missing on canary"),
        ([*BASELINE, ("input", "mask", "BOOL", "-1")], "input 'mask' only on canary"),
        (replace(BASELINE, "label", ("output", "label", "FP32", "-1")),
         "output 'label': INT64 on stable, FP32 on canary"),
        (replace(BASELINE, "probabilities", None), "output 'probabilities' missing on canary"),
        (replace(BASELINE, "channel", None), "feature 'channel' missing on canary"),
        ([*BASELINE, ("feature", "merchant", "category", "")], "feature 'merchant' only on canary"),
        (replace(BASELINE, "channel", ("feature", "channel", "number", "")),
         "feature 'channel': category on stable, number on canary"),
    ],
)  # fmt: skip
def test_each_difference_is_named(canary: list, difference: str) -> None:
    result = check(BASELINE, canary)
    assert isinstance(result, c.Incompatible)
    assert difference in result.differences
    assert difference in result.summary


def test_every_difference_is_listed_in_a_stable_order() -> None:
    canary = replace(replace(BASELINE, "input", ("input", "input", "FP32", "-1,4")), "channel", None)
    result = check(BASELINE, canary)
    assert result == c.Incompatible(
        ("input 'input': FP32 [-1,5] on stable, FP32 [-1,4] on canary", "feature 'channel' missing on canary")
    )


def test_output_shapes_may_change_but_not_their_types() -> None:
    wider = replace(BASELINE, "probabilities", ("output", "probabilities", "FP32", "-1,3"))
    assert check(BASELINE, wider) == c.Compatible()


def test_a_canary_not_scraped_yet_is_unknown() -> None:
    result = check(BASELINE, [])
    assert isinstance(result, c.Unknown) and "no modelserver_model_signature_info from canary c1" in result.reason


def test_a_stable_without_the_metric_skips_the_check_and_says_so() -> None:
    result = c.check(FakeSignatures({"s1": [], "c1": BASELINE}, scraped=("s1", "c1")), NS, "s1", "c1")
    assert isinstance(result, c.Compatible) and "stable revision s1 exports no" in result.note


def test_a_stable_not_scraped_yet_is_unknown_not_a_server_without_the_metric() -> None:
    """The race a fresh-clone CI run hit: the canary's pods scraped, the stable's not yet. Skipping the
    check then let a canary with another input schema take traffic."""
    result = c.check(FakeSignatures({"s1": [], "c1": BASELINE}, scraped=("c1",)), NS, "s1", "c1")
    assert isinstance(result, c.Unknown) and "stable revision s1 not scraped by Prometheus yet" in result.reason


def test_a_prometheus_that_scrapes_no_model_server_skips_the_check_and_says_so() -> None:
    result = check([], [])
    assert isinstance(result, c.Compatible) and "neither revision's model servers are scraped" in result.note


def test_prometheus_errors_are_unknown_never_a_verdict() -> None:
    source = FakeSignatures({}, error="Prometheus at http://p:9090 is unreachable (connection refused)")
    result = c.check(source, NS, "s1", "c1")
    assert result == c.Unknown(
        "Prometheus did not answer the signature query: Prometheus at http://p:9090 is unreachable (connection refused)"
    )
    assert len(source.queries) == 1, "a failed stable query is not followed by a canary query"


def test_conflicting_reports_within_one_revision_are_unknown() -> None:
    canary = [*BASELINE, ("input", "input", "FP32", "-1,4")]
    result = check(BASELINE, canary)
    assert isinstance(result, c.Unknown) and "input 'input' reported as both" in result.reason


def test_unknown_kinds_and_unparsable_shapes_are_not_held_against_the_canary() -> None:
    odd = [*BASELINE, ("parameter", "temperature", "FP32", ""), ("input", "", "FP32", "1")]
    assert check(BASELINE, odd) == c.Compatible()
    assert check(BASELINE, replace(BASELINE, "input", ("input", "input", "FP32", "batch,5"))) == c.Compatible()


def test_parse_shape() -> None:
    assert c.parse_shape("-1,5") == (-1, 5)
    assert c.parse_shape("[-1, 5]") == (-1, 5)
    assert c.parse_shape("") == ()
    assert c.parse_shape("a,b") is None


def test_the_query_is_scoped_by_namespace_and_revision_and_dedups_pods() -> None:
    q = c.signature_query("ml", "abc123")
    assert q == (
        'max by (io, name, datatype, shape) (modelserver_model_signature_info{namespace="ml", revision="abc123"})'
    )


def test_an_unreachable_prometheus_is_unknown_after_one_attempt() -> None:
    """The real client against a closed loopback port: an answer, not an exception, and quickly."""
    result = c.observe(PrometheusConnection("http://127.0.0.1:1", 2.0), NS, "s1", "c1")
    assert isinstance(result, c.Unknown)
    assert "Prometheus at http://127.0.0.1:1 is unreachable (connection refused)" in result.reason
