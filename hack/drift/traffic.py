"""Traffic for the drift simulation: fresh rows from the training distribution, binned as the server bins.

Each request is one row of ``examples/models/dataset.py``'s generator (the distribution the models
were trained on and ``metadata.json``'s reference bins were computed from, ``seed=0``), drawn with
other seeds, so the rounded reference fractions and the finite training sample the reference came
from are part of what is measured. A :class:`Shift` changes the rows before they are sent.

Rows are binned as the model server's ``BinCounter`` does (server-image/modelserver/metrics.py):
``np.searchsorted(edges, value, side="left")`` with the edges cast to the matrix's precision (the
input tensor is FP32, so ``4.9`` km is ``4.9000001`` and counts in the bin *below* the edge ``4.9``,
while the reference was computed in float64 and put it above), categories by their index in the
reference's ``categories``, and the prediction score (the positive class's probability that the
served ONNX model returns, FP32) into ``prediction_score_reference_bins``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from modelrollout.api.types import SCORE_FEATURE

from examples.models import dataset

MODELS = Path(dataset.__file__).resolve().parent
METADATA = MODELS / "metadata.json"


@dataclass(frozen=True)
class Column:
    """One counted feature: where its value comes from and its reference bins as the server exports them."""

    name: str
    source: int | None  # column of the input matrix; None: the prediction score
    edges: np.ndarray  # float32, as the server compares (categories: -0.5, 0.5, ..., n - 0.5)
    fractions: tuple[float, ...]  # metadata.json's, as modelserver_feature_bin_reference exports them
    category: bool = False

    @property
    def bins(self) -> int:
        return len(self.fractions)

    def bin(self, values: np.ndarray) -> np.ndarray:
        """The reference bin of each value (FP32, like the server's matrix)."""
        raw = np.searchsorted(self.edges, np.asarray(values, dtype=np.float32), side="left")
        if not self.category:
            return raw
        index = raw - 1  # edges -0.5, 0.5, ...: raw bin i + 1 is category index i
        if index.size and (index.min() < 0 or index.max() >= self.bins):
            raise ValueError(f"{self.name}: a category outside the reference")
        return index


def columns(metadata: dict | None = None) -> list[Column]:
    """The counted features of ``metadata.json`` in its order, then the prediction score."""
    meta = metadata if metadata is not None else json.loads(METADATA.read_text())
    out = []
    for i, feature in enumerate(meta["features"]):
        ref = feature["reference_bins"]
        assert feature["name"] == dataset.FEATURE_NAMES[i]
        if feature["type"] == "category":
            assert list(ref["categories"]) == list(dataset.CHANNELS) == list(feature["categories"])
            edges = np.asarray([c - 0.5 for c in range(len(ref["categories"]) + 1)], dtype=np.float32)
            out.append(Column(feature["name"], i, edges, tuple(ref["fractions"]), category=True))
        else:
            out.append(Column(feature["name"], i, np.asarray(ref["edges"], dtype=np.float32), tuple(ref["fractions"])))
    score = meta["prediction_score_reference_bins"]
    out.append(Column(SCORE_FEATURE, None, np.asarray(score["edges"], dtype=np.float32), tuple(score["fractions"])))
    return out


@dataclass(frozen=True)
class Shift:
    """A change of the inputs from some moment on: ``apply`` maps the FP32 rows to the rows sent."""

    name: str
    feature: str
    apply: Callable[[np.ndarray], np.ndarray]


def _amount_times(k: float) -> Callable[[np.ndarray], np.ndarray]:
    def apply(rows: np.ndarray) -> np.ndarray:
        out = rows.copy()
        out[:, 0] = np.round(rows[:, 0].astype(np.float64) * k, 2)
        return out

    return apply


def _hour_plus(hours: int) -> Callable[[np.ndarray], np.ndarray]:
    def apply(rows: np.ndarray) -> np.ndarray:
        out = rows.copy()
        out[:, 2] = (rows[:, 2] + hours) % 24
        return out

    return apply


def _app_to_web(share: float) -> Callable[[np.ndarray], np.ndarray]:
    """``share`` of the app's requests come through the web instead (deterministic per row)."""

    def apply(rows: np.ndarray) -> np.ndarray:
        out = rows.copy()
        app = rows[:, 4] == 1
        # Every 1/share-th app row by its position: no extra random stream, the same rows every time.
        moved = app & (np.cumsum(app) % round(1 / share) == 0)
        out[moved, 4] = 0
        return out

    return apply


SHIFTS: dict[str, Shift] = {
    "amount x3": Shift("amount x3", "amount", _amount_times(3.0)),
    "app -> web 50%": Shift("app -> web 50%", "channel", _app_to_web(0.5)),
    "hour +6h": Shift("hour +6h", "hour", _hour_plus(6)),
}
"""amount x3: amounts sent in a currency worth a third of the dollar (a new market); app -> web:
half of the app's traffic falls back to the web site (an app outage); hour +6h: a client sends UTC
instead of local time. ``hour`` is uniform over the day, so its shifted marginal is the reference:
no marginal drift statistic can see it (a control, not a detection case)."""


class Scorer:
    """The served model's prediction score: the ``fraud`` probability of an ONNX file in examples/models."""

    def __init__(self, model: str = "baseline") -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.model = model
        self.session = ort.InferenceSession(str(MODELS / f"{model}.onnx"), options, providers=["CPUExecutionProvider"])

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        (proba,) = self.session.run(["probabilities"], {dataset.INPUT_NAME: rows})
        return proba[:, dataset.CLASSES.index("fraud")]


class Binner:
    """Rows to flat bin indices: one counter slot per (feature, bin), features in :func:`columns` order."""

    def __init__(self, cols: list[Column], scorer: Scorer | None) -> None:
        self.columns = cols if scorer is not None else [c for c in cols if c.source is not None]
        self.scorer = scorer
        self.offsets = np.cumsum([0] + [c.bins for c in self.columns])
        self.width = int(self.offsets[-1])

    def slots(self, rows: np.ndarray) -> np.ndarray:
        """``(n, features)`` flat slots of each row's bin per feature."""
        out = np.empty((rows.shape[0], len(self.columns)), dtype=np.int64)
        scores = self.scorer(rows) if self.scorer is not None else None
        for j, c in enumerate(self.columns):
            values = rows[:, c.source] if c.source is not None else scores
            out[:, j] = self.offsets[j] + c.bin(values)
        return out


def rows(n: int, seed: int, shift: Shift | None = None) -> np.ndarray:
    """``n`` fresh FP32 rows of the training distribution (``seed`` must not be 0, the training seed)."""
    if seed == 0:
        raise ValueError("seed 0 made the training set the reference was computed from")
    x = dataset.generate(n, seed=seed).features
    return shift.apply(x) if shift is not None else x
