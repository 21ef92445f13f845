"""Plan 002, section 3, on PostgreSQL: chat_plan002_messages' tests, unchanged, against
``zcli chat -s --db postgresql://...`` on a real PostgreSQL server: direct messages,
acknowledgements, the offline store and ``send_all``, every stored message written to
PostgreSQL before its sender hears "stored"."""

from __future__ import annotations

from typing import ClassVar

from zCLI.apps.chat.tests import chat_plan002_messages_Test as section3
from zCLI.apps.chat.tests.plan002 import CHAT
from zCLI.apps.chat.tests.postgres import class_postgres, fresh_database
from zTestSuite import PostgresServer, requires_network, requires_service

__all__ = ["CHAT", "PostgresMessagesTest"]


@requires_network
@requires_service("postgresql")
class PostgresMessagesTest(section3.MessagesTest):
    own_server_only = "it runs its own chat server on its own PostgreSQL"
    postgres: ClassVar[PostgresServer]

    @classmethod
    def setUpClass(cls) -> None:
        cls.postgres = class_postgres(cls)
        cls.database_url = fresh_database(cls.postgres)
        super().setUpClass()
