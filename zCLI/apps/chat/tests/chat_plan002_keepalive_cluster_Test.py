"""Plan 002, section 5, on a cluster: chat_plan002_keepalive's tests, unchanged, against
two ``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: a silent connection is
closed by its own process and the others see its user go offline."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_keepalive_Test as section5
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterKeepaliveTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterKeepaliveTest(ClusterMixin, section5.KeepaliveTest):
    pass
