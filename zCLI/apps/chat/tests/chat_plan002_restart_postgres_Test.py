"""Plan 002, section 6, on PostgreSQL: chat_plan002_restart's tests, unchanged, against
``zcli chat -s --db postgresql://...`` on a real PostgreSQL server (a fresh database per
test): users signed out on a stop, signing in again, messages after a restart with ids
never reused, and stored messages surviving a SIGTERM and a ``kill -9`` of zChat."""

from __future__ import annotations

import asyncio

from zCLI.apps.chat.tests import chat_plan002_restart_Test as section6
from zCLI.apps.chat.tests.plan002 import CHAT
from zCLI.apps.chat.tests.postgres import OnPostgres, fresh_database
from zTestSuite import requires_network, requires_service

__all__ = ["CHAT", "PostgresRestartTest"]


@requires_network
@requires_service("postgresql")
class PostgresRestartTest(OnPostgres, section6.RestartTest):
    own_server_only = "this suite restarts the server, so it starts its own on PostgreSQL"

    async def asyncSetUp(self) -> None:
        type(self).database_url = await asyncio.to_thread(fresh_database, self.postgres)
        await super().asyncSetUp()
