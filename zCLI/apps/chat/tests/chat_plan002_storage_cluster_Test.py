"""Plan 002, section 7, on a cluster: chat_plan002_storage_postgres' tests, unchanged,
against two ``zcli chat -s --db postgresql://... --broker redis://...`` processes on the
PostgreSQL server the test stops, with each test's users spread over both: everyone on
both is signed out, signing in is refused while it lasts, both serve again by themselves,
and every message reported stored reaches its addressee."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from zCLI.apps.chat.tests import chat_plan002_storage_postgres_Test as section7
from zCLI.apps.chat.tests.cluster import OwnCluster
from zCLI.apps.chat.tests.plan002 import CHAT, OwnServer
from zTestSuite import RedisServer, requires_network, requires_service

__all__ = ["CHAT", "ClusterOutageTest"]


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterOutageTest(section7.PostgresOutageTest):
    redis: ClassVar[RedisServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.redis = RedisServer()
        cls.addClassCleanup(cls.redis.close)
        cls.redis.start()

    async def server_says(self, line: str) -> None:
        """Every process of the cluster logged ``line`` (each notices on its own)."""
        for member in self.own.members:  # type: ignore[attr-defined]  # an OwnCluster
            assert member.process is not None
            await asyncio.to_thread(member.process.wait_for, line, 5)

    @classmethod
    def _own_server(cls) -> OwnServer:
        assert cls.database_url is not None
        return OwnCluster(cls.server_options, cls.server_env, cls.database_url, cls.redis.url)
