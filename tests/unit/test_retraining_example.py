"""The example retraining Job (examples/retraining/train.py) trains, checks and publishes a model
whose metadata carries the reference bins of the data it was trained on."""

from __future__ import annotations

import hashlib
import json
import runpy
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TRAIN = runpy.run_path(str(REPO / "examples/retraining/train.py"), run_name="train")


def test_a_retrained_model_is_published_with_the_bins_of_its_own_training_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELROLLOUT_DRIFT_REPORT", json.dumps({"features": [{"name": "amount", "drifted": True}]}))
    monkeypatch.setenv("MODELROLLOUT_MODEL_URI", (REPO / "examples/models/baseline.onnx").as_uri())
    monkeypatch.setenv("JOB_NAME", "fraud-retrain-1")
    assert TRAIN["main"](["--store", str(tmp_path), "--data-scale", "amount=4", "--rows", "4000"]) == 0
    published = tmp_path / "fraud-retrain-1"
    model, metadata = published / "model.onnx", json.loads((published / "metadata.json").read_text())
    assert len(hashlib.sha256(model.read_bytes()).hexdigest()) == 64
    # The shifted amount's training quantiles are four times the original's (the example's own bins).
    original = json.loads((REPO / "examples/models/metadata.json").read_text())
    edges = {f["name"]: f["reference_bins"].get("edges") for f in metadata["features"]}
    before = {f["name"]: f["reference_bins"].get("edges") for f in original["features"]}
    assert np.allclose(edges["amount"], np.asarray(before["amount"]) * 4, rtol=0.1)
    assert np.allclose(edges["hour"], before["hour"], atol=1)  # whole hours: quantiles of 4,000 rows
    assert sum(metadata["prediction_score_reference_bins"]["fractions"]) == pytest.approx(1, abs=0.01)


def test_a_model_worse_than_the_current_one_is_not_rolled_out(tmp_path, monkeypatch):
    monkeypatch.setenv("MODELROLLOUT_MODEL_URI", (REPO / "examples/models/better.onnx").as_uri())
    # Unshifted data: the logistic regression does not reach the gradient-boosted model in use.
    assert TRAIN["main"](["--store", str(tmp_path), "--rows", "4000", "--apply"]) == TRAIN["EXIT_WORSE"]
    with pytest.raises(SystemExit, match="amount=4"):
        TRAIN["parse_scale"](["channel=2"])
