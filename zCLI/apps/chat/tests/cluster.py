"""zChat as a cluster for the plan 002 suites: two ``zcli chat -s`` processes sharing one
PostgreSQL database and one Redis (issue 12), each in a folder of its own, sharing only
the signing secret (``ZCLI_AUTH_SECRET``), the database and the broker.

``ClusterMixin`` put before a plan 002 test class runs that class's tests unchanged
against the cluster; ``ChatTestCase.url_for`` spreads each test's users (and each
user's successive connections) over the processes.
"""

from __future__ import annotations

import secrets
import signal
from collections.abc import Mapping, Sequence
from typing import ClassVar

from zCLI.apps.chat.tests.plan002 import OwnServer
from zCLI.apps.chat.tests.postgres import class_postgres, fresh_database
from zTestSuite import PostgresServer, RedisServer

__all__ = ["PRESENCE_TTL", "ClusterMixin", "OwnCluster"]

# How long a process that dies without a word stays online in the others' tables
# (websocket.presence_ttl); the cluster's storage and broker checks run every 0.1 s.
PRESENCE_TTL = 2.0


class OwnCluster(OwnServer):
    """``size`` chat servers on one database and one broker; ``ws_url`` and
    ``http_url`` are the first's, ``ws_urls`` every one's. ``restart`` restarts them
    all on their ports; ``member(i)`` is one of them, to stop or kill on its own."""

    def __init__(
        self,
        options: Sequence[str],
        env: Mapping[str, str] | None,
        db: str,
        broker: str,
        size: int = 2,
    ) -> None:
        super().__init__(options, env, db)
        shared = {
            "ZCLI_AUTH_SECRET": secrets.token_hex(32),
            "ZCHAT_STORAGE_CHECK": "0.1",
            "ZCLI_WEBSOCKET_PRESENCE_TTL": str(PRESENCE_TTL),
            **(env or {}),
        }
        with_broker = [*options, "--broker", broker]
        self.members = [OwnServer(with_broker, shared, db) for _ in range(size)]

    @property
    def ws_urls(self) -> list[str]:
        return [member.ws_url for member in self.members]

    def member(self, index: int) -> OwnServer:
        return self.members[index]

    def start(self, ws_port: int = 0, http_port: int = 0) -> None:
        try:
            for index, member in enumerate(self.members):
                if index == 0:
                    member.start(ws_port, http_port)
                else:
                    member.start()
        except BaseException:
            self.stop()
            raise
        self.ws_url, self.http_url = self.members[0].ws_url, self.members[0].http_url

    def stop(self, signum: int = signal.SIGTERM) -> int:
        statuses = [member.stop(signum) for member in self.members]
        return next((status for status in statuses if status), 0)

    def restart(self, signum: int = signal.SIGTERM) -> None:
        for member in self.members:
            member.restart(signum)
        self.ws_url, self.http_url = self.members[0].ws_url, self.members[0].http_url

    def close(self) -> None:
        for member in self.members:
            member.close()
        super().close()


class ClusterMixin:
    """Put first in the bases of a plan 002 test class: its server is an ``OwnCluster``
    on a real PostgreSQL server and a real ``redis-server`` of the class."""

    own_server_only = "it runs its own cluster on its own PostgreSQL and Redis"
    postgres: ClassVar[PostgresServer]
    redis: ClassVar[RedisServer]
    cluster_database: ClassVar[str]

    @classmethod
    def setUpClass(cls) -> None:
        cls.postgres = class_postgres(cls)  # type: ignore[arg-type]  # a TestCase class
        cls.redis = RedisServer()
        cls.addClassCleanup(cls.redis.close)  # type: ignore[attr-defined]  # a TestCase
        cls.redis.start()
        cls.cluster_database = fresh_database(cls.postgres)
        super().setUpClass()  # type: ignore[misc]  # the TestCase's

    @classmethod
    def _own_server(cls) -> OwnServer:
        options, env = getattr(cls, "server_options", ()), getattr(cls, "server_env", {})
        return OwnCluster(options, env, cls.cluster_database, cls.redis.url)
