"""zTestSuite: zCLI's integration test framework, and the runner of its suites."""

from .browser import requires_browser
from .harness import REPO_ROOT, UNIT, requires_source_tree, timeout, zTestCase
from .metrics import Metric, record_metric
from .network import network_unavailable, requires_network

__all__ = [
    "REPO_ROOT",
    "UNIT",
    "Metric",
    "network_unavailable",
    "record_metric",
    "requires_browser",
    "requires_network",
    "requires_source_tree",
    "timeout",
    "zTestCase",
]
