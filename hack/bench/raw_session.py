"""The limit: in-process ``session.run`` on the benchmark row, no HTTP, no JSON.

Prints one JSON object: p50/p99 latency of single-row runs, runs/s on one thread, the time from
being spawned to the first completed run, and the process RSS after loading. Bounded by
``--seconds`` and a run count.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--row", required=True, help="JSON list of floats")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--spawned-at", type=float, required=True, help="time.time() when the parent spawned us")
    args = parser.parse_args()
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    x = np.asarray([json.loads(args.row)], dtype=np.float32)
    names = [o.name for o in session.get_outputs()]
    session.run(names, {"input": x})
    ready_s = time.time() - args.spawned_at
    rss = rss_kib()
    samples: list[float] = []
    deadline = time.perf_counter() + args.seconds
    while time.perf_counter() < deadline and len(samples) < 2_000_000:
        t0 = time.perf_counter()
        session.run(names, {"input": x})
        samples.append(time.perf_counter() - t0)
    lat = np.asarray(samples)
    print(
        json.dumps(
            {
                "p50_ms": float(np.percentile(lat, 50) * 1000),
                "p99_ms": float(np.percentile(lat, 99) * 1000),
                "rps": float(len(lat) / lat.sum()),
                "ready_s": ready_s,
                "rss_mib": rss / 1024,
                "runs": len(lat),
            }
        )
    )


if __name__ == "__main__":
    main()
