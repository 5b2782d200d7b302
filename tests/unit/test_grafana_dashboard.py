"""docs/grafana-dashboard.json only queries series that the operator and the model server export.

A dashboard that silently shows "No data" after a metric rename is worse than none, so every
selector in every panel, template variable and annotation is checked against the real metric
definitions: the metric name (with the suffixes prometheus-client adds) and each label it filters on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from modelrollout.telemetry import Telemetry
from modelserver.metrics import LoopCounter, LoopGauge, LoopHistogram, ServerMetrics
from prometheus_client import Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
SELECTOR = re.compile(r"\b((?:modelrollout|modelserver)_[a-z_]+)\s*(\{[^}]*\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")


def exported_series() -> dict[str, set[str]]:
    """Series name -> label names, for everything both components define."""
    out: dict[str, set[str]] = {}
    for owner in (Telemetry(process_metrics=False), ServerMetrics("m", "r")):
        for metric in vars(owner).values():
            if isinstance(metric, LoopCounter | LoopGauge | LoopHistogram):  # the model server's lock-free families
                name, labels = metric.name, set(metric.labelnames)
            elif isinstance(metric, MetricWrapperBase):
                name, labels = metric._name, set(metric._labelnames)
            else:
                continue
            if isinstance(metric, Counter | LoopCounter):
                out[f"{name}_total"] = labels
            elif isinstance(metric, Histogram | LoopHistogram):
                out[f"{name}_bucket"] = labels | {"le"}
                out[f"{name}_sum"] = out[f"{name}_count"] = labels
            else:
                out[name] = labels
    return out


def expressions() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p.get("targets", [])]
    for var in DASHBOARD["templating"]["list"]:
        if var["type"] == "query":
            exprs.append(var["query"]["query"])
    exprs += [a["expr"] for a in DASHBOARD["annotations"]["list"]]
    return exprs


def test_every_selector_names_a_real_series_and_labels() -> None:
    series = exported_series()
    seen = set()
    for expr in expressions():
        for name, matchers in SELECTOR.findall(expr):
            assert name in series, f"{name} is not exported (in {expr!r})"
            seen.add(name)
            for label in MATCHER.findall(matchers or ""):
                assert label in series[name], f"{name} has no label {label!r} (in {expr!r})"
    # The dashboard uses both components and the headline operator metrics.
    assert {"modelrollout_canary_weight", "modelrollout_gate_value", "modelrollout_rollouts_rolled_back_total",
            "modelrollout_time_to_rollback_seconds_bucket", "modelserver_requests_total",
            "modelserver_request_duration_seconds_bucket", "modelserver_feedback_total"} <= seen  # fmt: skip


def test_by_clauses_group_on_existing_labels() -> None:
    series = exported_series()
    for expr in expressions():
        names = [n for n, _ in SELECTOR.findall(expr)]
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert any(label in series[n] for n in names), f"no series in {expr!r} has label {label!r}"


def test_panels_are_well_formed() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))
    for p in DASHBOARD["panels"]:
        if p["type"] == "row":
            continue
        assert p["targets"], p["title"]
        assert p["datasource"]["uid"] == "${datasource}"
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24
    assert DASHBOARD["uid"] == "modelrollout"
