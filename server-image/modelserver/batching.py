"""Adaptive micro-batching of concurrent infer requests into one ``session.run``.

Why: under concurrency, many requests of a few rows each wait on the event loop at the same time,
and each ``session.run`` call has a fixed cost (Python binding, kernel dispatch, output
allocation) much larger than a row's compute for small tabular models. Requests that arrive in the
same event-loop iteration are concatenated along the batch dimension and run once; their outputs
are split back by row counts. It is *adaptive* with zero added delay: the flush is scheduled with
``loop.call_soon``, so a lone request runs immediately (batch of one), and only requests already
queued join it. Nothing ever waits for a timer. A caller that knows no other request is in progress
(``alone``) skips even that loop iteration and runs at once: at concurrency 1 the future, the
scheduled flush and the extra pass through the event loop cost more than a tenth of a small
model's request.

Batching is only enabled for models whose inputs and outputs all have a variable first dimension
and whose batched outputs equal the row-by-row outputs (checked at warmup, see
:func:`supports_batching`). If a batched run fails, each request is retried alone, so one request
can never fail another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

import numpy as np

from .model import OnnxModel

Feeds = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
R = TypeVar("R")


class MicroBatcher(Generic[R]):
    """Collects requests during one loop iteration and runs them as one batch, inline.

    ``run_batch(feeds, rows)`` gets the concatenated feeds and each request's row count and
    returns one result per request, in order. Why a batch function rather than the model alone:
    the work after ``session.run`` that every request needs (reading the predicted classes,
    counting them, signing prediction tokens) is then done for the batch in one go, back to back;
    done per request, between socket writes, the same token cost 2-3x as much CPU (cold caches,
    ``docs/model-server.md``).
    """

    def __init__(
        self,
        run_batch: Callable[[Feeds, list[int]], list[R]],
        max_rows: int,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_rows = max_rows
        self.on_batch = on_batch
        self._pending: list[tuple[Feeds, int, asyncio.Future[R]]] = []
        self._scheduled = False

    async def run(self, feeds: Feeds, rows: int, alone: bool = False) -> R:
        """This request's result, from a batch with those queued in the same loop iteration.

        ``alone``: the caller knows that no other request can join (it is the only one in
        progress), so nothing is queued and it runs inline, as a batch of one would.
        """
        if alone and not self._pending:
            return self.run_batch(feeds, [rows])[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
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

    def _run_group(self, group: list[tuple[Feeds, int, asyncio.Future[R]]]) -> None:
        if len(group) == 1:
            self._settle(*group[0])
            return
        names = list(group[0][0])
        batch = {name: np.concatenate([g[0][name] for g in group]) for name in names}
        try:
            results = self.run_batch(batch, [rows for _, rows, _ in group])
        except Exception:  # isolate the culprit: run each request alone
            for item in group:
                self._settle(*item)
            return
        if self.on_batch is not None:
            self.on_batch(len(group))
        for (_, _, future), result in zip(group, results, strict=True):
            if not future.cancelled():
                future.set_result(result)

    def _settle(self, feeds: Feeds, rows: int, future: asyncio.Future[R]) -> None:
        if future.cancelled():
            return
        try:
            future.set_result(self.run_batch(feeds, [rows])[0])
        except Exception as exc:
            future.set_exception(exc)


def split_rows(outputs: Outputs, rows: list[int]) -> list[Outputs]:
    """A batch's outputs cut back into each request's rows (views, no copies)."""
    if len(rows) == 1:
        return [outputs]
    parts, start = [], 0
    for count in rows:
        parts.append({name: array[start : start + count] for name, array in outputs.items()})
        start += count
    return parts


def _signature(feeds: Feeds) -> tuple:
    return tuple((name, array.dtype.str, array.shape[1:]) for name, array in feeds.items())


def _groups(
    pending: list[tuple[Feeds, int, asyncio.Future[R]]], max_rows: int
) -> list[list[tuple[Feeds, int, asyncio.Future[R]]]]:
    """Group by input signature (same names, dtypes and non-batch dims), capped at ``max_rows`` rows."""
    by_signature: dict[tuple, list[list[tuple[Feeds, int, asyncio.Future[R]]]]] = {}
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
