"""The CLI's pure parts: rendering, action checks, the annotation patch, error translation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from modelrollout import cli
from modelrollout.api.types import ANNOTATION_ABORT, ANNOTATION_PROMOTE, ANNOTATION_RETRY

TESTDATA = Path(__file__).parent / "testdata" / "argocd"
NOW = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((TESTDATA / name).read_text())


def deployment(revision: str, replicas: int, ready: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"fraud-{revision}", "labels": {cli.LABEL_REVISION: revision}},
        "spec": {"replicas": replicas},
        "status": {"readyReplicas": ready},
    }


def test_status_view_shows_step_weights_gates_and_readiness() -> None:
    obj = load("progressing.yaml")
    obj["status"]["stepStartedAt"] = "2026-01-01T12:04:00Z"
    text = cli.render_status(obj, NOW, [deployment("5d8f2c1a", 2, 2), deployment("a1c2e3f4", 1, 0)])
    assert "Phase:          Progressing\n" in text
    assert "canary 5% → 10% → [25%] → 50% → 100%, 60s each" in text
    assert "Step:           3/5 (for 1m)" in text
    assert "stable 5d8f2c1a 75% (2/2 ready)   canary a1c2e3f4 25% (0/1 ready)" in text
    gate = next(line for line in text.splitlines() if line.strip().startswith("error-rate"))
    assert gate.split()[:5] == ["error-rate", "Pass", "0.002", "0.003", "max"]
    assert "Analysis:       Pass 5m ago on revision a1c2e3f4  (failed 0/1, blind 0/5)" in text
    assert "\x1b[" not in text  # plain text unless asked for colour


@pytest.mark.parametrize(("canary_ready", "state"), [(0, "off: canary a1c2e3f4 has no ready pod"),
                                                     (1, "on: to canary a1c2e3f4")])  # fmt: skip
def test_status_view_shows_the_canary_routes_and_whether_they_are_on(canary_ready: int, state: str) -> None:
    obj = load("progressing.yaml")
    obj["spec"]["traffic"]["canaryRoutes"] = [
        {"header": {"name": "x-canary", "value": "always"}},
        {"header": {"name": "x-tester", "value": "^a$", "match": "RegularExpression"}},
        {"cookie": {"name": "canary"}},
    ]
    text = cli.render_status(obj, NOW, [deployment("5d8f2c1a", 2, 2), deployment("a1c2e3f4", 1, canary_ready)])
    assert f"Canary routes:  header x-canary=always, header x-tester~^a$, cookie canary=always  ({state})\n" in text
    assert "Canary routes" not in cli.render_status(load("progressing.yaml"), NOW, [])


def test_status_view_says_what_a_waiting_step_waits_for_and_shows_the_evidence() -> None:
    obj = load("progressing.yaml")
    waiting = (
        "step 3/5 at 25% waiting for evidence (4m of maxStepDuration 2h): accuracy Undecided: "
        "drop vs stable 0.02: undecided (e=3.1 met, 0.2 breached, both < 1/alpha=140; ~2.1x the samples to show it met)"
    )
    obj["status"]["message"] = waiting
    obj["status"]["lastAnalysis"] = {
        "time": "2026-01-01T12:04:30Z",
        "revision": "a1c2e3f4",
        "baselineRevision": "5d8f2c1a",
        "since": "2026-01-01T11:55:00Z",
        "verdict": "Inconclusive",
        "metrics": [
            {"name": "accuracy", "value": 0.9, "stableValue": 0.899, "events": 2700, "samples": 3000,
             "stableEvents": 8091, "stableSamples": 9000, "threshold": "drop vs stable <= 0.02",
             "verdict": "Inconclusive", "reason": "Undecided", "message": "..."},
        ],
    }  # fmt: skip
    text = cli.render_status(obj, NOW)
    assert f"Message:        {waiting}\n" in text
    assert "Evidence:       counts of the last 10m vs 5d8f2c1a" in text
    gate = next(line for line in text.splitlines() if line.strip().startswith("accuracy"))
    assert gate.split()[:5] == ["accuracy", "Undecided", "0.9", "(2700/3000)", "0.899"]


def test_status_view_flags_unobserved_generation_and_pause() -> None:
    obj = load("generation-behind.yaml")
    obj["spec"]["paused"] = True
    text = cli.render_status(obj, NOW)
    assert "(paused by spec)" in text
    assert "operator has not observed generation 3 yet" in text


def test_status_view_of_rollback_shows_degraded_message_and_history() -> None:
    obj = load("rolled-back.yaml")
    obj["status"]["history"] = [
        {"revision": "5d8f2c1a", "modelURI": "u1", "phase": "Succeeded", "startedAt": "2026-01-01T10:00:00Z",
         "finishedAt": "2026-01-01T10:10:00Z"},
        {"revision": "a1c2e3f4", "modelURI": "u2", "phase": "RolledBack", "startedAt": "2026-01-01T12:00:00Z",
         "finishedAt": "2026-01-01T12:03:30Z", "reason": "AnalysisFailed"},
    ]  # fmt: skip
    text = cli.render_status(obj, NOW, style=cli.Style(color=True))
    assert "Degraded:       GateFailedErrorRate: error-rate 0.21 > max 0.01" in text
    assert "\x1b[31mRolledBack\x1b[0m" in text
    assert "Failed revs:    a1c2e3f4" in text
    assert "Scaling down" not in text
    obj["status"]["retiring"] = [{"revision": "a1c2e3f4", "scaleDownAt": (NOW + timedelta(seconds=12)).isoformat()}]
    text = cli.render_status(obj, NOW, style=cli.Style(color=False))
    assert "Scaling down:   a1c2e3f4 in 12s  (out of traffic; pods kept for scaleDownDelay)" in text
    history = text.split("History:\n", 1)[1].splitlines()
    assert history[1].split()[:2] == ["a1c2e3f4", "RolledBack"]  # newest first
    assert "3m30s" in history[1] and "AnalysisFailed" in history[1]
    assert history[2].split()[:2] == ["5d8f2c1a", "Succeeded"]


def test_baking_view_shows_the_warm_previous_revision() -> None:
    obj = load("baking.yaml")
    obj["status"]["bakeStartedAt"] = "2026-01-01T12:03:00Z"
    text = cli.render_status(obj, NOW)
    assert "stable a1c2e3f4 100%   previous (warm) 5d8f2c1a 0%" in text
    assert "Bake:           for 2m of 5m" in text


def test_history_of_running_revision_counts_until_now() -> None:
    obj = {"status": {"history": [{"revision": "r1", "phase": "Progressing", "startedAt": "2026-01-01T12:00:00Z"}]}}
    text = cli.render_history(obj, NOW)
    assert "5m (running)" in text
    assert cli.render_history({"status": {}}, NOW) == "No revisions recorded yet.\n"


def test_list_renders_namespaces_steps_and_pause() -> None:
    a = load("progressing.yaml")
    b = load("paused-spec.yaml")
    b["metadata"].update(name="churn", namespace="ab")
    for o in (a, b):
        o["metadata"]["creationTimestamp"] = "2026-01-01T11:00:00Z"
    text = cli.render_list([a, b], NOW, all_namespaces=True)
    lines = text.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "AGE"]
    assert lines[1].split()[:2] == ["ab", "churn"]  # sorted by namespace, then name
    assert "Progressing (paused)" in lines[1]
    assert lines[2].split() == ["ml", "fraud", "Progressing", "5d8f2c1a", "a1c2e3f4", "25%", "3/5", "1h5m"]
    assert cli.render_list([], NOW, all_namespaces=False) == ""


@pytest.mark.parametrize(
    ("action", "fixture", "allowed"),
    [
        ("promote", "progressing.yaml", True),
        ("promote", "baking.yaml", True),
        ("promote", "succeeded.yaml", False),
        ("abort", "progressing.yaml", True),
        ("abort", "paused-spec.yaml", True),
        ("abort", "paused-phase.yaml", False),
        ("abort", "succeeded.yaml", False),
        ("retry", "rolled-back.yaml", True),
        ("retry", "failed.yaml", True),
        ("retry", "progressing.yaml", False),
    ],
)
def test_actions_are_refused_when_moot(action: str, fixture: str, allowed: bool) -> None:
    obj = load(fixture)
    if allowed:
        cli.check_action(action, obj)
    else:
        with pytest.raises(cli.CLIError, match=f"nothing to {action}"):
            cli.check_action(action, obj)


def test_annotation_patch_touches_only_one_annotation_and_is_conditional() -> None:
    t = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
    for action, key in (("promote", ANNOTATION_PROMOTE), ("abort", ANNOTATION_ABORT), ("retry", ANNOTATION_RETRY)):
        body = cli.annotation_patch(action, t, "42")
        assert body == {"metadata": {"annotations": {key: "2026-01-01T12:00:00.123456Z"}, "resourceVersion": "42"}}
        assert "spec" not in body and "status" not in body


class FakeApiError(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status, self.body, self.reason = status, json.dumps(body), "reason"


def test_api_errors_are_translated() -> None:
    missing = FakeApiError(404, {"message": "not found", "details": {"name": "fraud", "kind": "modeldeployments"}})
    err = cli.translate_api_error(missing, "ml", "fraud")
    assert (err.code, str(err)) == (cli.EXIT_NOT_FOUND, 'ModelDeployment "fraud" not found in namespace "ml"')

    no_crd = FakeApiError(404, {"message": "the server could not find the requested resource", "details": {}})
    err = cli.translate_api_error(no_crd, "ml", "fraud")
    assert err.code == cli.EXIT_NOT_FOUND and "not installed" in str(err)

    forbidden = FakeApiError(
        403, {"message": 'modeldeployments.modelrollout.io "fraud" is forbidden: User "bob" cannot patch resource'}
    )
    err = cli.translate_api_error(forbidden, "ml", "fraud")
    assert err.code == cli.EXIT_FORBIDDEN and str(err).startswith("permission denied: ") and "bob" in str(err)
    assert cli.translate_api_error(FakeApiError(401, {}), "ml").code == cli.EXIT_FORBIDDEN


@pytest.mark.parametrize(
    ("phase", "observed", "degraded", "expected"),
    [
        ("Succeeded", 3, "False", "ok"),
        ("Succeeded", 2, "False", None),  # the operator has not seen the new spec yet
        ("RolledBack", 3, "True", "bad"),
        ("Failed", 3, "False", "bad"),
        ("Progressing", 3, "True", None),  # degraded mid-rollout (e.g. InvalidSpec while active) is not final
        ("Baking", 3, "False", None),
        (None, None, None, None),
    ],
)
def test_done_state(phase: str | None, observed: int | None, degraded: str | None, expected: str | None) -> None:
    status: dict[str, Any] = {"phase": phase, "observedGeneration": observed}
    if degraded:
        status["conditions"] = [{"type": "Degraded", "status": degraded}]
    assert cli.done_state({"metadata": {"generation": 3}, "status": status}) == expected


def test_no_cluster_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(SystemExit) as exc:
        cli.main(["list"])
    assert exc.value.code == cli.EXIT_NO_CLUSTER
    assert "no cluster configured" in capsys.readouterr().err


def test_unreachable_server_is_a_clear_error(tmp_path: Path, capsys: Any) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "x"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
                "current-context": "x",
            }
        )
    )
    with pytest.raises(SystemExit) as exc:
        cli.main(["--kubeconfig", str(kubeconfig), "--request-timeout", "2", "status", "fraud"])
    assert exc.value.code == cli.EXIT_NO_CLUSTER
    assert "cannot reach the Kubernetes API server at https://127.0.0.1:1" in capsys.readouterr().err


def test_human_duration() -> None:
    assert [cli.human_duration(s) for s in (0, 59, 60, 61, 3600, 3661, 86400, 90000)] == [
        "0s", "59s", "1m", "1m1s", "1h", "1h1m", "1d", "1d1h",
    ]  # fmt: skip
    assert [cli.format_number(v) for v in (None, 0, 0.00123, 0.5, 2.5, 12.345, 245.3)] == [
        "-", "0", "0.00123", "0.5", "2.5", "12.35", "245.3",
    ]  # fmt: skip


def parse(*argv: str) -> Any:
    parser = cli._parser()
    return parser.parse_args(cli.hoist_command(list(argv), parser))


@pytest.mark.parametrize(
    "argv",
    [
        ["-n", "ml", "status", "fraud"],
        ["status", "fraud", "-n", "ml"],
        ["status", "-n", "ml", "fraud"],
        ["status", "fraud", "--namespace", "ml"],
        ["--namespace=ml", "status", "fraud"],
        ["-nml", "status", "fraud"],
        ["--names", "ml", "status", "fraud"],  # argparse's abbreviations still work
        ["-n", "other", "status", "fraud", "-n", "ml"],  # the last one wins, as in kubectl
    ],
)
def test_global_flags_go_before_or_after_the_command_and_its_name(argv: list[str]) -> None:
    args = parse(*argv)
    assert (args.command, args.name, args.namespace) == ("status", "fraud", "ml")


def test_every_flag_works_in_any_position() -> None:
    before = parse("--kubeconfig", "/k", "--context", "c", "-n", "ml", "--request-timeout", "3",
                   "-w", "--until-done", "--timeout", "9", "status", "fraud")  # fmt: skip
    after = parse("status", "fraud", "--kubeconfig", "/k", "--context", "c", "-n", "ml", "--request-timeout", "3",
                  "-w", "--until-done", "--timeout", "9")  # fmt: skip
    mixed = parse("--context=c", "-w", "status", "--kubeconfig=/k", "fraud", "--timeout=9", "--until-done",
                  "-n", "ml", "--request-timeout", "3")  # fmt: skip
    for args in (before, after, mixed):
        assert vars(args) == {
            "command": "status", "name": "fraud", "kubeconfig": "/k", "context": "c", "namespace": "ml",
            "request_timeout": 3.0, "watch": True, "until_done": True, "timeout": 9.0, "output": "text",
        }  # fmt: skip
    assert parse("-A", "list").all_namespaces and parse("list", "-A").all_namespaces
    assert parse("-o", "json", "status", "fraud").output == "json"
    assert parse("abort", "fraud", "--force", "-n", "ml").force


def test_defaults_and_option_values_that_look_like_commands() -> None:
    args = parse("status", "fraud")
    assert (args.namespace, args.kubeconfig, args.context, args.request_timeout) == (None, None, None, 15.0)
    odd = parse("-n", "status", "--context", "list", "status", "fraud")  # a namespace named "status"
    assert (odd.command, odd.namespace, odd.context, odd.name) == ("status", "status", "list", "fraud")
    assert parse("history", "--", "-n").name == "-n", "nothing after -- is a flag"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["status", "fraud", "-A"], "unrecognized arguments: -A"),  # -A belongs to list only
        (["-A", "status", "fraud"], "unrecognized arguments: -A"),
        (["status", "fraud", "-n"], "expected one argument"),
        (["-n", "ml"], "required: COMMAND"),
        (["fraud", "status"], "invalid choice: 'fraud'"),
    ],
)
def test_misplaced_flags_are_usage_errors(argv: list[str], message: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_status_view_of_a_blue_green_preview() -> None:
    obj = load("progressing.yaml")
    obj["spec"]["strategy"] = {"blueGreen": {"previewDuration": "5m", "scaleDownDelay": "15m", "autoPromote": False}}
    obj["status"]["currentStep"], obj["status"]["canaryWeight"] = 0, 0
    obj["status"]["stepStartedAt"] = "2026-01-01T12:04:00Z"
    text = cli.render_status(obj, NOW, [deployment("5d8f2c1a", 2, 2), deployment("a1c2e3f4", 2, 2)])
    assert ("Strategy:       blueGreen: preview at least 5m, then one switch; previous kept 15m; "
            "switch by `kubectl modelrollout promote`\n") in text  # fmt: skip
    assert "Step:           preview (for 1m)\n" in text
    assert "stable 5d8f2c1a 100% (2/2 ready)   preview a1c2e3f4 0% (2/2 ready)" in text


def test_status_view_names_drifted_features_and_the_retraining_run() -> None:
    obj = load("rolled-back.yaml")
    status = obj["status"]
    status["conditions"].append({"type": "Drifted", "status": "True", "reason": "DriftDetected",
                                 "message": "revision 5d8f2c1a: amount PSI 0.41 drifted from the training reference",
                                 "lastTransitionTime": "2026-01-01T12:00:00Z"})  # fmt: skip
    status["drift"] = {"revision": "5d8f2c1a", "drifted": True, "checks": 3, "since": "2026-01-01T12:01:00Z"}
    status["retraining"] = {"runs": 2, "job": "fraud-retrain-2", "outcome": "Succeeded", "failures": 0,
                            "finishedAt": "2026-01-01T12:03:00Z", "nextRunAfter": "2026-01-02T12:03:00Z"}  # fmt: skip
    text = cli.render_status(obj, NOW, style=cli.Style(color=True))
    assert "\x1b[31mDrifted=True (DriftDetected)\x1b[0m" in text
    assert "Drifted:        revision 5d8f2c1a: amount PSI 0.41 drifted from the training reference (since 4m)" in text
    assert "Retraining:     run 2 (fraud-retrain-2) Succeeded 2m ago; next run not before 23h58m" in text
    status["retraining"] = {"runs": 3, "job": "fraud-retrain-3", "outcome": "Running", "failures": 1,
                            "startedAt": "2026-01-01T12:04:30Z"}  # fmt: skip
    assert "Retraining:     run 3 (fraud-retrain-3) Running for 30s, 1 failed in a row" in cli.render_status(obj, NOW)


def test_a_shadow_step_is_shown_as_such_before_the_canary_steps():
    spec = {"strategy": {"canary": {"steps": [20, 100], "stepDuration": "1m", "shadow": {"percent": 50}}}}
    assert cli.strategy_text(spec, 0) == "canary [shadow 50%] → 20% → 100%, shadow at least 10m, then 1m each"
    assert cli.strategy_text(spec, 1) == "canary shadow 50% → [20%] → 100%, shadow at least 10m, then 1m each"
    assert cli.canary_steps(spec) == [0, 20, 100] and cli.in_shadow(spec, 0) and not cli.in_shadow(spec, 1)
    assert cli.canary_steps({"strategy": {"canary": {"steps": [20, 100]}}}) == [20, 100]


def test_an_ab_test_shows_its_split_and_its_result():
    spec = {"strategy": {"abTest": {"split": 30, "minDuration": "1h"}}}
    assert cli.canary_steps(spec) == [30]
    assert cli.strategy_text(spec, 0) == "abTest: 30% to the candidate (B) on accuracy, at least 1h, at most 168h"
    exp = {"outcome": "CandidateWon", "metric": "accuracy", "effect": 0.095, "lower": 0.04, "upper": 0.15,
           "confidence": 0.95, "candidate": {"revision": "b1", "successes": 463, "trials": 500, "value": 0.926},
           "stable": {"revision": "a1", "successes": 415, "trials": 500, "value": 0.83}}  # fmt: skip
    assert cli.experiment_text(exp) == (
        "CandidateWon on accuracy: B - A = +0.0950, 95 % interval [+0.0400, +0.1500]  "
        "(B b1 463/500 0.926; A a1 415/500 0.83)"
    )


def test_hook_results_are_listed_with_what_the_promotion_waits_for():
    results = [
        {"name": "offline-eval", "type": "PreRollout", "passed": True, "failures": 0},
        {"name": "approval", "type": "ConfirmPromotion", "step": 1, "passed": False, "failures": 3,
         "message": "HTTP 403: not yet"},
    ]  # fmt: skip
    assert cli.hooks_text(results, True) == (
        "offline-eval PreRollout passed; approval ConfirmPromotion step 2 failed x3 (HTTP 403: not yet)"
        "  (promotion waits for its ConfirmPromotion hooks)"
    )
