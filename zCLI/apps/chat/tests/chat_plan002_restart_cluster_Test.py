"""Plan 002, section 6, on a cluster: chat_plan002_restart's tests, unchanged, against two
``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: every process of the
cluster restarted on its ports; users sign in again on either and get what was stored."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_restart_Test as section6
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterRestartTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterRestartTest(ClusterMixin, section6.RestartTest):
    pass
