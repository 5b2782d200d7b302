"""`make bench-drift`: false alarms and time to detect of the drift gate in the continuous watch.

The stable revision of examples/fraud-gateway-api.yaml, watched (``analysis.continuous``, window
1h, a check every 30 s) by one drift gate at its defaults (``{"name": "drift", "maxPSI": 0.2}``,
failureLimit 1, significance 0.05), through the product's own ``metrics.gates.run_analysis`` and
``engine.decide``, against simulated Prometheus counters (hack/drift/sim.py). Traffic is Poisson at
0.5, 5 and 50 requests/s; every request is one fresh row of examples/models/dataset.py's generator
(the training distribution, other seeds), binned as the model server bins it, with the prediction
score of examples/models/baseline.onnx (the model metadata.json's score reference was computed
from) run with onnxruntime (hack/drift/traffic.py).

* Healthy: whole simulated days per traffic level. Reported: checks, checks still waiting for
  values (InsufficientSamples), drifted checks, Drifted episodes (the condition turning True),
  alarms per day with a one-sided 95 % upper bound, and, for the record, the checks PSI alone
  (> maxPSI, no sample guard, no test) or the chi-square test alone (p < alpha past the guard)
  would have flagged. One extra row serves examples/models/better.onnx (the example's model)
  against the same metadata.json.
* Detection: a shift of the inputs at a random moment of the watch window (amount x3; half of
  the app's requests via the web; hour +6h, which keeps hour's uniform marginal and is a control):
  the time from the shift to Drifted=True, and which features the Drifted condition names.

The tables go to docs/benchmarks.md under "## Drift (make bench-drift)"; the last line gives the
false alarms per day and the median time to detect amount x3, at 5 req/s.
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

import numpy as np
import yaml
from scipy import stats

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "hack"))
sys.path.insert(0, str(REPO))

from benchdoc import write_section  # noqa: E402
from drift import watch  # noqa: E402
from drift.sim import SimPrometheus, counters  # noqa: E402
from drift.traffic import SHIFTS, Binner, Scorer, columns, rows  # noqa: E402
from modelrollout.api.types import SCORE_FEATURE, ModelDeploymentSpec  # noqa: E402
from modelrollout.metrics import drift  # noqa: E402
from modelrollout.metrics.drift_gate import min_values  # noqa: E402
from modelrollout.metrics.gates import alpha_per_test  # noqa: E402

EXAMPLE = REPO / "examples/fraud-gateway-api.yaml"
SECTION = "## Drift (make bench-drift)"
RATES = (0.5, 5.0, 50.0)
HEADLINE_RATE = 5.0
HEADLINE_SHIFT = "amount x3"
DAY = 86_400.0
WINDOW = 3_600.0


def spec() -> ModelDeploymentSpec:
    return watch.spec_for(yaml.safe_load(EXAMPLE.read_text())["spec"])


@dataclass(frozen=True)
class Job:
    kind: str  # "healthy" or "detect"
    rate: float
    seed: int
    model: str = "baseline"
    shift: str | None = None
    horizon: float = DAY  # healthy: the run; detect: the longest wait after the shift


@dataclass(frozen=True)
class Done:
    job: Job
    watch: watch.Watch
    shift_at: float | None


_CACHE: dict[str, object] = {}


def _binner(model: str) -> Binner:
    key = f"binner:{model}"
    if key not in _CACHE:
        _CACHE[key] = Binner(columns(), Scorer(model))
    return _CACHE[key]  # type: ignore[return-value]


def _spec() -> ModelDeploymentSpec:
    if "spec" not in _CACHE:
        _CACHE["spec"] = spec()
    return _CACHE["spec"]  # type: ignore[return-value]


def _run(job: Job) -> Done:
    binner, the_spec = _binner(job.model), _spec()
    rng = np.random.default_rng(job.seed)
    shift_at = None
    seconds = job.horizon
    if job.kind == "detect":
        shift_at = 15.0 * int(rng.integers(0, int(WINDOW / 15)))  # anywhere in the first window, on a scrape
        seconds = shift_at + job.horizon
    shift = SHIFTS[job.shift] if job.shift else None
    cumulative = counters(binner, rng, job.rate, seconds, seed=job.seed, shift=shift, shift_at=shift_at)
    prometheus = SimPrometheus(binner, cumulative, watch.NAMESPACE, watch.STABLE)
    return Done(job, watch.run(the_spec, prometheus, seconds, stop_on_drift=job.kind == "detect"), shift_at)


def population_psi(n: int = 400_000) -> dict[str, dict[str, float]]:
    """PSI of every feature against its reference on ``n`` rows, healthy and per shift (no noise to speak of)."""
    binner = _binner("baseline")
    out = {}
    for name, shift in [("healthy", None), *SHIFTS.items()]:
        slots = binner.slots(rows(n, seed=999_999, shift=shift))
        flat = np.bincount(slots.ravel(), minlength=binner.width)
        out[name] = {
            c.name: drift.psi(drift.ReferenceBins(tuple(range(c.bins - 1)), c.fractions).probabilities(), flat[lo:hi])
            for c, lo, hi in zip(binner.columns, binner.offsets[:-1], binner.offsets[1:], strict=True)
        }
    return out


# --------------------------------------------------------------------------------------- report


def poisson_upper(events: int, exposure: float) -> float:
    """One-sided 95 % upper bound of a Poisson rate (3.0 / exposure for no events)."""
    return float(stats.chi2.ppf(0.95, 2 * (events + 1)) / 2 / exposure)


def share_upper(hits: int, n: int) -> float:
    """One-sided 95 % Clopper-Pearson upper bound of a share."""
    return 1.0 if hits >= n else float(stats.beta.ppf(0.95, hits + 1, n - hits))


@dataclass
class Healthy:
    model: str
    rate: float
    runs: list[watch.Watch]

    @property
    def days(self) -> float:
        return sum(w.seconds for w in self.runs) / DAY

    def total(self, attr: str) -> int:
        return sum(getattr(w, attr) for w in self.runs)

    def per_feature(self, attr: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for w in self.runs:
            for k, v in getattr(w, attr).items():
                out[k] = out.get(k, 0) + v
        return out

    def alarm_days(self) -> int:
        return sum(w.episodes > 0 for w in self.runs)

    def largest_psi(self) -> tuple[str, float]:
        merged: dict[str, float] = {}
        for w in self.runs:
            for k, v in w.max_psi.items():
                merged[k] = max(merged.get(k, 0.0), v)
        return max(merged.items(), key=lambda kv: kv[1]) if merged else ("-", 0.0)


def _short(name: str) -> str:
    return "score" if name == SCORE_FEATURE else name


def _top(counts: dict[str, int], limit: int = 3) -> str:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return ", ".join(f"{_short(k)} {v}" for k, v in ranked)


def _pct(part: int, whole: int) -> str:
    return f"{part} ({100 * part / whole:.1f} %)" if whole else "-"


def healthy_table(rows_: list[Healthy]) -> list[str]:
    lines = [
        "| model | req/s | days | checks | InsufficientSamples | drifted checks | Drifted episodes "
        "| alarms/day (95 % upper) | days with an alarm (95 % upper) | largest judged PSI "
        "| flagged by PSI alone | flagged by chi-square alone |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in rows_:
        checks, episodes, days = r.total("checks"), r.total("episodes"), r.days
        feature, psi = r.largest_psi()
        alarm_days, n_days = r.alarm_days(), len(r.runs)
        psi_alone, test_alone = r.total("psi_alone"), r.total("test_alone")
        psi_where = f" ({_top(r.per_feature('psi_alone_features'))})" if psi_alone else ""
        test_where = f" ({_top(r.per_feature('test_alone_features'))})" if test_alone else ""
        drifted = r.total("drifted_checks")
        drifted_where = f" ({_top(r.per_feature('drifted_features'))})" if drifted else ""
        lines.append(
            f"| {r.model}.onnx | {r.rate:g} | {days:g} | {checks} | {_pct(r.total('waiting_checks'), checks)} "
            f"| {drifted}{drifted_where} | {episodes} | {episodes / days:.2f} ({poisson_upper(episodes, days):.2f}) "
            f"| {alarm_days}/{n_days} ({100 * share_upper(alarm_days, n_days):.0f} %) | {psi:.4f} ({_short(feature)}) "
            f"| {_pct(psi_alone, checks)}{psi_where} | {_pct(test_alone, checks)}{test_where} |"
        )
    return lines


@dataclass
class Detection:
    shift: str
    rate: float
    done: list[Done]

    def times(self) -> list[float]:
        return [d.watch.first_drifted - d.shift_at for d in self.done if d.watch.first_drifted is not None]  # type: ignore[operator]

    def named(self) -> tuple[int, int, int]:
        """Trials whose Drifted condition named the shifted feature, another input feature, the score."""
        feature = SHIFTS[self.shift].feature
        hits = [d.watch.first_features for d in self.done if d.watch.first_drifted is not None]
        return (
            sum(feature in f for f in hits),
            sum(any(x not in (feature, SCORE_FEATURE) for x in f) for f in hits),
            sum(SCORE_FEATURE in f for f in hits),
        )

    def same_window(self) -> int:
        """Trials detected in the watch window the shift started in (it starts at 0 and lasts WINDOW)."""
        return sum(d.watch.first_drifted is not None and d.watch.first_drifted <= WINDOW for d in self.done)

    def median(self) -> float | None:
        times = self.times()
        return statistics.median(times) if times else None


def detection_table(rows_: list[Detection], psi: dict[str, dict[str, float]], horizon: float) -> list[str]:
    lines = [
        "| shift | population PSI (feature, score) | req/s | trials | Drifted within "
        f"{horizon / 3600:g} h | in the shift's window | time to Drifted, median / max (s) | names the feature "
        "| names another input | names the score |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows_:
        times = r.times()
        feature = SHIFTS[r.shift].feature
        pop = f"{psi[r.shift][feature]:.3f}, {psi[r.shift][SCORE_FEATURE]:.3f}"
        timing = f"{statistics.median(times):.0f} / {max(times):.0f}" if times else "-"
        own, other, score = r.named()
        lines.append(
            f"| {r.shift} | {pop} | {r.rate:g} | {len(r.done)} | {len(times)} | {r.same_window()} | {timing} | {own} "
            f"| {other} | {score} |"
        )
    return lines


def render(
    healthy: list[Healthy],
    detections: list[Detection],
    psi: dict[str, dict[str, float]],
    horizon: float,
    seconds: float,
    command: str = "",
) -> str:
    the_spec = spec()
    alpha = alpha_per_test(the_spec)
    cols = columns()
    need = ", ".join(
        f"{_short(c.name)} {min_values(c.bins, 0.2, the_spec.analysis.metrics[0].minSamples)}" for c in cols
    )
    worst = max(psi["healthy"].items(), key=lambda kv: kv[1])
    lines = [
        SECTION,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by {command or '`make bench-drift` (`hack/bench_drift.py`)'} in "
        f"{seconds:.0f} s on "
        f"{os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        "The stable revision of `examples/fraud-gateway-api.yaml` in the continuous watch (window 1h, a check "
        "every 30 s) with one drift gate at its defaults, `{name: drift, maxPSI: 0.2}`, failureLimit 1, "
        f"significance 0.05 (the gate's alpha {alpha:g}: the example has a bake). Every check is the product's own "
        "`metrics.gates.run_analysis` and `engine.decide` against simulated Prometheus counters "
        "(`hack/drift/sim.py`: 15 s scrapes, `increase` without extrapolation). Traffic: Poisson arrivals, every "
        "request one fresh row of `examples/models/dataset.py`'s generator (the training distribution, other seeds "
        "than the reference's), binned as the model server bins FP32 inputs, with the prediction score of the "
        "served ONNX model (onnxruntime). A feature is judged once the window holds "
        f"`max(minSamples, 20 (k - 1) / maxPSI)` values ({need}). On 400,000 healthy rows the largest "
        f"PSI against `metadata.json` is {worst[1]:.4f} ({_short(worst[0])}): what the rounded fractions and the "
        "finite training sample leave (the reference is binned in float32, as the server bins).",
        "",
        "Healthy traffic, whole simulated days; bounds are one-sided 95 % (3/N for none). `flagged by PSI alone`: "
        "checks where some feature with any value in the window had PSI > 0.2 (no sample guard, no test); "
        "`flagged by chi-square alone`: checks where a judged feature's test had p < alpha (no PSI bound).",
        "",
        *healthy_table(healthy),
        "",
        "Detection: the shift starts at a random moment of a watch window (on a scrape), and the time is counted "
        "from it to Drifted=True. `names ...` count the trials whose Drifted condition named the shifted feature, "
        "another input feature, or the prediction score (which moves with its inputs).",
        "",
        *detection_table(detections, psi, horizon),
        "",
        *findings(healthy, the_spec),
    ]
    return "\n".join(lines) + "\n"


def findings(healthy: list[Healthy], the_spec: ModelDeploymentSpec) -> list[str]:
    """What the healthy rows say beyond the counts, as bullet points."""
    minimum = the_spec.analysis.metrics[0].minSamples
    notes = []
    for r in healthy:
        if r.model != "baseline":
            continue
        mean = r.rate * WINDOW
        for c in columns():
            need = min_values(c.bins, 0.2, minimum)
            if need <= mean:
                continue
            reached = float(stats.poisson.sf(need - 1, mean))
            notes.append(
                f"- At {r.rate:g} req/s a 1 h window holds {mean:.0f} values on average, fewer than the {need} "
                f"{_short(c.name)} needs: it is judged only at the last check of the {100 * reached:.1f} % of windows "
                "that happen to get that many. Practically every check waits (InsufficientSamples), the gate "
                f"(almost) never passes, and a drift of {_short(c.name)} alone goes unseen: give such traffic a longer "
                "window, or fewer bins. (A Drifted condition set by another feature clears once that feature is "
                "judged clean again, whatever still waits.)"
            )
    if healthy:
        busiest = max((r for r in healthy if r.model == "baseline"), key=lambda r: r.rate)
        checks = busiest.total("checks")
        notes.append(
            f"- At {busiest.rate:g} req/s the chi-square test alone rejects the reference in "
            f"{100 * busiest.total('test_alone') / checks:.0f} % of healthy checks: with tens of thousands of values "
            "it sees the rounding of metadata.json's fractions and the sampling error of the 20,000-row training "
            "sample they come from. PSI (largest judged value in the table) is what keeps those checks from "
            "drifting."
        )
    for r in healthy:
        if r.model != "baseline" and r.total("drifted_checks"):
            feature, psi = r.largest_psi()
            notes.append(
                f"- Served by {r.model}.onnx, healthy inputs drift on {_short(feature)} (PSI up to {psi:.2f}) in "
                f"{100 * r.total('drifted_checks') / r.total('checks'):.0f} % of checks: metadata.json is shared "
                "by every example model, and its prediction_score_reference_bins are baseline.onnx's scores."
            )
    return notes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=12, help="healthy days per traffic level (each ~5 s of CPU)")
    parser.add_argument("--trials", type=int, default=8, help="detection trials per shift and traffic level")
    parser.add_argument("--horizon", type=float, default=3.0, help="hours to wait for Drifted after a shift")
    parser.add_argument("--other-model-days", type=int, default=1, help="healthy days served by better.onnx")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-write", action="store_true", help="print the tables only")
    args = parser.parse_args()
    started = time.monotonic()
    horizon = args.horizon * 3600.0
    jobs = [Job("healthy", rate, 1 + 1_000 * i + d) for i, rate in enumerate(args.rates) for d in range(args.days)]
    middle = HEADLINE_RATE if HEADLINE_RATE in args.rates else args.rates[len(args.rates) // 2]
    jobs += [Job("healthy", middle, 500_001 + d, model="better") for d in range(args.other_model_days)]
    jobs += [
        Job("detect", rate, 200_001 + 10_000 * s + 1_000 * i + t, shift=name, horizon=horizon)
        for s, name in enumerate(SHIFTS)
        for i, rate in enumerate(args.rates)
        for t in range(args.trials)
    ]
    jobs.sort(key=lambda j: (j.kind != "healthy", -j.rate))  # the long days first, so the pool ends evenly
    done: list[Done] = []
    with multiprocessing.Pool(args.workers) as pool:
        for i, result in enumerate(pool.imap_unordered(_run, jobs), 1):
            done.append(result)
            if i % 10 == 0 or i == len(jobs):
                print(f"  {i}/{len(jobs)} runs ({time.monotonic() - started:.0f} s)", flush=True)
    psi = population_psi()
    healthy = [
        Healthy(
            model, rate, [d.watch for d in done if (d.job.kind, d.job.model, d.job.rate) == ("healthy", model, rate)]
        )
        for model, rate in [
            *(("baseline", r) for r in args.rates),
            *([("better", middle)] if args.other_model_days else []),
        ]
    ]
    detections = [
        Detection(name, rate, [d for d in done if (d.job.kind, d.job.shift, d.job.rate) == ("detect", name, rate)])
        for name in SHIFTS
        for rate in args.rates
    ]
    flags = " ".join(sys.argv[1:]).replace("--no-write", "").strip()
    command = f"`.venv/bin/python hack/bench_drift.py {flags}`" if flags else ""
    text = render(healthy, detections, psi, horizon, time.monotonic() - started, command)
    print(text)
    if not args.no_write:
        write_section(SECTION, text)
    head = next(h for h in healthy if (h.model, h.rate) == ("baseline", middle))
    detect = next(d for d in detections if (d.shift, d.rate) == (HEADLINE_SHIFT, middle)).median()
    print(
        f"drift_false_alarms_per_day={head.total('episodes') / head.days:.3f} "
        f"drift_detect_median_s={'nan' if detect is None else f'{detect:.0f}'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
