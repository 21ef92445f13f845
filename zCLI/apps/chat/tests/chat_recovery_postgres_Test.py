"""chat_recovery on PostgreSQL: ``zcli chat -s --db postgresql://...`` killed with
SIGKILL while messages flow, restarted on the same database; every message whose sender
heard "stored" or "delivered" reaches its addressee, none acknowledged comes back, and
no id is reused (chat_recovery's test, unchanged)."""

from __future__ import annotations

from zCLI.apps.chat.tests import chat_recovery_Test as recovery
from zCLI.apps.chat.tests.postgres import OnPostgres, fresh_database
from zTestSuite import requires_network, requires_service

__all__ = ["PostgresKillTest"]


@requires_network
@requires_service("postgresql")
class PostgresKillTest(OnPostgres, recovery.KillTest):
    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        self.db = fresh_database(self.postgres)
