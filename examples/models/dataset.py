"""Deterministic, labelled card-transaction dataset for the example fraud models.

Why this exists: the example models, the end-to-end tests, the demo traffic generator and the
benchmark all need the *same* realistic inputs with known ground truth, so that accuracy gates
(feedback → ``modelserver_feedback_total``) can be exercised without any external data set.
Everything here is numpy-only and seeded, so the same ``(n, seed)`` always yields the same rows.

The problem: binary classification of card transactions into ``legit`` / ``fraud`` from five
named features (four numeric, one categorical)::

    amount            number    transaction amount in USD (log-normal, median ~33)
    account_age_days  number    age of the card account in days
    hour              number    local hour of day, 0..23 (integer valued)
    distance_km       number    distance from the card holder's home
    channel           category  one of "web", "app", "pos"

Models take one ``FP32`` input tensor named ``input`` of shape ``[-1, 5]`` in the order above, with
``channel`` encoded as its index in :data:`CHANNELS` (this is exactly what the model server does
with a named ``features`` object, using ``metadata.json``).

Public API (all functions are pure and deterministic for a given seed):

- :func:`generate` → :class:`Dataset` (encoded matrix, integer labels, named records)
- :func:`encode` named records → encoded ``float32`` matrix
- :func:`labelled_requests` → iterator of :class:`LabelledRequest`, each a ready-to-send V2 infer
  request body (tensor form or named-feature form) plus its true class names
- :func:`feedback_body` → the body for ``POST /v2/models/{name}/feedback``

Example::

    from examples.models.dataset import labelled_requests, feedback_body
    for req in labelled_requests(100, seed=7):
        requests.post(f"{url}/v2/models/fraud/infer", json=req.body)
        requests.post(f"{url}/v2/models/fraud/feedback", json=feedback_body(req.id, req.labels))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURE_NAMES: tuple[str, ...] = ("amount", "account_age_days", "hour", "distance_km", "channel")
"""Feature order of the encoded input tensor."""

NUMERIC_FEATURES: tuple[str, ...] = FEATURE_NAMES[:4]
CHANNELS: tuple[str, ...] = ("web", "app", "pos")
"""Categories of ``channel``; a category is encoded as its index in this tuple."""

CLASSES: tuple[str, ...] = ("legit", "fraud")
"""Class names; the models' ``label`` output is the index into this tuple."""

INPUT_NAME = "input"
CONCEPTS: tuple[str, ...] = ("current", "legacy")

_CHANNEL_P = (0.35, 0.40, 0.25)


@dataclass(frozen=True)
class Dataset:
    """A labelled sample: ``features`` is ``float32 [n, 5]``, ``labels`` is ``int64 [n]``."""

    features: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def records(self) -> list[dict[str, Any]]:
        """Rows as named-feature dicts (``channel`` as its category name), for the named API."""
        return [decode_row(row) for row in self.features]

    def label_names(self) -> list[str]:
        """True labels as class names (what the feedback endpoint accepts)."""
        return [CLASSES[int(i)] for i in self.labels]


@dataclass(frozen=True)
class LabelledRequest:
    """One V2 infer request body with the ground truth of each of its rows."""

    id: str
    body: dict[str, Any]
    labels: list[str]


def _draw_features(rng: np.random.Generator, n: int) -> np.ndarray:
    """Draw raw feature columns; distributions chosen to look like card traffic."""
    amount = np.round(rng.lognormal(mean=3.5, sigma=1.1, size=n), 2)
    age = np.round(rng.exponential(scale=500.0, size=n) + 1.0)
    hour = rng.integers(0, 24, size=n).astype(np.float64)
    distance = np.round(rng.lognormal(mean=1.6, sigma=1.3, size=n), 1)
    channel = rng.choice(len(CHANNELS), size=n, p=_CHANNEL_P).astype(np.float64)
    return np.column_stack([amount, age, hour, distance, channel])


def fraud_logit(x: np.ndarray, concept: str = "current") -> np.ndarray:
    """The ground-truth log-odds of fraud.

    ``current`` has a non-linear night-and-web interaction and a distance threshold that a linear model
    can only approximate (so a tree ensemble clearly wins). ``legacy`` is how fraud looked "last
    year" — used to train the deliberately worse model that has learned an outdated pattern.
    """
    amount, age, hour, distance, channel = (x[:, i] for i in range(5))
    night = (hour <= 5).astype(np.float64)
    web = (channel == 0).astype(np.float64)
    far = (distance > 40.0).astype(np.float64)
    log_amt = np.log(amount / 30.0 + 1e-3)
    if concept == "current":
        return (
            1.0
            + 1.0 * log_amt
            + 3.0 * night * web
            + 2.2 * far * (1.0 - night)
            - 1.2 * np.log1p(age / 60.0)
            + 1.5 * (age < 30)
        )
    if concept == "legacy":
        return -0.4 + 1.0 * log_amt + 2.5 * (channel == 2) - 2.0 * far - 0.2 * np.log1p(age / 60.0)
    raise ValueError(f"unknown concept {concept!r}; expected one of {CONCEPTS}")


def generate(
    n: int,
    seed: int = 0,
    concept: str = "current",
    sharpness: float = 3.0,
    scale: Mapping[str, float] | None = None,
) -> Dataset:
    """Generate ``n`` labelled rows deterministically from ``seed``.

    Labels are drawn from ``sigmoid(sharpness * fraud_logit)``, so a little label noise remains and
    no model reaches 100 % accuracy (as with real delayed ground truth). ``scale`` multiplies numeric
    features by name (``{"amount": 4.0}``: a population shift, the data drift a drift gate must see);
    the labels follow the shifted values.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    x = _draw_features(rng, n)
    for feature, factor in (scale or {}).items():
        if feature not in NUMERIC_FEATURES:
            raise ValueError(f"cannot scale {feature!r}; numeric features are {NUMERIC_FEATURES}")
        x[:, FEATURE_NAMES.index(feature)] *= factor
    p = 1.0 / (1.0 + np.exp(-sharpness * fraud_logit(x, concept)))
    labels = (rng.random(n) < p).astype(np.int64)
    return Dataset(features=x.astype(np.float32), labels=labels)


def encode(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """Encode named records (``channel`` by name) into the model's ``float32 [n, 5]`` input."""
    out = np.empty((len(records), len(FEATURE_NAMES)), dtype=np.float32)
    for i, rec in enumerate(records):
        out[i, :4] = [float(rec[name]) for name in NUMERIC_FEATURES]
        out[i, 4] = CHANNELS.index(rec["channel"])
    return out


def _short(value: Any) -> float:
    """The shortest decimal that round-trips to the same float32 (keeps JSON bodies small)."""
    return float(str(np.float32(value)))


def decode_row(row: np.ndarray) -> dict[str, Any]:
    """Inverse of :func:`encode` for one row; numbers stay JSON-friendly Python floats."""
    rec: dict[str, Any] = {name: _short(row[i]) for i, name in enumerate(NUMERIC_FEATURES)}
    rec["channel"] = CHANNELS[int(row[4])]
    return rec


def tensor_body(rows: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
    """A V2 infer request body carrying ``rows`` (``[n, 5]``) as the ``input`` FP32 tensor."""
    rows = np.asarray(rows, dtype=np.float32).reshape(-1, len(FEATURE_NAMES))
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": INPUT_NAME,
                "shape": list(rows.shape),
                "datatype": "FP32",
                "data": [_short(v) for v in rows.ravel()],
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def named_body(records: Sequence[dict[str, Any]], request_id: str | None = None) -> dict[str, Any]:
    """A V2 infer request body using the server's named-feature form (``parameters.features``)."""
    body: dict[str, Any] = {"inputs": [], "parameters": {"features": list(records)}}
    if request_id is not None:
        body["id"] = request_id
    return body


def _drop_values(records: list[dict[str, Any]], rng: np.random.Generator, rate: float) -> list[dict[str, Any]]:
    """Remove each feature value with probability ``rate`` (to exercise imputation)."""
    return [{k: v for k, v in rec.items() if rng.random() >= rate} for rec in records]


def labelled_requests(
    n: int,
    *,
    seed: int = 1,
    batch_size: int = 1,
    named: bool = False,
    missing_rate: float = 0.0,
    id_prefix: str = "req",
    concept: str = "current",
    scale: Mapping[str, float] | None = None,
) -> Iterator[LabelledRequest]:
    """Yield ``ceil(n / batch_size)`` labelled V2 infer requests covering ``n`` rows.

    Request ids are ``f"{id_prefix}-{seed}-{index}"`` so feedback can be sent later by id.
    ``named=True`` uses the named-feature form; ``missing_rate`` (named form only) drops values at
    random so the server's imputation and missing-feature counters move.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    data = generate(n, seed=seed, concept=concept, scale=scale)
    names = data.label_names()
    drop_rng = np.random.default_rng(seed + 1_000_003)
    for index, start in enumerate(range(0, n, batch_size)):
        stop = min(start + batch_size, n)
        request_id = f"{id_prefix}-{seed}-{index}"
        rows = data.features[start:stop]
        if named:
            records = [decode_row(r) for r in rows]
            if missing_rate > 0:
                records = _drop_values(records, drop_rng, missing_rate)
            body = named_body(records, request_id)
        else:
            body = tensor_body(rows, request_id)
        yield LabelledRequest(id=request_id, body=body, labels=names[start:stop])


def feedback_body(request_id: str, labels: Sequence[str]) -> dict[str, Any]:
    """Body for ``POST /v2/models/{name}/feedback``: one label, or a list for a batched request."""
    truth: str | list[str] = labels[0] if len(labels) == 1 else list(labels)
    return {"id": request_id, "truth": truth}
