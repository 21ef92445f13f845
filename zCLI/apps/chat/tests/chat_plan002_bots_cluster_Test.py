"""Plan 002, section 8, on a cluster: chat_plan002_bots's tests, unchanged, against two
``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: every process has the bot,
and its answers reach their asker on whichever process."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_bots_Test as section8
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterBotsTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterBotsTest(ClusterMixin, section8.BotsTest):
    pass
