"""Drift statistics on binned counts: how far a revision's inputs (or scores) moved from a reference.

The model server can count, per feature, how many requests fell in each bin of the training
reference (``metadata.json``: ``features[].reference_bins`` and ``prediction_score_reference_bins``,
``edges`` plus the training ``fractions`` per bin). These functions judge such counts without ever
seeing a request; they are pure (numpy/scipy only) so the gate that will use them, the simulations
that measure its false-alarm rate and the tests share one implementation. Issue 12 wires them into a
``drift`` gate; nothing calls them yet.

Two questions, answered by two numbers, because each alone misleads:

- **How much** did the distribution move? The population stability index
  ``PSI = sum((o - r) * ln(o / r))`` over bins, with ``o`` the observed and ``r`` the reference
  fractions. The usual reading: < 0.1 no shift, 0.1-0.25 moderate, > 0.25 major. PSI does not shrink
  with the sample size, so with few requests its noise alone exceeds 0.1 (its expectation under no
  drift is about ``(k - 1) / n`` for ``k`` bins and ``n`` requests).
- **Is the move real**, or noise? A chi-square goodness-of-fit test of the counts against the
  reference fractions (neighbouring bins merged until each expects at least 5, as the
  test's approximation needs), and, for two revisions, the chi-square test of homogeneity.

:func:`judge` flags drift only when both say so: PSI above its threshold (a move big enough to
matter) *and* the test significant at ``alpha`` (not noise), and it says nothing under
``min_samples``. With huge traffic the test alone would flag moves too small to matter; with little,
PSI alone would flag noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy import stats  # type: ignore[import-untyped]  # scipy ships no type information

# Observed fractions get this many pseudo-requests per bin, so an empty bin does not make PSI
# infinite (Jeffreys' prior for a multinomial); reference fractions are floored at REFERENCE_FLOOR.
SMOOTHING = 0.5
REFERENCE_FLOOR = 1e-4
MIN_EXPECTED = 5.0  # chi-square's rule of thumb: every (merged) bin expects at least this many


@dataclass(frozen=True)
class ReferenceBins:
    """Bin edges and the training fractions per bin: bin ``i`` holds values ``<= edges[i]`` (and
    ``> edges[i - 1]``); the last bin holds everything above the last edge."""

    edges: tuple[float, ...]
    fractions: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.fractions) != len(self.edges) + 1:
            raise ValueError(f"{len(self.edges)} edges need {len(self.edges) + 1} fractions, got {len(self.fractions)}")
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise ValueError("reference edges must be strictly increasing")
        if any(f < 0 for f in self.fractions) or not math.isclose(sum(self.fractions), 1.0, abs_tol=0.01):
            raise ValueError(f"reference fractions must be >= 0 and add up to 1 (+-0.01), got {sum(self.fractions)}")

    @classmethod
    def from_metadata(cls, bins: dict) -> ReferenceBins:
        """From ``metadata.json``'s ``{"edges": [...], "fractions": [...]}``."""
        return cls(tuple(float(e) for e in bins["edges"]), tuple(float(f) for f in bins["fractions"]))

    def probabilities(self) -> np.ndarray:
        """The fractions floored at REFERENCE_FLOOR and renormalised (they are rounded in metadata)."""
        p = np.maximum(np.asarray(self.fractions, dtype=np.float64), REFERENCE_FLOOR)
        return p / p.sum()

    def count(self, values: Sequence[float] | np.ndarray) -> np.ndarray:
        """How many of ``values`` fall in each bin (what the model server's counters will hold)."""
        idx = np.searchsorted(np.asarray(self.edges), np.asarray(values, dtype=np.float64), side="left")
        return np.bincount(idx, minlength=len(self.edges) + 1)


def psi(expected: np.ndarray, observed_counts: Sequence[int] | np.ndarray) -> float:
    """Population stability index of ``observed_counts`` against the probabilities ``expected``."""
    counts = np.asarray(observed_counts, dtype=np.float64)
    p_ref = np.asarray(expected, dtype=np.float64)
    if counts.shape != p_ref.shape:
        raise ValueError(f"{counts.size} counts for {p_ref.size} bins")
    p_obs = (counts + SMOOTHING) / (counts.sum() + SMOOTHING * counts.size)
    return float(np.sum((p_obs - p_ref) * np.log(p_obs / p_ref)))


def sparse_groups(expected: np.ndarray, min_expected: float = MIN_EXPECTED) -> np.ndarray:
    """Start indices of groups of neighbouring bins, left to right, each expecting at least
    ``min_expected`` (a short last group joins the one before); merge any per-bin array with
    ``np.add.reduceat(array, groups)``."""
    starts, acc = [0], 0.0
    for i, e in enumerate(expected):
        acc += float(e)
        if acc >= min_expected and i + 1 < len(expected):
            starts.append(i + 1)
            acc = 0.0
    if acc < min_expected and len(starts) > 1:
        starts.pop()
    return np.asarray(starts, dtype=np.intp)


@dataclass(frozen=True)
class ChiSquare:
    statistic: float
    dof: int
    p_value: float


def chi_square_vs_reference(expected: np.ndarray, observed_counts: Sequence[int] | np.ndarray) -> ChiSquare:
    """Goodness of fit of the counts to the reference probabilities, sparse bins merged first.

    With one bin left after merging there is nothing to test: p = 1.
    """
    counts = np.asarray(observed_counts, dtype=np.float64)
    per_bin = np.asarray(expected, dtype=np.float64) * counts.sum()
    groups = sparse_groups(per_bin)
    exp, obs = np.add.reduceat(per_bin, groups), np.add.reduceat(counts, groups)
    if exp.size < 2:
        return ChiSquare(0.0, 0, 1.0)
    statistic = float(np.sum((obs - exp) ** 2 / exp))
    dof = exp.size - 1
    return ChiSquare(statistic, dof, float(stats.chi2.sf(statistic, dof)))


def chi_square_two_samples(counts_a: Sequence[int] | np.ndarray, counts_b: Sequence[int] | np.ndarray) -> ChiSquare:
    """Whether two revisions' counts over the same bins come from one distribution (homogeneity).

    Bins empty in both are dropped, and sparse bins merged on the pooled expectation.
    """
    a, b = np.asarray(counts_a, dtype=np.float64), np.asarray(counts_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} and {b.size} bins")
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    na, nb = a.sum(), b.sum()
    if na == 0 or nb == 0 or a.size < 2:
        return ChiSquare(0.0, 0, 1.0)
    # Merged on the smaller sample's expectation, so every cell of the 2 x k table expects >= 5.
    groups = sparse_groups((a + b) / (na + nb) * min(na, nb))
    table = np.vstack([np.add.reduceat(a, groups), np.add.reduceat(b, groups)])
    if table.shape[1] < 2:
        return ChiSquare(0.0, 0, 1.0)
    statistic, p_value, dof, _ = stats.chi2_contingency(table, correction=False)
    return ChiSquare(float(statistic), int(dof), float(p_value))


def ks_distance(expected: np.ndarray, observed_counts: Sequence[int] | np.ndarray) -> float:
    """Largest gap between the observed and reference cumulative fractions at the bin edges.

    On binned data this is at most the Kolmogorov-Smirnov distance of the raw values, so a test on
    it is conservative (fewer alarms, less power); :func:`judge` uses the chi-square test.
    """
    counts = np.asarray(observed_counts, dtype=np.float64)
    if counts.sum() == 0:
        return 0.0
    cdf_obs = np.cumsum(counts) / counts.sum()
    cdf_ref = np.cumsum(np.asarray(expected, dtype=np.float64))
    return float(np.max(np.abs(cdf_obs - cdf_ref)))


class DriftVerdict(StrEnum):
    STABLE = "Stable"
    DRIFTED = "Drifted"
    INSUFFICIENT_SAMPLES = "InsufficientSamples"


@dataclass(frozen=True)
class DriftResult:
    verdict: DriftVerdict
    psi: float
    p_value: float
    ks: float
    samples: int
    message: str


def judge(
    reference: ReferenceBins,
    observed_counts: Sequence[int] | np.ndarray,
    *,
    max_psi: float = 0.2,
    alpha: float = 0.01,
    min_samples: int = 500,
) -> DriftResult:
    """Drifted when PSI > ``max_psi`` and the chi-square test rejects the reference at ``alpha``;
    nothing is said under ``min_samples`` counted requests."""
    counts = np.asarray(observed_counts, dtype=np.int64)
    if counts.size != len(reference.fractions):
        raise ValueError(f"{counts.size} counts for {len(reference.fractions)} reference bins")
    n = int(counts.sum())
    expected = reference.probabilities()
    value = psi(expected, counts) if n else 0.0
    test = chi_square_vs_reference(expected, counts) if n else ChiSquare(0.0, 0, 1.0)
    ks = ks_distance(expected, counts)
    if n < min_samples:
        verdict, why = DriftVerdict.INSUFFICIENT_SAMPLES, f"{n} of {min_samples} samples"
    elif value > max_psi and test.p_value < alpha:
        verdict, why = (
            DriftVerdict.DRIFTED,
            f"PSI {value:.3f} > {max_psi} and chi-square p {test.p_value:.2g} < {alpha}",
        )
    else:
        verdict, why = DriftVerdict.STABLE, f"PSI {value:.3f} (max {max_psi}), chi-square p {test.p_value:.2g}"
    return DriftResult(verdict, value, test.p_value, ks, n, why)
