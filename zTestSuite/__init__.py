"""zTestSuite: zCLI's integration test framework, and the runner of its suites."""

from .harness import REPO_ROOT, UNIT, timeout, zTestCase
from .metrics import Metric, record_metric
from .network import network_unavailable, requires_network

__all__ = [
    "REPO_ROOT",
    "UNIT",
    "Metric",
    "network_unavailable",
    "record_metric",
    "requires_network",
    "timeout",
    "zTestCase",
]
