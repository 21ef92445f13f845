"""Plan 002, section 3, on a cluster: chat_plan002_messages' tests, unchanged, against two
``zcli chat -s --db postgresql://... --broker redis://...`` processes sharing one
PostgreSQL and one Redis, each test's users spread over both: a message crosses to the
process its addressee is on, the ack comes back to the sender's, a mailbox stored by one
process is read by the other when its user signs in there."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_plan002_messages_Test as section3
from zCLI.apps.chat.tests.cluster import ClusterMixin
from zCLI.apps.chat.tests.plan002 import CHAT
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "ClusterMessagesTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterMessagesTest(ClusterMixin, section3.MessagesTest):
    pass
