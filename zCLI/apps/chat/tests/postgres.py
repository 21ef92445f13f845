"""The PostgreSQL the zChat suites run on: one real server per test class (zTestSuite's
``PostgresServer``), a fresh database per test, so each test's chat server starts on an
empty store exactly as it does on a new SQLite file."""

from __future__ import annotations

import itertools
import os
import unittest
from typing import ClassVar

from zTestSuite import PostgresServer

__all__ = ["OnPostgres", "class_postgres", "fresh_database"]

_NUMBERS = itertools.count(1)


def class_postgres(cls: type[unittest.TestCase]) -> PostgresServer:
    """Start a PostgreSQL server for ``cls`` (from its ``setUpClass``), stopped and
    removed by a class cleanup."""
    server = PostgresServer()
    cls.addClassCleanup(server.close)
    server.start()
    return server


def fresh_database(server: PostgresServer) -> str:
    """The URL of a new empty database on ``server``, started again first if a test
    that stopped it ended early."""
    if not server.running:
        server.start()
    return server.create_database(f"zchat_{os.getpid()}_{next(_NUMBERS)}")


class OnPostgres:
    """Put before a test class's base: a PostgreSQL server of the class's own
    (``postgres``), started in ``setUpClass`` and stopped by a class cleanup."""

    postgres: ClassVar[PostgresServer]

    @classmethod
    def setUpClass(cls) -> None:  # noqa: N802 (unittest's name)
        super().setUpClass()  # type: ignore[misc]
        cls.postgres = class_postgres(cls)  # type: ignore[arg-type]
