"""make bench-drift's simulator: the simulated Prometheus's answers, and short watches through the real gate."""

from pathlib import Path

import numpy as np
import pytest
import yaml
from modelrollout.metrics.drift_gate import COUNTS, REFERENCE

from hack.drift import watch
from hack.drift.sim import SimPrometheus, counters
from hack.drift.traffic import SHIFTS, Binner, Scorer, columns

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/fraud-gateway-api.yaml"
LABELS = {"namespace": watch.NAMESPACE, "revision": watch.STABLE}


def by_feature(result) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for labels, value in result.series:
        out.setdefault(labels["feature"], []).append((int(labels["bin"]), value))
    return {name: [v for _, v in sorted(pairs)] for name, pairs in out.items()}


def test_the_count_query_is_the_increase_over_its_range_ending_offset_ago():
    binner = Binner(columns(), scorer=None)  # the input features only
    per_scrape = np.arange(binner.width, dtype=np.int64)  # slot i grows by i every 15 s scrape
    cumulative = np.outer(np.arange(41), per_scrape)  # scrapes at 0, 15, ..., 600 s
    prometheus = SimPrometheus(binner, cumulative, watch.NAMESPACE, watch.STABLE)
    prometheus.now = 300.0
    # [60s] offset 30s: the counters at 270 s (scrape 18) minus those at 210 s (scrape 14)
    answer = prometheus.query_vector(COUNTS.format(**LABELS, range="60s", offset=" offset 30s"))
    counts = by_feature(answer)
    assert list(counts) == [c.name for c in binner.columns]
    flat = np.concatenate([counts[c.name] for c in binner.columns])
    assert flat.tolist() == (4 * per_scrape).tolist()
    # A range reaching back before the first scrape counts from zero; between scrapes, the last one.
    prometheus.now = 40.0
    flat = np.concatenate(
        list(by_feature(prometheus.query_vector(COUNTS.format(**LABELS, range="600s", offset=""))).values())
    )
    assert flat.tolist() == (2 * per_scrape).tolist()
    reference = by_feature(prometheus.query_vector(REFERENCE.format(**LABELS, range="600s", offset="")))
    assert reference["channel"] == [0.3532, 0.4002, 0.2467]
    other = COUNTS.format(namespace="elsewhere", revision=watch.STABLE, range="60s", offset="")
    assert prometheus.query_vector(other).series == () and prometheus.query_vector(other).error is None
    assert prometheus.query_vector("sum(up)").error and prometheus.query("sum(up)").error


def test_counters_count_each_request_once_per_feature_and_shift_from_the_moment():
    binner = Binner(columns(), scorer=None)
    cumulative = counters(
        binner, np.random.default_rng(3), 20.0, 600.0, seed=3, shift=SHIFTS["amount x3"], shift_at=300.0
    )
    assert cumulative.shape == (41, binner.width) and not cumulative[0].any()
    per_feature = [cumulative[-1, lo:hi].sum() for lo, hi in zip(binner.offsets[:-1], binner.offsets[1:], strict=True)]
    assert len(set(per_feature)) == 1 and 10_000 < per_feature[0] < 14_000  # ~20/s for 600 s
    before, after = cumulative[20], cumulative[-1] - cumulative[20]
    amount = slice(binner.offsets[0], binner.offsets[1])
    assert before[amount][-1] / before[amount].sum() == pytest.approx(0.10, abs=0.02)  # > 134.85 USD
    assert after[amount][-1] / after[amount].sum() > 0.3  # three times the amounts


def _watch(shift=None, seconds=600.0):
    spec = watch.spec_for(yaml.safe_load(EXAMPLE.read_text())["spec"])
    binner = Binner(columns(), Scorer("baseline"))
    rng = np.random.default_rng(11)
    cumulative = counters(binner, rng, 50.0, seconds, seed=11, shift=shift, shift_at=0.0 if shift else None)
    return watch.run(spec, SimPrometheus(binner, cumulative, watch.NAMESPACE, watch.STABLE), seconds)


def test_a_healthy_watch_at_50_requests_per_second_never_drifts():
    result = _watch()
    assert result.checks == 20 and result.drifted_checks == 0 and result.episodes == 0
    assert result.waiting_checks == 1  # the score's 20 bins need 1,900 values: 38 s at 50 req/s
    assert result.passed_checks == 19 and max(result.max_psi.values()) < 0.05


def test_amount_times_three_sets_drifted_naming_amount():
    result = _watch(SHIFTS["amount x3"], seconds=120.0)
    assert result.episodes == 1 and result.first_drifted == 30.0
    assert "amount" in result.first_features and "amount PSI" in result.first_message
    assert not set(result.first_features) - {"amount", "_prediction_score"}
