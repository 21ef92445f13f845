"""Plan 002, section 2, on a cluster: chat_plan002_initial_data's tests, unchanged, against
two ``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: the user list, rooms and
online users are the cluster's, asked of either process."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_initial_data_Test as section2
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterInitialDataTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterInitialDataTest(ClusterMixin, section2.InitialDataTest):
    pass
