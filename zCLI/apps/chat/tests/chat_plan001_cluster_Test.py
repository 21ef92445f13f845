"""Plan 001's three recorded runs on a cluster: chat_plan001's tests, unchanged, with two
``zcli chat -s --db postgresql://... --broker redis://...`` processes on one PostgreSQL
and one Redis, the terminal clients connecting to them in turn (user1 and user3 to the
first, user2 to the second); "the server gone" stops both."""

from __future__ import annotations

import secrets
import sys
import tempfile
import unittest
from pathlib import Path
from typing import ClassVar

from zCLI.apps.chat.tests import chat_plan001_Test as plan001
from zCLI.apps.chat.tests.cluster import PRESENCE_TTL
from zCLI.apps.chat.tests.postgres import class_postgres, fresh_database
from zTestSuite import (
    PostgresServer,
    RedisServer,
    ServerProcess,
    requires_network,
    requires_service,
)

__all__ = ["ClusterPlan001Test"]


class _Cluster:
    """The chat servers of one test, stopped together."""

    def __init__(self, servers: list[ServerProcess]) -> None:
        self.servers = servers

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@requires_network
@requires_service("postgresql")
@requires_service("redis")
class ClusterPlan001Test(plan001.Plan001Test):
    postgres: ClassVar[PostgresServer]
    redis: ClassVar[RedisServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.postgres = class_postgres(cls)
        cls.redis = RedisServer()
        cls.addClassCleanup(cls.redis.close)
        cls.redis.start()

    def setUp(self) -> None:  # the cluster instead of plan001's one server
        database = fresh_database(self.postgres)
        env = {**plan001.ENV, "ZCLI_AUTH_SECRET": secrets.token_hex(32),
               "ZCLI_WEBSOCKET_PRESENCE_TTL": str(PRESENCE_TTL)}  # fmt: skip
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.folder = Path(folder.name)
        servers: list[ServerProcess] = []
        self.ports: list[int] = []
        for index in range(2):
            workspace = self.folder / f"server{index}"
            workspace.mkdir()
            server = ServerProcess(
                [sys.executable, "-m", "zCLI", "chat", "-s", "0", "--http-port", "0",
                 "--db", database, "--broker", self.redis.url, "--workspace", str(workspace)],
                cwd=workspace,
                env=env,
            )  # fmt: skip
            self.addCleanup(server.stop)
            servers.append(server)
            self.ports.append(int(server.wait_for(r"ws://127\.0\.0\.1:(\d+)").group(1)))
        self.server = _Cluster(servers)  # type: ignore[assignment]  # stop() is all it needs
        self.port = self.ports[0]
        self.clients = []

    def start(self, nick: str, client_port: int) -> plan001.Client:
        client = plan001.Client(self.folder, nick, self.ports[len(self.clients) % 2], client_port)
        self.addCleanup(client.close)
        self.clients.append(client)
        return client


if __name__ == "__main__":
    unittest.main()
