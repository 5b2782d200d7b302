"""`make bench-abtest`: how often an A/B test names the right winner, measured with the real engine.

Every experiment runs ``engine.decide`` and ``metrics.gates.run_analysis`` (whose experiment step
is ``metrics.experiment``) exactly as the operator calls them, in virtual time, against simulated
Prometheus counters (hack/decisions/sim.py: Poisson traffic split by the engine's weights, 15 s
scrapes, every request labelled). The configuration is an A/B test on accuracy (50/50 split, at
least 30 minutes, at most 12 hours, tie margin 1 point, significance 0.05, a 1-minute interval,
one error-rate guardrail), at 5 and 50 requests/s. Scenarios, the stable revision (A) always at
90 % accuracy:

* **equal**: B is exactly as good. Naming either one the winner is an error (bound: significance,
  split over the two directions); a tie or a timeout is right.
* **B +2 points** / **B -2 points**: the right answers are CandidateWon / StableWon.
* **B +0.5 points**: inside the tie margin; a tie, a timeout or B are all acceptable, A is wrong.

Reported per row: the share of each outcome and the median time to the decision. The table goes
to docs/benchmarks.md under "## A/B tests"; the last line summarises the 50 req/s rows.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))

from benchdoc import write_section  # noqa: E402
from decisions.rollout import Outcome, simulate  # noqa: E402
from decisions.sim import Behaviour  # noqa: E402
from modelrollout.api.types import ModelDeploymentSpec  # noqa: E402

SECTION = "## A/B tests"
RATES = (5.0, 50.0)
SCENARIOS = {"equal": 0.90, "B +0.5 points": 0.905, "B +2 points": 0.92, "B -2 points": 0.88}
OUTCOMES = ("CandidateWon", "StableWon", "Tie", "Timeout", "other")
REASONS = {"ExperimentLost": "StableWon", "ExperimentTie": "Tie", "ExperimentTimeout": "Timeout"}


AB_TEST = {"split": 50, "minDuration": "30m", "maxDuration": "12h", "minSamples": 1000, "tieMargin": 0.01,
           "significance": 0.05}  # fmt: skip


def config() -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "model": {"name": "fraud", "uri": "https://models.example.com/fraud/better.onnx"},
            "traffic": {"gatewayAPI": {"parentRefs": [{"name": "gw"}]}},
            "strategy": {"abTest": AB_TEST},
            "analysis": {
                "interval": "1m",
                "prometheus": {"address": "http://prometheus.invalid:9090"},
                "metrics": [{"name": "error-rate", "max": 0.05}],
            },
            "bake": {"duration": "0s"},
        }
    )


@dataclass(frozen=True)
class Job:
    rate: float
    scenario: str
    seed: int


def _run(job: Job) -> tuple[Job, Outcome]:
    stable = Behaviour(accuracy=0.90)
    candidate = Behaviour(accuracy=SCENARIOS[job.scenario])
    return job, simulate(config(), job.rate, stable, candidate, job.seed, horizon=13 * 3600.0)


def outcome_of(o: Outcome) -> str:
    if o.result == "promoted":
        return "CandidateWon"
    return REASONS.get(o.reason, "other")


def render(results: dict[tuple[float, str], list[Outcome]], seconds: float) -> str:
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench-abtest` (`hack/bench_abtest.py`) in {seconds:.0f} s on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}: an A/B test on accuracy (50/50, at least "
        "30 min, at most 12 h, tie margin 1 point, minSamples 1000 per side, significance 0.05, checked every "
        "minute) run by the real engine and decision on simulated counters, every request labelled, A at 90 %. "
        "Right answers: equal, a tie or a timeout; B +0.5 points (inside the margin), anything but StableWon; "
        "B +2, CandidateWon; B -2, StableWon. `decided after` is the median time from the split to the end.",
        "",
        "| req/s | scenario | n | CandidateWon | StableWon | Tie | Timeout | other | decided after (min) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (rate, scenario), outcomes in results.items():
        n = len(outcomes)
        shares = [sum(outcome_of(o) == k for o in outcomes) / n for k in OUTCOMES]
        minutes = statistics.median(o.seconds for o in outcomes) / 60
        cells = " | ".join(f"{100 * p:.1f} %" for p in shares)
        lines.append(f"| {rate:g} | {scenario} | {n} | {cells} | {minutes:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=100, help="experiments per row")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    args = parser.parse_args()
    started = time.monotonic()
    jobs = [Job(rate, scenario, seed) for rate in RATES for scenario in SCENARIOS for seed in range(args.experiments)]
    results: dict[tuple[float, str], list[Outcome]] = {(r, s): [] for r in RATES for s in SCENARIOS}
    with multiprocessing.Pool(args.workers) as pool:
        for job, outcome in pool.imap_unordered(_run, jobs, chunksize=2):
            results[(job.rate, job.scenario)].append(outcome)
    text = render(results, time.monotonic() - started)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    equal = results[(50.0, "equal")]
    wrong = sum(outcome_of(o) in ("CandidateWon", "StableWon") for o in equal) / len(equal)
    better = results[(50.0, "B +2 points")]
    power = sum(outcome_of(o) == "CandidateWon" for o in better) / len(better)
    print(f"abtest_false_winner={100 * wrong:.1f} abtest_power_2pt={100 * power:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
