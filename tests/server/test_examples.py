"""The example models and dataset: checked-in bytes, accuracy ordering, slow, broken and coinflip behaviour."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest

from examples.models import dataset

from .conftest import MODELS

MODEL_NAMES = ("baseline", "better", "worse", "slow", "broken", "coinflip")


def _session(name: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(MODELS / f"{name}.onnx"), opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def holdout() -> dataset.Dataset:
    return dataset.generate(4000, seed=777)


def _accuracy(name: str, data: dataset.Dataset) -> tuple[float, float]:
    label, proba = _session(name).run(["label", "probabilities"], {"input": data.features})
    finite = np.isfinite(proba).all(axis=1)
    return float(np.mean(label == data.labels)), float(1 - finite.mean())


def test_files_match_sha256sums() -> None:
    lines = (MODELS / "SHA256SUMS").read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert set(listed) >= {f"{n}.onnx" for n in MODEL_NAMES} | {"metadata.json"}
    for name, digest in listed.items():
        data = (MODELS / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} does not match SHA256SUMS"
        assert len(data) < 1_000_000, f"{name} is too large to keep in git"


def test_all_models_share_one_signature() -> None:
    signatures = set()
    for name in MODEL_NAMES:
        sess = _session(name)
        ins = tuple((i.name, i.type, tuple(map(str, i.shape))) for i in sess.get_inputs())
        outs = tuple((o.name, o.type) for o in sess.get_outputs())
        signatures.add((ins, outs))
    assert len(signatures) == 1, signatures


def test_accuracy_ordering(holdout: dataset.Dataset) -> None:
    acc = {name: _accuracy(name, holdout)[0] for name in ("baseline", "better", "worse", "coinflip")}
    assert acc["better"] >= acc["baseline"] + 0.05, acc
    assert acc["worse"] <= acc["baseline"] - 0.10, acc
    assert acc["coinflip"] <= acc["worse"] - 0.05, acc
    assert 0.75 < acc["baseline"] < 0.9, acc


@pytest.mark.parametrize("concept", dataset.CONCEPTS)
def test_coinflip_is_right_half_the_time_whatever_the_truth(concept: str) -> None:
    """~0.5 on every concept and for each true class alike (it knows nothing of fraud), while a
    trained model on the same rows does far better or far worse than 0.5."""
    data = dataset.generate(10_000, seed=4242, concept=concept)
    label, proba = _session("coinflip").run(["label", "probabilities"], {"input": data.features})
    assert abs(float(np.mean(label == data.labels)) - 0.5) < 0.02
    for cls in (0, 1):
        assert abs(float(np.mean(label[data.labels == cls] == cls)) - 0.5) < 0.03, f"recall of class {cls}"
    assert abs(float(label.mean()) - 0.5) < 0.02, "predicts fraud about half the time"
    np.testing.assert_array_equal(proba.argmax(axis=1), label)
    np.testing.assert_array_equal(proba.sum(axis=1), np.ones(len(label), dtype=np.float32))
    trained = _accuracy("baseline" if concept == "current" else "worse", data)[0]
    assert trained > 0.8


def test_coinflip_answers_a_row_the_same_way_every_time(holdout: dataset.Dataset) -> None:
    sess = _session("coinflip")
    rows = holdout.features[:200]
    batch = sess.run(["label"], {"input": rows})[0]
    singles = np.concatenate([sess.run(["label"], {"input": row[None, :]})[0] for row in rows])
    np.testing.assert_array_equal(batch, singles)
    np.testing.assert_array_equal(batch, sess.run(["label"], {"input": rows[::-1]})[0][::-1])


def test_broken_yields_non_finite_for_a_sizeable_fraction(holdout: dataset.Dataset) -> None:
    _, non_finite = _accuracy("broken", holdout)
    assert 0.1 <= non_finite <= 0.5
    median_row = np.array([[f["impute"]["value"] if f["type"] == "number" else 0.0 for f in _metadata()["features"]]])
    proba = _session("broken").run(["probabilities"], {"input": median_row.astype(np.float32)})[0]
    assert np.isfinite(proba).all(), "the self-check row must stay finite so the broken model gets ready"


def test_slow_is_much_slower_with_identical_outputs(holdout: dataset.Dataset) -> None:
    import time

    rows = holdout.features[:50]
    base = _session("baseline").run(None, {"input": rows})
    slow_sess = _session("slow")
    slow = slow_sess.run(None, {"input": rows})
    np.testing.assert_array_equal(base[0], slow[0])
    np.testing.assert_allclose(base[1], slow[1], rtol=1e-6)
    start = time.perf_counter()
    for row in rows[:3]:
        slow_sess.run(None, {"input": row[None, :]})
    assert (time.perf_counter() - start) / 3 > 0.02, "slow.onnx should take tens of ms per request"


def _metadata() -> dict:
    return json.loads((MODELS / "metadata.json").read_text())


def test_metadata_describes_the_dataset() -> None:
    meta = _metadata()
    assert [f["name"] for f in meta["features"]] == list(dataset.FEATURE_NAMES)
    assert meta["classes"] == list(dataset.CLASSES)
    channel = meta["features"][-1]
    assert channel["type"] == "category" and channel["categories"] == list(dataset.CHANNELS)


def test_dataset_is_deterministic_and_round_trips() -> None:
    a, b = dataset.generate(300, seed=5), dataset.generate(300, seed=5)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.features, dataset.generate(300, seed=6).features)
    np.testing.assert_array_equal(dataset.encode(a.records()), a.features)
    assert 0.15 < a.labels.mean() < 0.5


def test_labelled_requests_cover_all_rows_with_ids() -> None:
    reqs = list(dataset.labelled_requests(10, seed=3, batch_size=4))
    assert [len(r.labels) for r in reqs] == [4, 4, 2]
    assert len({r.id for r in reqs}) == 3
    assert reqs[0].body["inputs"][0]["shape"] == [4, 5]
    named = next(dataset.labelled_requests(3, seed=3, batch_size=3, named=True, missing_rate=0.5))
    assert named.body["inputs"] == [] and len(named.body["parameters"]["features"]) == 3
    assert dataset.feedback_body("x", ["fraud"]) == {"id": "x", "truth": "fraud"}
    assert dataset.feedback_body("x", ["fraud", "legit"]) == {"id": "x", "truth": ["fraud", "legit"]}
