"""``hack/bench/run``: the bench-server report judges ours against the raw ASGI floor (issue 14).

The figures are made up; what is checked is that the new contender is started as the report says
(uvloop, httptools, no middleware), that the two targets are computed from the right rows with the
right bounds, and that the rendered section carries the row, the description and the verdicts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hack.bench.run import ASGI_FLOOR_NAME, HERE, MODEL, Result, contenders, render, verdicts

THROUGHPUT = "c=16 throughput >= 0.6x the raw ASGI floor (issue 14)"
LATENCY = "p50 at c=1 within 0.05 ms of the raw ASGI floor (issue 14)"


def rows(ours_rps: float, ours_p50: float) -> list[Result]:
    """A run's medians: the raw ASGI floor at 5,000 req/s and 0.300 ms, ours as given."""
    return [
        Result("raw session.run (in-process, no HTTP)", "raw", 0.04, 0.09, 24_000.0),
        Result(ASGI_FLOOR_NAME, "asgi", 0.300, 0.5, 5_000.0, 4.0, 60.0, 0.5, 190.0),
        Result("minimal FastAPI handler (floor)", "floor", 0.500, 0.9, 2_000.0, 16.0, 92.0, 0.9, 510.0),
        Result("modelserver (ours)", "ours", ours_p50, 0.8, ours_rps, 6.0, 98.0, 1.2, 270.0),
        # An ablation row is never taken for ours, however it compares.
        Result("ours, ablation: --batching off", "ablation", 0.301, 0.7, 4_999.0, 13.0, 97.0, 1.2, 400.0),
    ]


def targets(results: list[Result]) -> dict[str, tuple[bool | None, str]]:
    return {name: (ok, detail) for name, ok, detail in verdicts(results)}


def test_the_floor_is_started_with_uvloop_httptools_and_no_middleware(tmp_path: Path) -> None:
    args = argparse.Namespace(no_ablation=True, venvs=str(tmp_path / "no-venvs"))
    found = {c.role: c for c in contenders(args, tmp_path)}
    asgi = found["asgi"]
    assert asgi.name == ASGI_FLOOR_NAME
    command = " ".join(asgi.command)
    for flags in ("-m uvicorn raw_asgi_app:app", "--loop uvloop", "--http httptools", "--no-proxy-headers"):
        assert flags in command
    assert asgi.command[asgi.command.index("--app-dir") + 1] == str(HERE)
    assert (HERE / "raw_asgi_app.py").is_file()
    assert asgi.env == {"BENCH_MODEL": str(MODEL)}
    assert asgi.ready_path == found["ours"].ready_path, "time to ready is measured on the same URL"
    assert asgi.infer_path == found["ours"].infer_path
    assert {"floor", "ours", "tokens"} <= found.keys(), "the other contenders stay"


def test_ours_within_both_bounds_meets_the_targets() -> None:
    checks = targets(rows(ours_rps=3_100.0, ours_p50=0.340))
    assert checks[THROUGHPUT] == (True, "0.62x: 3,100 against 5,000 req/s")
    assert checks[LATENCY] == (True, "+0.040 ms: 0.340 against 0.300 ms")


def test_ours_just_beyond_either_bound_misses_it() -> None:
    checks = targets(rows(ours_rps=2_950.0, ours_p50=0.360))
    assert checks[THROUGHPUT] == (False, "0.59x: 2,950 against 5,000 req/s")
    assert checks[LATENCY] == (False, "+0.060 ms: 0.360 against 0.300 ms")


def test_ours_faster_than_the_floor_meets_both() -> None:
    checks = targets(rows(ours_rps=6_000.0, ours_p50=0.290))
    assert checks[THROUGHPUT][0] is True
    assert checks[LATENCY] == (True, "-0.010 ms: 0.290 against 0.300 ms")


def test_without_the_floor_row_the_targets_are_not_measured() -> None:
    """``--only modelserver`` (or a failed start of the floor) must not pass for a verdict."""
    results = [r for r in rows(ours_rps=3_100.0, ours_p50=0.340) if r.role != "asgi"]
    checks = targets(results)
    assert checks[THROUGHPUT] == (None, "not measured")
    assert checks[LATENCY] == (None, "not measured")
    failed = [*results, Result(ASGI_FLOOR_NAME, "asgi", note="failed: exited with 1 before ready")]
    assert targets(failed)[THROUGHPUT] == (None, "not measured")


def test_the_existing_targets_stay() -> None:
    checks = targets(rows(ours_rps=3_100.0, ours_p50=0.340))
    assert checks["c=16 throughput >= 0.9x the minimal-handler floor"] == (True, "1.55x")
    assert checks["p50 at c=1 within 0.3 ms of the floor"] == (True, "-0.160 ms")
    assert checks["c=16 throughput >= 1.5x kserve"] == (None, "not measured")


def test_the_section_shows_the_row_the_contender_and_the_verdicts() -> None:
    args = argparse.Namespace(
        warmup=2,
        duration=5,
        rounds=3,
        load_before="0.50",
        load_after="1.00",
        token_rounds=4,
        token_pairs=4,
        token_seconds=3,
        token_control=False,
    )
    section = render(rows(ours_rps=2_950.0, ours_p50=0.340), args)
    row = f"| {ASGI_FLOOR_NAME} | 0.300 | 0.500 | 5,000 | 4.00 | 190.0 | 60 | 0.50 |  |"
    assert row in section.splitlines()
    assert "`hack/bench/raw_asgi_app.py`, a bare `async def app(scope, receive, send)`" in section
    assert "--loop uvloop --http httptools" in section
    assert "Targets (issues 3, 9 and 14" in section
    assert f"- {THROUGHPUT}: **missed** (0.59x: 2,950 against 5,000 req/s)" in section
    assert f"- {LATENCY}: met (+0.040 ms: 0.340 against 0.300 ms)" in section
