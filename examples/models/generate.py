"""Train and export the example ONNX models (fixed seeds, reproducible on the same library versions).

Why: the operator's gates need models that differ in exactly one way each, on one input signature,
so that one traffic generator can drive them all:

- ``baseline.onnx`` — logistic regression (the stable revision in demos)
- ``better.onnx``   — gradient-boosted trees, clearly higher accuracy
- ``worse.onnx``    — logistic regression trained on an outdated fraud pattern, clearly lower accuracy
- ``slow.onnx``     — baseline plus an input-dependent chain of dense MatMuls: same outputs, tens of ms
- ``broken.onnx``   — baseline whose probabilities become NaN when ``amount`` is below a threshold
  (a sizeable fraction of real traffic, but not the median row the server self-checks with)
- ``coinflip.onnx`` — the baseline's signature, but the label is the parity of the row's digits
  (a deterministic coin that knows nothing of fraud): accuracy ~0.5 on every concept, the clearest
  case for the accuracy gate (``worse`` is ~0.61, which needs more evidence against a 0.75 bound)
- ``narrow/narrow.onnx`` — logistic regression without the ``channel`` feature: input FP32 ``[-1, 4]``
  and its own ``narrow/metadata.json``. The one model with a *different* input signature, so the
  operator's contract check has something to refuse (a canary that would answer 400 to every caller)

Run from the repository root: ``python examples/models/generate.py``. It rewrites the ``.onnx``
files, ``metadata.json``, ``evaluation.json`` and ``SHA256SUMS`` in this directory; every file in
``SHA256SUMS`` comes out byte for byte the same (``evaluation.json`` holds timings, so it does not).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from skl2onnx import to_onnx
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dataset  # noqa: E402

TRAIN_SEED, EVAL_SEED = 0, 12345
TRAIN_N, EVAL_N = 20_000, 10_000
OPSET = {"": 17, "ai.onnx.ml": 3}
SLOW_MATMULS = 12
SLOW_DIM = 640
BROKEN_AMOUNT_BELOW = 15.0
# Each numeric feature times the step it is drawn in (cents, days, hours, 100 m), so every row's
# digits become whole numbers; channel (weight 0) is left out, being a category.
COINFLIP_DIGITS = [100.0, 1.0, 1.0, 10.0, 0.0]
SCORE_BUCKETS = [round(0.05 * i, 2) for i in range(1, 20)]


def _preprocessor() -> ColumnTransformer:
    """Standardise numeric columns, one-hot the channel code (column 4)."""
    return ColumnTransformer(
        [
            ("num", StandardScaler(), [0, 1, 2, 3]),
            ("cat", OneHotEncoder(categories=[[0.0, 1.0, 2.0]], handle_unknown="ignore"), [4]),
        ]
    )


def _train_models(train: dataset.Dataset, legacy: dataset.Dataset) -> dict[str, Pipeline]:
    """Fit the three genuinely different classifiers (slow/broken derive from baseline)."""
    baseline = Pipeline([("pre", _preprocessor()), ("clf", LogisticRegression(max_iter=500))])
    better = Pipeline(
        [
            ("pre", _preprocessor()),
            ("clf", GradientBoostingClassifier(n_estimators=80, max_depth=3, random_state=0)),
        ]
    )
    worse = Pipeline([("pre", _preprocessor()), ("clf", LogisticRegression(max_iter=500))])
    baseline.fit(train.features, train.labels)
    better.fit(train.features, train.labels)
    worse.fit(legacy.features, legacy.labels)
    return {"baseline": baseline, "better": better, "worse": worse}


def _to_onnx(model: Pipeline, name: str, width: int = len(dataset.FEATURE_NAMES)) -> onnx.ModelProto:
    """Convert with a fixed input name/shape and plain tensor outputs (no ZipMap)."""
    sample = np.zeros((1, width), dtype=np.float32)
    proto = to_onnx(
        model,
        sample,
        target_opset=OPSET,
        options={id(model.steps[-1][1]): {"zipmap": False}},
    )
    _rename_input(proto, dataset.INPUT_NAME)
    proto.graph.name = name
    proto.producer_name = "modelrollout-examples"
    proto.doc_string = f"modelrollout example fraud model: {name}"
    return proto


def _rename_input(proto: onnx.ModelProto, new: str) -> None:
    """skl2onnx names the input 'X'; the examples use 'input' everywhere."""
    old = proto.graph.input[0].name
    proto.graph.input[0].name = new
    for node in proto.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def _redirect_output(proto: onnx.ModelProto, output: str) -> str:
    """Rename the producer of ``output`` to ``<output>_raw`` so new nodes can post-process it."""
    raw = f"{output}_raw"
    for node in proto.graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = raw
    return raw


def make_slow(base: onnx.ModelProto) -> onnx.ModelProto:
    """Baseline with ``SLOW_MATMULS`` dense ``SLOW_DIM``² MatMuls that depend on the input.

    The weights are built at run time from the input (``Expand`` of a scalar derived from it) so
    onnxruntime cannot constant-fold the chain away, and the file stays tiny. The chain's result is
    multiplied by zero and added to the probabilities: outputs are identical to the baseline's.
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(base)
    raw = _redirect_output(proto, "probabilities")
    inp = dataset.INPUT_NAME
    consts = [
        numpy_helper.from_array(np.array([SLOW_DIM, SLOW_DIM], dtype=np.int64), "slow_shape"),
        numpy_helper.from_array(np.array(1e-3, dtype=np.float32), "slow_eps"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "slow_zero"),
    ]
    nodes = [
        helper.make_node("ReduceMean", [inp], ["slow_mean"], keepdims=0),
        helper.make_node("Mul", ["slow_mean", "slow_eps"], ["slow_scalar"]),
        helper.make_node("Tanh", ["slow_scalar"], ["slow_w0"]),
        helper.make_node("Expand", ["slow_w0", "slow_shape"], ["slow_w"]),
    ]
    prev = "slow_w"
    for i in range(SLOW_MATMULS):
        nodes.append(helper.make_node("MatMul", [prev, "slow_w"], [f"slow_mm{i}"]))
        nodes.append(helper.make_node("Tanh", [f"slow_mm{i}"], [f"slow_t{i}"]))
        prev = f"slow_t{i}"
    nodes += [
        helper.make_node("ReduceMean", [prev], ["slow_red"], keepdims=0),
        helper.make_node("Mul", ["slow_red", "slow_zero"], ["slow_nil"]),
        helper.make_node("Add", [raw, "slow_nil"], ["probabilities"]),
    ]
    proto.graph.initializer.extend(consts)
    proto.graph.node.extend(nodes)
    proto.graph.name = "slow"
    proto.doc_string = "modelrollout example fraud model: slow (baseline + dense MatMul chain)"
    return proto


def make_broken(base: onnx.ModelProto) -> onnx.ModelProto:
    """Baseline whose probabilities are NaN for rows with ``amount < BROKEN_AMOUNT_BELOW``.

    ``Log(amount - t)`` is NaN for negative arguments (and -inf at zero); ``0 * NaN`` stays NaN,
    ``0 * finite`` is 0, so other rows keep the baseline's outputs.
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(base)
    raw = _redirect_output(proto, "probabilities")
    consts = [
        numpy_helper.from_array(np.array([0], dtype=np.int64), "brk_start"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "brk_end"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "brk_axis"),
        numpy_helper.from_array(np.array(BROKEN_AMOUNT_BELOW, dtype=np.float32), "brk_t"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "brk_zero"),
    ]
    nodes = [
        helper.make_node("Slice", [dataset.INPUT_NAME, "brk_start", "brk_end", "brk_axis"], ["brk_amt"]),
        helper.make_node("Sub", ["brk_amt", "brk_t"], ["brk_shift"]),
        helper.make_node("Log", ["brk_shift"], ["brk_log"]),
        helper.make_node("Mul", ["brk_log", "brk_zero"], ["brk_nil"]),
        helper.make_node("Add", [raw, "brk_nil"], ["probabilities"]),
    ]
    proto.graph.initializer.extend(consts)
    proto.graph.node.extend(nodes)
    proto.graph.name = "broken"
    proto.doc_string = "modelrollout example fraud model: broken (NaN for small amounts)"
    return proto


def make_coinflip(base: onnx.ModelProto) -> onnx.ModelProto:
    """The baseline's signature, with a label that is a coin flip decided by the row itself.

    ``label = (round(amount*100) + account_age_days + hour + round(distance_km*10)) mod 2``: the
    parity of the row's digits. The cents alone make it a fair coin, and the truth depends on the
    size of the amount, not on its last digit, so accuracy is ~0.5 on any traffic and any concept,
    the same for a given row every time (a rollout's evidence is reproducible). ``probabilities``
    is ``[1 - label, label]``, so the scores agree with the label. Only standard ONNX operators, on
    integers after the rounding, so no runtime's floating-point differs in the answer.
    """
    proto = onnx.ModelProto()
    proto.CopyFrom(base)
    del proto.graph.node[:]
    del proto.graph.initializer[:]
    consts = [
        numpy_helper.from_array(np.array(COINFLIP_DIGITS, dtype=np.float32), "coin_digits"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "coin_axis"),
        numpy_helper.from_array(np.array(2, dtype=np.int64), "coin_two"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "coin_one"),
    ]
    nodes = [
        helper.make_node("Mul", [dataset.INPUT_NAME, "coin_digits"], ["coin_scaled"]),
        helper.make_node("Round", ["coin_scaled"], ["coin_rounded"]),
        helper.make_node("Cast", ["coin_rounded"], ["coin_int"], to=onnx.TensorProto.INT64),
        helper.make_node("ReduceSum", ["coin_int", "coin_axis"], ["coin_sum"], keepdims=0),
        helper.make_node("Mod", ["coin_sum", "coin_two"], ["label"], fmod=0),
        helper.make_node("Cast", ["label"], ["coin_p1"], to=onnx.TensorProto.FLOAT),
        helper.make_node("Sub", ["coin_one", "coin_p1"], ["coin_p0"]),
        helper.make_node("Unsqueeze", ["coin_p0", "coin_axis"], ["coin_c0"]),
        helper.make_node("Unsqueeze", ["coin_p1", "coin_axis"], ["coin_c1"]),
        helper.make_node("Concat", ["coin_c0", "coin_c1"], ["probabilities"], axis=1),
    ]
    proto.graph.initializer.extend(consts)
    proto.graph.node.extend(nodes)
    proto.graph.name = "coinflip"
    proto.doc_string = "modelrollout example fraud model: coinflip (label = parity of the row's digits)"
    return proto


NARROW_DIR = "narrow"
NARROW_FEATURES = dataset.NUMERIC_FEATURES  # everything but channel, in the same column order


def write_narrow(train: dataset.Dataset, full_metadata: dict) -> list[str]:
    """``narrow/narrow.onnx`` and ``narrow/metadata.json``: a model whose input lacks ``channel``.

    Written to its own directory because the model server reads ``metadata.json`` beside the model.
    Returns the SHA256SUMS lines for both files (paths relative to this directory).
    """
    width = len(NARROW_FEATURES)
    model = Pipeline([("num", StandardScaler()), ("clf", LogisticRegression(max_iter=500))])
    model.fit(train.features[:, :width], train.labels)
    proto = _to_onnx(model, "narrow", width)
    proto.doc_string = "modelrollout example fraud model: narrow (no channel feature, input [-1, 4])"
    onnx.checker.check_model(proto, full_check=True)
    out = HERE / NARROW_DIR
    out.mkdir(exist_ok=True)
    (out / "narrow.onnx").write_bytes(proto.SerializeToString())
    meta = dict(full_metadata)
    meta["description"] = "Card-transaction fraud classifier without the channel feature (input [-1, 4])"
    meta["features"] = [f for f in full_metadata["features"] if f["name"] in NARROW_FEATURES]
    (out / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return [
        f"{hashlib.sha256((out / name).read_bytes()).hexdigest()}  {NARROW_DIR}/{name}"
        for name in ("narrow.onnx", "metadata.json")
    ]


def _impute(values: np.ndarray, strategy: str) -> float:
    return float(np.median(values)) if strategy == "median" else float(np.mean(values))


def build_metadata(train: dataset.Dataset, scores: np.ndarray) -> dict:
    """metadata.json: named features with imputation, classes, output roles, reference bins."""
    x = train.features.astype(np.float64)
    features: list[dict] = []
    strategies = {"amount": "median", "account_age_days": "median", "hour": "median", "distance_km": "median"}
    for i, name in enumerate(dataset.NUMERIC_FEATURES):
        col = x[:, i]
        features.append(
            {
                "name": name,
                "type": "number",
                "impute": {"strategy": strategies[name], "value": round(_impute(col, strategies[name]), 3)},
                "reference_bins": _reference_bins(col, np.quantile(col, [0.1, 0.25, 0.5, 0.75, 0.9])),
            }
        )
    codes = x[:, 4].astype(int)
    counts = np.bincount(codes, minlength=len(dataset.CHANNELS))
    features.append(
        {
            "name": "channel",
            "type": "category",
            "categories": list(dataset.CHANNELS),
            "impute": {"strategy": "most_frequent", "value": dataset.CHANNELS[int(np.argmax(counts))]},
            "reference_bins": {
                "categories": list(dataset.CHANNELS),
                "fractions": [round(float(c) / len(codes), 4) for c in counts],
            },
        }
    )
    return {
        "schema_version": 1,
        "name": "fraud",
        "description": "Card-transaction fraud classifier (examples/models/dataset.py)",
        "input": dataset.INPUT_NAME,
        "outputs": {"label": "label", "scores": "probabilities"},
        "classes": list(dataset.CLASSES),
        "positive_class": "fraud",
        "features": features,
        "max_missing_fraction": 0.4,
        "prediction_score_reference_bins": _reference_bins(scores, np.array(SCORE_BUCKETS)),
    }


def _reference_bins(values: np.ndarray, edges: np.ndarray) -> dict:
    """Fractions of ``values`` per bin (``<= edge``, cumulative-free), for drift comparisons.

    Binned in float32, as the model server bins what it serves (its input and score tensors are
    FP32, and it compares them with the edges in that precision): a distance of 4.9 km is
    4.900000095 in float32, the same as the edge 4.9 in float32, so both count it in the bin
    ``<= 4.9``; compared in float64 it would land in the bin above, and the reference would differ
    from what the server counts for every value on an edge."""
    edges = np.round(np.asarray(edges, dtype=np.float64), 4)
    idx = np.searchsorted(edges.astype(np.float32), np.asarray(values, dtype=np.float32), side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return {
        "edges": [float(e) for e in edges],
        "fractions": [round(float(c) / len(values), 4) for c in counts],
    }


def _evaluate(path: Path, data: dataset.Dataset) -> dict:
    """Accuracy, non-finite fraction and mean single-row latency measured with onnxruntime."""
    import time

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    label, proba = sess.run(["label", "probabilities"], {dataset.INPUT_NAME: data.features})
    finite = np.isfinite(proba).all(axis=1)
    row = data.features[:1]
    sess.run(None, {dataset.INPUT_NAME: row})
    start = time.perf_counter()
    for _ in range(20):
        sess.run(None, {dataset.INPUT_NAME: row})
    latency_ms = (time.perf_counter() - start) / 20 * 1000
    return {
        "accuracy": round(float(np.mean(label[finite] == data.labels[finite])), 4),
        "non_finite_fraction": round(float(1 - finite.mean()), 4),
        "single_row_latency_ms": round(latency_ms, 3),
        "bytes": path.stat().st_size,
    }


def main() -> None:
    train = dataset.generate(TRAIN_N, seed=TRAIN_SEED)
    legacy = dataset.generate(TRAIN_N, seed=TRAIN_SEED + 1, concept="legacy")
    evaluation = dataset.generate(EVAL_N, seed=EVAL_SEED)
    fitted = _train_models(train, legacy)
    protos = {name: _to_onnx(model, name) for name, model in fitted.items()}
    protos["slow"] = make_slow(protos["baseline"])
    protos["broken"] = make_broken(protos["baseline"])
    protos["coinflip"] = make_coinflip(protos["baseline"])
    for name, proto in protos.items():
        onnx.checker.check_model(proto, full_check=True)
        (HERE / f"{name}.onnx").write_bytes(proto.SerializeToString())
    scores = fitted["baseline"].predict_proba(train.features)[:, 1]
    metadata = build_metadata(train, scores)
    (HERE / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    narrow_sums = write_narrow(train, metadata)
    report = {name: _evaluate(HERE / f"{name}.onnx", evaluation) for name in protos}
    report_doc = {"dataset": {"seed": EVAL_SEED, "rows": EVAL_N}, "models": report}
    (HERE / "evaluation.json").write_text(json.dumps(report_doc, indent=2) + "\n")
    sums = [f"{hashlib.sha256((HERE / f'{n}.onnx').read_bytes()).hexdigest()}  {n}.onnx" for n in protos]
    sums.append(f"{hashlib.sha256((HERE / 'metadata.json').read_bytes()).hexdigest()}  metadata.json")
    sums += narrow_sums
    (HERE / "SHA256SUMS").write_text("\n".join(sorted(sums, key=lambda s: s.split()[1])) + "\n")
    print(json.dumps(report, indent=2))


HASH_SEED = "0"


def _with_fixed_hash_seed() -> None:
    """Run again under ``PYTHONHASHSEED=0`` unless already so.

    skl2onnx lists a ColumnTransformer pipeline's opset imports in set order, which follows the
    string hash seed: with a random seed the same model comes out with ``ai.onnx.ml`` before or after
    the default domain, so its bytes (and SHA256SUMS) change from run to run. Seed 0 is the one the
    checked-in files were written with.
    """
    if os.environ.get("PYTHONHASHSEED") != HASH_SEED:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": HASH_SEED})


if __name__ == "__main__":
    _with_fixed_hash_seed()
    main()
