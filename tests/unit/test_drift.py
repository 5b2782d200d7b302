"""Drift statistics on binned counts (modelrollout.metrics.drift) against hand computation and scipy."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from modelrollout.metrics import drift
from scipy import stats

from examples.models import dataset

REPO = Path(__file__).resolve().parents[2]
METADATA = json.loads((REPO / "examples/models/metadata.json").read_text())


def assert_same(ours: drift.ChiSquare, statistic: float, p_value: float, dof: int) -> None:
    assert (ours.statistic, ours.p_value, ours.dof) == (pytest.approx(statistic), pytest.approx(p_value), dof)


def test_psi_by_hand():
    # Two bins, reference 50/50; 700 and 300 observed: p_obs = (700.5/1001, 300.5/1001).
    o = np.array([700.5, 300.5]) / 1001
    hand = (o[0] - 0.5) * math.log(o[0] / 0.5) + (o[1] - 0.5) * math.log(o[1] / 0.5)
    assert drift.psi(np.array([0.5, 0.5]), [700, 300]) == pytest.approx(hand, rel=1e-12)
    assert drift.psi(np.array([0.5, 0.5]), [500, 500]) == pytest.approx(0.0, abs=1e-12)
    assert math.isfinite(drift.psi(np.array([0.5, 0.5]), [1000, 0])), "an empty bin does not make PSI infinite"


def test_chi_square_matches_scipy_when_no_bin_is_sparse():
    expected = np.array([0.1, 0.2, 0.3, 0.4])
    counts = np.array([120, 190, 310, 380])
    ours = drift.chi_square_vs_reference(expected, counts)
    theirs = stats.chisquare(counts, f_exp=expected * counts.sum())
    assert (ours.statistic, ours.p_value, ours.dof) == (
        pytest.approx(theirs.statistic),
        pytest.approx(theirs.pvalue),
        3,
    )


def test_sparse_bins_are_merged_until_each_expects_five():
    assert drift.sparse_groups(np.array([1.0, 2.0, 3.0, 10.0, 1.0])).tolist() == [0, 3]  # [1+2+3, 10+1]
    assert drift.sparse_groups(np.array([10.0, 10.0])).tolist() == [0, 1]
    assert drift.sparse_groups(np.array([1.0, 1.0])).tolist() == [0]
    # The test then runs on the merged bins, exactly as scipy on those.
    expected, counts = np.array([0.01, 0.02, 0.03, 0.94]), np.array([3, 1, 4, 92])
    ours = drift.chi_square_vs_reference(expected, counts)
    merged_e, merged_o = np.array([6.0, 94.0]), np.array([8, 92])
    theirs = stats.chisquare(merged_o, f_exp=merged_e)
    assert (ours.statistic, ours.p_value, ours.dof) == (
        pytest.approx(theirs.statistic),
        pytest.approx(theirs.pvalue),
        1,
    )


def test_two_sample_homogeneity_matches_scipy():
    a, b = np.array([100, 200, 300, 0]), np.array([150, 180, 270, 0])
    ours = drift.chi_square_two_samples(a, b)
    stat, p, dof, _ = stats.chi2_contingency(np.vstack([a[:3], b[:3]]), correction=False)
    assert_same(ours, stat, p, dof)
    assert drift.chi_square_two_samples([5, 0], [0, 0]).p_value == 1.0  # one side empty: nothing to test


def test_ks_distance_by_hand():
    # reference CDF 0.2, 0.5, 1.0; observed 30/100, 40/100, 100/100 -> gaps 0.1, 0.1, 0
    assert drift.ks_distance(np.array([0.2, 0.3, 0.5]), [30, 10, 60]) == pytest.approx(0.1)


def test_reference_bins_follow_the_generator_convention_and_validate():
    ref = drift.ReferenceBins.from_metadata(METADATA["features"][0]["reference_bins"])
    assert ref.count([ref.edges[0], ref.edges[0] + 1e-9, 1e9]).tolist()[:2] == [1, 1], "<= edge is the lower bin"
    with pytest.raises(ValueError, match="fractions"):
        drift.ReferenceBins((1.0,), (0.5,))
    with pytest.raises(ValueError, match="add up to 1"):
        drift.ReferenceBins((1.0,), (0.5, 0.2))
    with pytest.raises(ValueError, match="increasing"):
        drift.ReferenceBins((2.0, 1.0), (0.3, 0.3, 0.4))


def test_training_data_is_stable_and_a_shifted_feature_drifts():
    """The example model's own reference: fresh draws of its training distribution are judged
    stable; the same draws with one feature scaled are judged drifted, naming that move."""
    data = dataset.generate(4000, seed=123)
    names = [f["name"] for f in METADATA["features"]]
    amount = data.features[:, names.index("amount")]
    ref = drift.ReferenceBins.from_metadata(METADATA["features"][names.index("amount")]["reference_bins"])
    assert drift.judge(ref, ref.count(amount)).verdict == drift.DriftVerdict.STABLE
    shifted = drift.judge(ref, ref.count(amount * 3))
    assert shifted.verdict == drift.DriftVerdict.DRIFTED and shifted.psi > 0.25, shifted
    assert drift.judge(ref, ref.count(amount[:100] * 3)).verdict == drift.DriftVerdict.INSUFFICIENT_SAMPLES


def test_false_alarm_rate_under_the_reference_is_below_alpha():
    """Multinomial draws from the reference itself: the chi-square test alone alarms about alpha of
    the time; with the PSI threshold on top, (almost) never."""
    ref = drift.ReferenceBins.from_metadata(METADATA["prediction_score_reference_bins"])
    rng = np.random.default_rng(7)
    draws = rng.multinomial(2000, ref.probabilities(), size=2000)
    p_values = np.array([drift.chi_square_vs_reference(ref.probabilities(), c).p_value for c in draws])
    assert 0.004 <= (p_values < 0.01).mean() <= 0.02  # alpha = 0.01, 2000 draws: sd 0.0022
    alarms = sum(drift.judge(ref, c).verdict == drift.DriftVerdict.DRIFTED for c in draws)
    assert alarms == 0
