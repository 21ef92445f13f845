"""zTestSuite: zCLI's integration test framework, and the runner of its suites.

The public names a suite uses: the harness (``zTestCase``, ``timeout``, ``UNIT``,
``artifact_path``), requirements that skip with a reason (``requires_network``,
``requires_browser``, ``requires_source_tree``), a Chromium per class
(``BrowserTestCase``), metrics (``record_metric``,
``record_samples``), black-box targets (``Target``), time limits (``time_limit``),
systems under test as real processes (``ServerProcess``, ``served_app``) and database
servers as real processes (``RedisServer``, ``PostgresServer``, ``requires_service``).
"""

from .browser import BrowserTestCase, requires_browser
from .harness import REPO_ROOT, UNIT, artifact_path, requires_source_tree, timeout, zTestCase
from .metrics import Metric, Samples, record_metric, record_samples
from .network import network_unavailable, requires_network
from .process import ServedApp, ServerProcess, served_app
from .services import PostgresServer, RedisServer, free_port, requires_service
from .targets import Target
from .timeouts import TestTimedOut, time_limit

__all__ = [
    "REPO_ROOT",
    "BrowserTestCase",
    "UNIT",
    "Metric",
    "PostgresServer",
    "RedisServer",
    "Samples",
    "ServedApp",
    "ServerProcess",
    "Target",
    "TestTimedOut",
    "artifact_path",
    "free_port",
    "network_unavailable",
    "record_metric",
    "record_samples",
    "requires_browser",
    "requires_network",
    "requires_service",
    "requires_source_tree",
    "served_app",
    "time_limit",
    "timeout",
    "zTestCase",
]
