"""Adaptive micro-batching of concurrent infer requests into one ``session.run``.

Why: under concurrency, many requests of a few rows each wait on the event loop at the same time,
and each ``session.run`` call has a fixed cost (Python binding, kernel dispatch, output
allocation) much larger than a row's compute for small tabular models. Requests that arrive in the
same event-loop iteration are concatenated along the batch dimension and run once; their outputs
are split back by row counts. It is *adaptive* with zero added delay: the flush is scheduled with
``loop.call_soon``, so a lone request runs immediately (batch of one), and only requests already
queued join it. Nothing ever waits for a timer.

Batching is only enabled for models whose inputs and outputs all have a variable first dimension
and whose batched outputs equal the row-by-row outputs (checked at warmup, see
:func:`supports_batching`). If a batched run fails, each request is retried alone, so one request
can never fail another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np

from .model import OnnxModel

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]


class MicroBatcher:
    """Collects requests during one loop iteration and runs them as one batch, inline."""

    def __init__(self, model: OnnxModel, max_rows: int, on_batch: Callable[[int], None] | None = None) -> None:
        self.model = model
        self.max_rows = max_rows
        self.on_batch = on_batch
        self._pending: list[tuple[Feeds, int, asyncio.Future[Outputs]]] = []
        self._scheduled = False

    async def run(self, feeds: Feeds, rows: int) -> Outputs:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        self._pending.append((feeds, rows, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for group in _groups(pending, self.max_rows):
            self._run_group(group)

    def _run_group(self, group: list[tuple[Feeds, int, asyncio.Future[Outputs]]]) -> None:
        if len(group) == 1:
            feeds, _, future = group[0]
            _settle(future, self.model.run, feeds)
            return
        names = list(group[0][0])
        batch = {name: np.concatenate([g[0][name] for g in group]) for name in names}
        try:
            outputs = self.model.run(batch)
        except Exception:  # isolate the culprit: run each request alone
            for feeds, _, future in group:
                _settle(future, self.model.run, feeds)
            return
        if self.on_batch is not None:
            self.on_batch(len(group))
        start = 0
        for _, rows, future in group:
            if not future.cancelled():
                future.set_result({k: v[start : start + rows] for k, v in outputs.items()})
            start += rows


def _settle(future: asyncio.Future[Outputs], run: Callable[[Feeds], Outputs], feeds: Feeds) -> None:
    if future.cancelled():
        return
    try:
        future.set_result(run(feeds))
    except Exception as exc:
        future.set_exception(exc)


def _signature(feeds: Feeds) -> tuple:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


def _groups(
    pending: list[tuple[Feeds, int, asyncio.Future[Outputs]]], max_rows: int
) -> list[list[tuple[Feeds, int, asyncio.Future[Outputs]]]]:
    """Group by input signature (same names, dtypes and non-batch dims), capped at ``max_rows`` rows."""
    by_signature: dict[tuple, list[list[tuple[Feeds, int, asyncio.Future[Outputs]]]]] = {}
    for item in pending:
        chunks = by_signature.setdefault(_signature(item[0]), [[]])
        current = chunks[-1]
        if current and sum(i[1] for i in current) + item[1] > max_rows:
            current = []
            chunks.append(current)
        current.append(item)
    return [chunk for chunks in by_signature.values() for chunk in chunks]


def supports_batching(model: OnnxModel, sample: Feeds) -> bool:
    """True if every input/output has a variable first dim and a 2-row batch equals two 1-row runs."""
    if not all(t.shape and t.shape[0] == -1 for t in (*model.inputs, *model.outputs)):
        return False
    try:
        single = model.run(sample)
        double = model.run({k: np.concatenate([v, v]) for k, v in sample.items()})
    except Exception:
        return False
    for name, one in single.items():
        two = double[name]
        if two.shape[0] != 2 * one.shape[0]:
            return False
        halves = (two[: one.shape[0]], two[one.shape[0] :])
        if one.dtype.kind == "f":
            if not all(np.allclose(h, one, rtol=1e-5, atol=1e-6, equal_nan=True) for h in halves):
                return False
        elif not all(np.array_equal(h, one) for h in halves):
            return False
    return True
