"""e2e reporting: every rollback scenario's time-to-rollback in pytest's closing summary."""

from __future__ import annotations

import sys


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    module = sys.modules.get("tests.e2e.test_rollouts") or sys.modules.get("test_rollouts")
    times = getattr(module, "ROLLBACK_TIMES", [])
    if not times:
        return
    terminalreporter.section("time-to-rollback (first request to the bad canary -> route at 100 % stable)")
    for test, reason, seconds in times:
        terminalreporter.write_line(f"{seconds:6.1f}s  {reason:28s} {test}")
