"""The operator's kopf settings follow its watch scope (``python -m modelrollout run``)."""

from __future__ import annotations

import pytest
from modelrollout.__main__ import scoped_settings


@pytest.mark.parametrize(
    ("namespaces", "scanning_disabled"),
    [
        (["ml"], True),  # the chart's namespace mode: no cluster-wide list is granted, none is tried
        (["ml", "fraud"], True),
        ([], False),  # --all-namespaces: kopf discovers namespaces and CRDs
        (["team-*"], False),  # a glob needs the namespace list to expand
        (["ml", "!ml-test"], False),
    ],
)
def test_cluster_wide_discovery_only_when_the_scope_needs_it(namespaces, scanning_disabled):
    assert scoped_settings(namespaces).scanning.disabled is scanning_disabled


def test_the_log_level_flag_is_the_level_and_per_event_handler_lines_are_debug_only(caplog):
    """kopf's configure knows only INFO/DEBUG; --log-level=WARNING must still mean WARNING. kopf's
    "Handler '...' succeeded." line per watch event stays out unless DEBUG."""
    import logging

    from modelrollout.__main__ import configure_logging

    root, objects = logging.getLogger(), logging.getLogger("kopf.objects")
    saved = (root.level, list(root.handlers), list(objects.filters))
    try:
        configure_logging("WARNING", "plain")
        assert root.level == logging.WARNING
        configure_logging("INFO", "plain")
        caplog.set_level(logging.INFO)
        objects.info("Handler 'on_child' succeeded.")
        objects.info("Handler 'on_child' failed temporarily: 500")
        logging.getLogger("modelrollout.handlers").info("created Secret ns/fraud-feedback-key")
        assert [r.getMessage() for r in caplog.records] == [
            "Handler 'on_child' failed temporarily: 500",
            "created Secret ns/fraud-feedback-key",
        ]
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        objects.filters[:] = saved[2]
