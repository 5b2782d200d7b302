"""Micro-batching: requests queued in the same loop iteration run as one batch, answers split back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from modelserver.batching import MicroBatcher, split_rows, supports_batching
from modelserver.model import OnnxModel

from .conftest import MODELS


class FakeModel:
    """Doubles its input; records every batch size; can be told to fail on batches."""

    def __init__(self, fail_batches: bool = False) -> None:
        self.calls: list[int] = []
        self.fail_batches = fail_batches

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["x"]
        self.calls.append(x.shape[0])
        if self.fail_batches and x.shape[0] > 1:
            raise RuntimeError("batch failed")
        if (x < 0).any():
            raise ValueError("negative input")
        return {"y": x * 2}


def batcher_for(model: FakeModel, max_rows: int) -> MicroBatcher[dict[str, np.ndarray]]:
    """The batch function the server uses, in miniature: one run, outputs cut back per request."""
    return MicroBatcher(lambda feeds, rows: split_rows(model.run(feeds), rows), max_rows)


def _gather(batcher: MicroBatcher, arrays: list[np.ndarray]) -> list[object]:
    async def main() -> list[object]:
        return await asyncio.gather(*(batcher.run({"x": a}, a.shape[0]) for a in arrays), return_exceptions=True)

    return asyncio.run(main())


def test_concurrent_requests_share_one_run_and_get_their_own_rows() -> None:
    model = FakeModel()
    arrays = [np.full((n, 2), i, dtype=np.float32) for i, n in enumerate([1, 3, 2])]
    results = _gather(batcher_for(model, max_rows=100), arrays)
    assert model.calls == [6]
    for array, result in zip(arrays, results, strict=True):
        np.testing.assert_array_equal(result["y"], array * 2)


def test_batches_respect_the_row_cap_and_signatures() -> None:
    model = FakeModel()
    arrays = [np.ones((2, 2), np.float32) for _ in range(5)] + [np.ones((1, 3), np.float32)]
    _gather(batcher_for(model, max_rows=4), arrays)
    assert sorted(model.calls) == [1, 2, 4, 4]


def test_a_failing_batch_is_retried_per_request() -> None:
    model = FakeModel(fail_batches=True)
    arrays = [np.ones((1, 2), np.float32), -np.ones((1, 2), np.float32), np.ones((1, 2), np.float32)]
    results = _gather(batcher_for(model, max_rows=100), arrays)
    assert isinstance(results[1], ValueError)
    np.testing.assert_array_equal(results[0]["y"], arrays[0] * 2)
    np.testing.assert_array_equal(results[2]["y"], arrays[2] * 2)


def test_the_batch_function_sees_every_requests_row_count() -> None:
    """Work after the run (reading classes, signing tokens) is done once per batch, for every request."""
    seen: list[list[int]] = []

    def run_batch(feeds: dict[str, np.ndarray], rows: list[int]) -> list[int]:
        seen.append(rows)
        return [feeds["x"].shape[0] * 100 + i for i in range(len(rows))]

    arrays = [np.ones((n, 2), np.float32) for n in (2, 1, 3)]
    assert _gather(MicroBatcher(run_batch, max_rows=100), arrays) == [600, 601, 602]
    assert seen == [[2, 1, 3]]


def test_a_lone_request_runs_without_waiting() -> None:
    model = FakeModel()
    results = _gather(batcher_for(model, max_rows=100), [np.ones((1, 2), np.float32)])
    assert model.calls == [1] and results[0]["y"].shape == (1, 2)


@pytest.mark.parametrize("name", ["baseline", "better", "broken"])
def test_example_models_support_batching(name: str) -> None:
    model = OnnxModel((MODELS / f"{name}.onnx").read_bytes())
    sample = {"input": np.array([[38.03, 816.0, 6.0, 3.7, 0.0]], dtype=np.float32)}
    assert supports_batching(model, sample)


def test_batching_refused_when_rows_interact() -> None:
    """A model whose output mixes rows (e.g. normalising over the batch) must not be batched."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=0)],
        "rows-interact",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    model = OnnxModel(proto.SerializeToString())
    assert not supports_batching(model, {"x": np.array([[1.0, 2.0]], dtype=np.float32)})


def test_a_request_alone_runs_inline() -> None:
    """``alone`` (no other request in progress): the result is there on the first step of the
    coroutine, with no future and no pass through the event loop."""
    model = FakeModel()
    step = batcher_for(model, max_rows=100).run({"x": np.ones((1, 2), np.float32)}, 1, alone=True)
    with pytest.raises(StopIteration) as finished:
        step.send(None)
    assert model.calls == [1]
    np.testing.assert_array_equal(finished.value.value["y"], np.full((1, 2), 2, np.float32))


def test_a_request_alone_still_joins_a_queued_batch() -> None:
    model = FakeModel()
    batcher = batcher_for(model, max_rows=100)

    async def main() -> list[object]:
        queued = asyncio.ensure_future(batcher.run({"x": np.ones((2, 2), np.float32)}, 2))
        await asyncio.sleep(0)  # queued, its flush scheduled but not run yet
        mine = await batcher.run({"x": np.ones((1, 2), np.float32)}, 1, alone=True)
        return [await queued, mine]

    results = asyncio.run(main())
    assert model.calls == [3]
    assert [r["y"].shape for r in results] == [(2, 2), (1, 2)]


def test_an_inline_run_raises_its_own_error() -> None:
    batcher = batcher_for(FakeModel(), max_rows=100)
    with pytest.raises(ValueError, match="negative input"):
        asyncio.run(batcher.run({"x": -np.ones((1, 2), np.float32)}, 1, alone=True))
