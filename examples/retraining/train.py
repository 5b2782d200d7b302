"""The example retraining Job: train on fresh data, publish the model with its own reference bins,
and hand it to the rollout by updating the ModelDeployment.

The operator starts this as the container of ``spec.retraining.job`` when the stable revision is
Drifted (docs/drift.md). What a real one does, in order, and what this example stands in with:

1. **Fresh labelled data.** A real trainer queries the feature store or warehouse for the last weeks
   of traffic with its ground truth. Here ``--data-scale amount=4`` draws it from the example
   generator (``examples/models/dataset.py``) with the same population shift the drifted traffic
   has: that is the data the world now produces.
2. **Train and check.** The same pipeline as the stable model (``examples/models/generate.py``),
   fitted on the fresh data; its accuracy on a fresh holdout is compared with the current model's
   (``MODELROLLOUT_MODEL_URI``). A model worse than it by more than ``--max-drop`` is not rolled out
   (exit 3): retraining is for a model that fits the new data, and the canary gates judge it again.
3. **Publish** ``<store>/<name>-<run>/model.onnx`` with a ``metadata.json`` whose reference bins
   come from the fresh data and this model's own scores, so the drift gate judges the new revision
   against what it was trained on. The store is a directory here (a PVC, or a bucket path in a
   cluster: upload the same two files).
4. **Roll it out** by updating the manifest's ``spec.model`` (uri and sha256). With GitOps this is a
   commit to the deployment repository; here (``--apply``) a ``kubectl patch`` with this program's
   own field manager. The operator never edits the spec: the new revision goes through the canary
   gates like any other.

Run by hand: ``python examples/retraining/train.py --store /tmp/models --data-scale amount=4``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent / "models"
sys.path.insert(0, str(MODELS))

import dataset  # noqa: E402
import generate  # noqa: E402

EXIT_WORSE = 3


def parse_scale(items: list[str]) -> dict[str, float]:
    """``["amount=4"]`` -> ``{"amount": 4.0}``."""
    scale = {}
    for item in items:
        name, _, factor = item.partition("=")
        if name not in dataset.NUMERIC_FEATURES or not factor:
            raise SystemExit(f"--data-scale {item!r}: expected <numeric feature>=<factor>, e.g. amount=4")
        scale[name] = float(factor)
    return scale


def accuracy(model_path: Path, data: dataset.Dataset) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    (labels,) = session.run(["label"], {dataset.INPUT_NAME: data.features})
    return float(np.mean(labels == data.labels))


def current_model(uri: str) -> Path | None:
    """The drifted revision's model, when it is a local file (the example's store)."""
    parts = urllib.parse.urlsplit(uri)
    return Path(parts.path) if parts.scheme == "file" and Path(parts.path).exists() else None


def train(scale: dict[str, float], rows: int, seed: int) -> tuple[Any, dataset.Dataset, dataset.Dataset]:
    """Fit the stable model's pipeline on fresh data; the fitted pipeline, its training and holdout data."""
    fresh = dataset.generate(rows, seed=seed, scale=scale)
    holdout = dataset.generate(rows // 2, seed=seed + 1, scale=scale)
    pipeline = generate.Pipeline(
        [("pre", generate._preprocessor()), ("clf", generate.LogisticRegression(max_iter=500))]
    )
    pipeline.fit(fresh.features, fresh.labels)
    return pipeline, fresh, holdout


def publish(pipeline: Any, fresh: dataset.Dataset, directory: Path) -> tuple[Path, str]:
    """Write model.onnx and its metadata.json (reference bins of the fresh data); the model and its sha256."""
    directory.mkdir(parents=True, exist_ok=True)
    proto = generate._to_onnx(pipeline, "retrained")
    model = directory / "model.onnx"
    model.write_bytes(proto.SerializeToString())
    scores = pipeline.predict_proba(fresh.features)[:, 1]
    metadata = generate.build_metadata(fresh, scores)
    metadata["description"] = "Card-transaction fraud classifier, retrained on drifted traffic"
    (directory / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return model, hashlib.sha256(model.read_bytes()).hexdigest()


def roll_out(name: str, namespace: str, uri: str, sha256: str) -> None:
    """Point the manifest at the new model (the GitOps commit's stand-in)."""
    patch = {"spec": {"model": {"uri": uri, "sha256": sha256}}}
    subprocess.run(
        ["kubectl", "patch", "modeldeployment", name, "-n", namespace, "--type=merge",
         "--field-manager=fraud-trainer", "-p", json.dumps(patch)],
        check=True,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--store", type=Path, required=True, help="directory the model is published to")
    parser.add_argument("--data-scale", action="append", default=[], help="stand-in for fresh data: feature=factor")
    parser.add_argument("--rows", type=int, default=20_000, help="fresh labelled rows to train on")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-drop", type=float, default=0.01, help="largest accuracy drop vs the current model")
    parser.add_argument("--apply", action="store_true", help="kubectl patch the ModelDeployment to the new model")
    args = parser.parse_args(argv)

    report = json.loads(os.environ.get("MODELROLLOUT_DRIFT_REPORT") or "{}")
    name = os.environ.get("MODELROLLOUT_NAME", report.get("modelDeployment", "fraud"))
    namespace = os.environ.get("MODELROLLOUT_NAMESPACE", report.get("namespace", "default"))
    drifted = [f["name"] for f in report.get("features", []) if f.get("drifted")]
    print(f"retraining {namespace}/{name}: drifted {', '.join(drifted) or '(no report)'}", flush=True)

    pipeline, fresh, holdout = train(parse_scale(args.data_scale), args.rows, args.seed)
    run = os.environ.get("JOB_NAME") or f"{name}-retrained-{args.seed}"
    model, sha256 = publish(pipeline, fresh, args.store / run)
    new = accuracy(model, holdout)
    old_path = current_model(os.environ.get("MODELROLLOUT_MODEL_URI", ""))
    old = accuracy(old_path, holdout) if old_path else None
    print(f"holdout accuracy: new {new:.4f}, current {'-' if old is None else f'{old:.4f}'}", flush=True)
    if old is not None and new < old - args.max_drop:
        print(f"worse than the current model by more than {args.max_drop}: not rolled out", flush=True)
        return EXIT_WORSE
    uri = model.resolve().as_uri()
    print(f"published {uri} sha256 {sha256}", flush=True)
    if args.apply:
        roll_out(name, namespace, uri, sha256)
        print(f"{namespace}/{name} now asks for the retrained model: the canary gates take it from here", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
