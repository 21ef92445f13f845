"""Plan 002, section 4, on a cluster: chat_plan002_status's tests, unchanged, against two
``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: presence updates reach
every user whichever process they are on."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_status_Test as section4
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterStatusTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterStatusTest(ClusterMixin, section4.StatusTest):
    pass
