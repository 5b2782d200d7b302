"""The split check the real-node scenarios rely on: which requests count for which step, and the noise bound."""

from __future__ import annotations

import pytest

from hack.realnode.traffic import RouteWatch, Sample, StepSplit, TrafficLog, check_target, split_per_step


class _Log(RouteWatch):
    def __init__(self, log: list[tuple[float, dict[str, int]]]) -> None:  # no API client: a recorded log
        self.log = log


def test_requests_are_judged_against_the_weight_in_force_after_it_settled() -> None:
    watch = _Log([(0.0, {"s": 100}), (10.0, {"s": 80, "c": 20}), (20.0, {"s": 50, "c": 50}), (30.0, {"s": 100})])
    samples = [Sample(10.5, "s", 200)]  # inside the settle time: left out
    samples += [Sample(12 + i * 0.01, "c" if i % 5 == 0 else "s", 200) for i in range(500)]  # exactly 20 %
    samples += [Sample(22 + i * 0.01, "c" if i % 2 else "s", 200) for i in range(400)]  # exactly 50 %
    steps = split_per_step(watch, TrafficLog(samples), "c")
    assert [(s.canary_weight, s.requests, s.canary) for s in steps] == [(20, 500, 100), (50, 400, 200)]
    assert all(s.within_noise and s.z == 0 for s in steps)


def test_a_split_outside_three_standard_deviations_is_not_noise() -> None:
    # n = 400 at p = 0.2: sd = 8; 120 canary answers is z = +5.
    assert not StepSplit(20, 400, 120, (120 - 80) / 8).within_noise
    assert StepSplit(20, 400, 95, (95 - 80) / 8).within_noise
    assert not StepSplit(100, 50, 49, 0.0).within_noise  # at 100 % every answer must be the canary's


def test_traffic_only_goes_to_loopback_or_the_nodes_own_networks() -> None:
    check_target("http://127.0.0.1:8000", [])
    check_target("http://10.215.255.2:30080", ["10.215.255.2/32", "10.215.0.0/24"])
    with pytest.raises(ValueError, match="may only go"):
        check_target("http://10.1.2.3:80", ["10.215.0.0/24"])
