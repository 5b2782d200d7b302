"""Load generator for gRPC ``ModelInfer`` (Open Inference Protocol v2), the gRPC twin of ``wrk``.

What it sends is what ``tritonclient.grpc`` sends for one FP32 row: a ``ModelInferRequest`` with the
input's bytes in ``raw_input_contents`` (its messages, ``tritonclient.grpc.service_pb2``, are the
ones used here), so a server answering as Triton does returns ``raw_output_contents``.

Why its shape: ``--concurrency`` workers (coroutines on one ``grpc.aio`` event loop), each with its
own persistent channel and its own TCP connection (a local subchannel pool; gRPC would otherwise
share one connection between channels with the same target), each keeping one call in flight — the
way ``wrk -c N`` keeps N connections with one request each. The request is serialised once; the
answer is taken as bytes (no serialiser on either side), so a call costs the client only gRPC's
own work. Every answer is checked: bytes equal to the first answer, which was decoded and compared
with the expected predictions, are correct; any other answer is decoded and compared again, and
counts as wrong when its predictions differ. Errors (any gRPC status) are counted by code, never
dropped. Bounded in time (``--seconds``) and in count (``--max-requests``), every call with a
deadline.

Prints one JSON line: requests, req/s, p50/p99 (ms), errors, wrong answers, and the generator's own
CPU time per call and share of a core (so a run limited by the generator shows itself).

``--check`` sends one call and prints the decoded outputs and whether they came raw (for sanity
checks and for finding out what a peer answers).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import resource
import sys
import time
from collections import Counter

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb

METHOD = "/inference.GRPCInferenceService/ModelInfer"
DTYPES = {"FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4", "BOOL": "|b1"}
CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents", "INT32": "int_contents"}
CALL_TIMEOUT_S = 10.0


def build_request(model: str, input_name: str, row: list[float]) -> bytes:
    """The serialised ``ModelInferRequest`` of one FP32 row, inputs in ``raw_input_contents``."""
    request = pb.ModelInferRequest(model_name=model, id="bench")
    request.inputs.add(name=input_name, datatype="FP32", shape=[1, len(row)])
    request.raw_input_contents.append(np.asarray([row], dtype="<f4").tobytes())
    return request.SerializeToString()


def decode(answer: bytes) -> tuple[dict[str, list], bool]:
    """(outputs by name as flat lists, whether they came in ``raw_output_contents``)."""
    response = pb.ModelInferResponse.FromString(answer)
    raw = len(response.raw_output_contents) > 0
    outputs: dict[str, list] = {}
    for index, tensor in enumerate(response.outputs):
        if raw:
            values = np.frombuffer(response.raw_output_contents[index], dtype=DTYPES[tensor.datatype])
        else:
            values = np.asarray(getattr(tensor.contents, CONTENTS[tensor.datatype]), dtype=DTYPES[tensor.datatype])
        outputs[tensor.name] = values.tolist()
    return outputs, raw


def matches(outputs: dict[str, list], expected: dict[str, list]) -> bool:
    """Same names and the same values, exactly (JSON values cast to the answer's float32/int64 first)."""
    if set(outputs) != set(expected):
        return False
    for name, values in outputs.items():
        got = np.asarray(values)
        want = np.asarray(expected[name]).astype(got.dtype)
        if got.shape != want.shape or not np.array_equal(got, want):
            return False
    return True


def channel(target: str) -> grpc.aio.Channel:
    # A local subchannel pool: each worker gets a TCP connection of its own (as wrk's connections).
    return grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


async def check(args: argparse.Namespace) -> dict:
    async with channel(args.target) as chan:
        call = chan.unary_unary(METHOD)
        answer = await call(build_request(args.model, args.input, args.row), timeout=CALL_TIMEOUT_S)
    outputs, raw = decode(answer)
    return {"outputs": outputs, "raw": raw, "bytes": len(answer)}


async def load(args: argparse.Namespace) -> dict:
    request = build_request(args.model, args.input, args.row)
    expected: dict[str, list] = args.expect
    channels = [channel(args.target) for _ in range(args.channels or args.concurrency)]
    calls = [channels[i % len(channels)].unary_unary(METHOD) for i in range(args.concurrency)]
    try:
        # Connect every channel and verify the first answer before the clock starts.
        await asyncio.gather(*(c.channel_ready() for c in channels))
        first = await calls[0](request, timeout=CALL_TIMEOUT_S)
        outputs, raw = decode(first)
        if not matches(outputs, expected):
            raise SystemExit(f"first answer differs from the expected predictions: {outputs} != {expected}")
        if args.require_raw and not raw:
            raise SystemExit("first answer has typed contents, not raw_output_contents")
        # One call on every channel (its connection's first request), checked like every other.
        primed = await asyncio.gather(*(call(request, timeout=CALL_TIMEOUT_S) for call in calls))

        latencies: list[list[int]] = [[] for _ in calls]
        errors: Counter[str] = Counter()
        state = {"sent": 0, "wrong": sum(not _correct(a, first, expected) for a in primed), "varied": 0}
        deadline = time.perf_counter() + args.seconds

        async def worker(call: grpc.aio.UnaryUnaryMultiCallable, out: list[int]) -> None:
            clock = time.perf_counter_ns
            while state["sent"] < args.max_requests and time.perf_counter() < deadline:
                state["sent"] += 1
                started = clock()
                try:
                    answer = await call(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] += 1
                    continue
                out.append(clock() - started)
                if answer != first:
                    state["varied"] += 1
                    if not _correct(answer, first, expected):
                        state["wrong"] += 1

        cpu_before = _cpu_seconds()
        started = time.perf_counter()
        await asyncio.gather(*(worker(call, out) for call, out in zip(calls, latencies, strict=True)))
        wall = time.perf_counter() - started
        cpu = _cpu_seconds() - cpu_before
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    samples = sorted(x for out in latencies for x in out)
    answered = len(samples)
    return {
        "requests": answered,
        "rps": answered / wall if wall else 0.0,
        "p50_ms": _percentile(samples, 50) / 1e6 if samples else None,
        "p99_ms": _percentile(samples, 99) / 1e6 if samples else None,
        "errors": sum(errors.values()),
        "error_codes": dict(errors),
        "wrong": state["wrong"],
        "varied": state["varied"],
        "raw": raw,
        "client_cpu_us": cpu / max(answered + sum(errors.values()), 1) * 1e6,
        "client_core_share": cpu / wall if wall else 0.0,
        "seconds": wall,
    }


def _correct(answer: bytes, first: bytes, expected: dict[str, list]) -> bool:
    """The verified first answer's bytes, or an answer that decodes to the expected predictions."""
    if answer == first:
        return True
    try:
        return matches(decode(answer)[0], expected)
    except Exception:  # an undecodable answer is a wrong answer
        return False


def _percentile(ordered: list[int], pct: float) -> int:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="host:port of the gRPC server")
    parser.add_argument("--model", default="fraud")
    parser.add_argument("--input", default="input")
    parser.add_argument("--row", type=json.loads, required=True, help="the input row, a JSON list of numbers")
    parser.add_argument("--expect", type=json.loads, default={}, help="expected outputs: JSON {name: flat list}")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--channels", type=int, default=0, help="channels the workers share round-robin (default: one each)"
    )
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--max-requests", type=int, default=500_000)
    parser.add_argument("--require-raw", action="store_true", help="refuse a server answering typed contents")
    parser.add_argument("--check", action="store_true", help="one call; print the decoded outputs")
    args = parser.parse_args()
    if not 0 <= args.channels <= args.concurrency:
        parser.error("--channels within 0..--concurrency")
    if not 1 <= args.concurrency <= 256 or not 0 < args.seconds <= 120 or not 1 <= args.max_requests <= 10**7:
        parser.error("--concurrency within 1..256, --seconds within (0, 120], --max-requests within 1..1e7")
    result = asyncio.run(check(args) if args.check else load(args))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
