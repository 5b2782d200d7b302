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
