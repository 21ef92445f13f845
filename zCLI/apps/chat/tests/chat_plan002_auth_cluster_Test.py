"""Plan 002, section 1, on a cluster: chat_plan002_auth's tests, unchanged, against two
``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: an account made on one
process signs in on the other, and a token signed out on one is refused by both."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_auth_Test as section1
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterAuthTest", "ClusterExpiredTokenTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterAuthTest(ClusterMixin, section1.AuthTest):
    pass


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterExpiredTokenTest(ClusterMixin, section1.ExpiredTokenTest):
    pass
