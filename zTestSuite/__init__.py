"""zTestSuite: zCLI's integration test framework, and the runner of its suites.

The public names a suite uses: the harness (``zTestCase``, ``timeout``, ``UNIT``,
``artifact_path``), requirements that skip with a reason (``requires_network``,
``requires_browser``, ``requires_source_tree``), a Chromium per class
(``BrowserTestCase``), metrics (``record_metric``,
``record_samples``), black-box targets (``Target``), time limits (``time_limit``) and
systems under test as real processes (``ServerProcess``, ``served_app``).
"""

from .browser import BrowserTestCase, requires_browser
from .harness import REPO_ROOT, UNIT, artifact_path, requires_source_tree, timeout, zTestCase
from .metrics import Metric, Samples, record_metric, record_samples
from .network import network_unavailable, requires_network
from .process import ServedApp, ServerProcess, served_app
from .targets import Target
from .timeouts import TestTimedOut, time_limit

__all__ = [
    "REPO_ROOT",
    "BrowserTestCase",
    "UNIT",
    "Metric",
    "Samples",
    "ServedApp",
    "ServerProcess",
    "Target",
    "TestTimedOut",
    "artifact_path",
    "network_unavailable",
    "record_metric",
    "record_samples",
    "requires_browser",
    "requires_network",
    "requires_source_tree",
    "served_app",
    "time_limit",
    "timeout",
    "zTestCase",
]
