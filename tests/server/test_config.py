"""Flags, environment fallbacks and their precedence (the operator configures pods by env)."""

from __future__ import annotations

import dataclasses

import pytest
from modelserver.config import Settings, env_name, parse_settings

BASE = ["--model-uri", "file:///m.onnx", "--model-name", "fraud"]


def test_flags_parse_with_defaults() -> None:
    s = parse_settings(BASE, environ={})
    assert (s.model_uri, s.model_name, s.host, s.port, s.revision) == (
        "file:///m.onnx",
        "fraud",
        "127.0.0.1",
        8080,
        None,
    )


def test_every_setting_has_an_env_var() -> None:
    env = {
        "MODELSERVER_MODEL_URI": "file:///x.onnx",
        "MODELSERVER_MODEL_NAME": "m",
        "MODELSERVER_REVISION": "abc",
        "MODELSERVER_SHA256": "A" * 64,
        "MODELSERVER_PORT": "9000",
        "MODELSERVER_WARMUP_REQUESTS": "3",
        "MODELSERVER_LOG_INPUTS": "true",
        "MODELSERVER_LOG_SAMPLE_RATE": "0.5",
        "MODELSERVER_MAX_MISSING_FRACTION": "0.2",
        "MODELSERVER_EXECUTOR": "thread",
    }
    s = parse_settings([], environ=env)
    assert (s.model_uri, s.model_name, s.revision, s.port, s.warmup_requests) == ("file:///x.onnx", "m", "abc", 9000, 3)
    assert s.sha256 == "a" * 64 and s.log_inputs is True and s.log_sample_rate == 0.5
    assert s.max_missing_fraction == 0.2 and s.executor == "thread"
    assert env_name("model_uri") == "MODELSERVER_MODEL_URI"
    for field in dataclasses.fields(Settings):
        assert f"--{field.name.replace('_', '-')}" in _help(), field.name


def _help() -> str:
    from modelserver.config import _build_parser

    return _build_parser().format_help()


def test_flags_win_over_env() -> None:
    s = parse_settings([*BASE, "--port", "1234"], environ={"MODELSERVER_PORT": "9999", "MODELSERVER_MODEL_NAME": "x"})
    assert s.port == 1234 and s.model_name == "fraud"


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        ([], {}),
        (BASE, {"MODELSERVER_PORT": "eighty"}),
        (BASE, {"MODELSERVER_LOG_INPUTS": "maybe"}),
        (BASE, {"MODELSERVER_SHA256": "xyz"}),
        ([*BASE, "--log-sample-rate", "2"], {}),
        ([*BASE, "--executor", "gpu"], {}),
        ([*BASE, "--feedback-key-file", "/k"], {}),  # a key needs the identity it binds
        ([*BASE, "--deployment", "ml"], {}),
        ([*BASE, "--deployment", "ML/Fraud"], {}),
        ([*BASE, "--deployment", "ml/fraud/x"], {}),
        ([*BASE, "--feedback-token-ttl", "0"], {}),
        ([*BASE, "--feedback-token-ttl", "3 days"], {}),
        (BASE, {"MODELSERVER_FEEDBACK_TOKEN_TTL": "-1h"}),
        ([*BASE, "--latency-buckets", "0.1,0.05"], {}),
        ([*BASE, "--latency-buckets", "0.1,0.1"], {}),
        ([*BASE, "--latency-buckets", "0,0.1"], {}),
        ([*BASE, "--latency-buckets", "0.1,inf"], {}),
        (BASE, {"MODELSERVER_LATENCY_BUCKETS": "fast"}),
    ],
)
def test_invalid_settings_exit_with_usage(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_settings(argv, environ=env)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_every_flag_is_documented() -> None:
    from .conftest import REPO

    doc = (REPO / "docs" / "model-server.md").read_text()
    for field in dataclasses.fields(Settings):
        assert f"`--{field.name.replace('_', '-')}`" in doc, field.name
        assert f"`{env_name(field.name)}`" in doc, field.name


def test_feedback_token_settings() -> None:
    s = parse_settings([*BASE, "--feedback-key-file", "/k", "--deployment", "ml/fraud-v2.x"], environ={})
    assert (s.feedback_key_file, s.deployment, s.feedback_token_ttl) == ("/k", "ml/fraud-v2.x", 7 * 86400)
    env = {"MODELSERVER_FEEDBACK_KEY_FILE": "/k", "MODELSERVER_DEPLOYMENT": "a/b"}
    for text, seconds in (("36h", 129600), ("1h30m", 5400), ("90s", 90), ("2d", 172800), ("45", 45), ("1.5h", 5400)):
        assert (
            parse_settings(BASE, environ={**env, "MODELSERVER_FEEDBACK_TOKEN_TTL": text}).feedback_token_ttl == seconds
        )
    assert parse_settings(BASE, environ={}).feedback_key_file is None, "no key by default: tokens are opt-in"


def test_latency_buckets_setting() -> None:
    from modelserver.metrics import LATENCY_BUCKETS

    assert parse_settings(BASE, environ={}).latency_buckets == LATENCY_BUCKETS
    assert LATENCY_BUCKETS[0] == 0.0005 and LATENCY_BUCKETS[-1] == 10.0 and len(LATENCY_BUCKETS) == 17
    s = parse_settings(BASE, environ={"MODELSERVER_LATENCY_BUCKETS": "0.005, 0.01,0.05"})
    assert s.latency_buckets == (0.005, 0.01, 0.05)
