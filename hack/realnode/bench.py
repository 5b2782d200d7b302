"""`make bench-real`: time-to-rollback and the observed traffic split on the real node.

Runs the real-node stories (the same Given/When/Then steps as tests/real_node) ``--rounds`` times:
a promotion (split per step vs the written weight) and a rollback per gate (accuracy, error rate),
and writes the section "## Real node" of docs/benchmarks.md with the image sizes and build times
that hack/images/build.sh recorded.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

from hack.benchdoc import write_section
from hack.realnode.kube import CACHE
from hack.realnode.story import Story
from hack.realnode.testbed import Testbed

SECTION = "## Real node"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def promote(s: Story) -> None:
    s.given_a_stable_model("baseline")
    s.when_the_user_rolls_out("better")
    s.then_it_is_promoted()
    s.then_the_split_follows_the_weights()


def rollback(model: str, reason: str) -> Callable[[Story], None]:
    def run(s: Story) -> None:
        s.given_a_stable_model("baseline")
        s.when_the_user_rolls_out(model)
        s.then_it_is_rolled_back(reason)
        s.then_the_split_follows_the_weights()

    return run


def image_rows() -> list[str]:
    """The latest size and build time of each image, from hack/images/build.sh's log."""
    path = CACHE / "images" / "build-times.tsv"
    latest: dict[str, tuple[str, str, str]] = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        at, image, size, seconds = line.split("\t")
        latest[image] = (size, seconds, at)
    return [f"| `{image}` | {size} | {seconds} | {at} |" for image, (size, seconds, at) in sorted(latest.items())]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    testbed = Testbed.connect()
    testbed.install()
    stories = {"promote": promote, "accuracy": rollback("worse", "Accuracy"),
               "errors": rollback("broken", "ErrorRate")}  # fmt: skip
    results: dict[str, list[dict]] = {name: [] for name in stories}
    failures: list[str] = []
    for round_ in range(args.rounds):
        for name, run in stories.items():
            with Story.open(testbed, f"bench-{name}", say) as story:
                try:
                    run(story)
                except (AssertionError, TimeoutError) as exc:
                    failures.append(f"round {round_ + 1} {name}: {str(exc)[:300]}")
                    say(f"FAILED: {exc}")
                results[name].append(story.figures)
    lines = [SECTION, "", f"Measured {time.strftime('%Y-%m-%d')} by `make bench-real` (`hack/realnode/bench.py`, "
             f"{args.rounds} rounds) on {platform.node() and 'this machine'}: 2 cores shared with other work, "
             f"Linux {platform.release()}. Every pod runs on the real node; traffic (40 req/s, labels included) "
             "goes through Traefik's NodePort; the analysis interval is 3 s, steps 20/50/100 % of 10 s.", "",
             "| image | size | build time (s) | built at |", "|---|---:|---:|---|", *image_rows(), "",
             "Time-to-rollback (first answer from the bad canary through Traefik -> HTTPRoute back at 100 % stable):",
             "", "| gate | runs | median (s) | values (s) |", "|---|---:|---:|---|"]  # fmt: skip
    for name in ("accuracy", "errors"):
        values = [r["time_to_rollback_s"] for r in results[name] if "time_to_rollback_s" in r]
        median = f"{statistics.median(values):.1f}" if values else "n/a"
        lines.append(f"| {name} | {len(values)} | {median} | {', '.join(map(str, values))} |")
    lines += ["", "Observed canary share per step vs the written weight (requests sent within 1.5 s of a weight "
              "change left out; z = (k - np) / sqrt(np(1-p)), |z| <= 3 is within binomial noise):", "",
              "| story | round | weight % | requests | canary answers | observed % | z |",
              "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for name, rounds in results.items():
        for i, figures in enumerate(rounds, 1):
            for weight, n, k, z in figures.get("split", []):
                lines.append(f"| {name} | {i} | {weight} | {n} | {k} | {100 * k / n:.1f} | {z:+.2f} |")
    lines += [
        "",
        "The error-rate story's share counts only answers that name their revision: a 500 names none, so "
        "about 23 % of the broken canary's answers drop out (expected share about 16 % at a written 20 %).",
    ]
    if failures:
        lines += ["", "Runs that failed:", "", *[f"- {f}" for f in failures]]
    write_section(SECTION, "\n".join(lines))
    say("docs/benchmarks.md: section '## Real node' written")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
