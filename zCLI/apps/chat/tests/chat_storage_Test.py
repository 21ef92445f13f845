"""The chat's narrow storage interface, one contract for every store: the same changes
written to ``SQLiteStorage`` and to ``PostgresStorage`` (on a real PostgreSQL server)
read back the same, survive reopening, and fail as one transaction."""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from typing import ClassVar

from zCLI import StorageError
from zCLI.apps.chat.core import (
    AddUser,
    Change,
    Delete,
    Message,
    RoomMessage,
    Store,
    StoreRoom,
    StoreRoomMessage,
)
from zCLI.apps.chat.postgres import MIGRATIONS, PostgresStorage, redacted
from zCLI.apps.chat.storage import SQLiteStorage, Storage, open_storage
from zCLI.apps.chat.tests.postgres import class_postgres, fresh_database
from zTestSuite import PostgresServer, requires_network, requires_service

TS = 1648153596.7672942  # a float that must come back bit for bit
CHANGES: list[Change] = [
    AddUser("ann"),
    AddUser("bob"),
    AddUser("ann"),  # again: no error, still one ann
    Store(Message(1, "ann", "bob", "hi", TS)),
    Store(Message(2, "ann", "bob", "été ✓", TS + 1, all=True)),
    Store(Message(3, "bob", "ann", "gone soon", TS + 2)),
    Delete((3, 99)),
    StoreRoom("general", ("ann", "bob")),
    StoreRoom("general", ("bob",)),  # members replaced
    StoreRoom("empty", ()),
    StoreRoomMessage(RoomMessage(4, "general", "bob", "one", TS), keep=2),
    StoreRoomMessage(RoomMessage(5, "general", "bob", "two", TS), keep=2),
    StoreRoomMessage(RoomMessage(6, "general", "bob", "three", TS), keep=2),
]
EXPECTED = {
    "users": ["ann", "bob"],
    "stored": [
        Message(1, "ann", "bob", "hi", TS),
        Message(2, "ann", "bob", "été ✓", TS + 1, all=True),
    ],
    "rooms": [("empty", []), ("general", ["bob"])],
    "room_messages": [
        RoomMessage(5, "general", "bob", "two", TS),
        RoomMessage(6, "general", "bob", "three", TS),
    ],
    "next_id": 7,
}


class ContractMixin:
    """The contract, run by each store's class; ``open()`` opens the same store again."""

    def open(self) -> Storage:
        raise NotImplementedError

    def reads(self, storage: Storage) -> dict[str, object]:
        return {
            "users": storage.users(),
            "stored": storage.stored(),
            "rooms": storage.rooms(),
            "room_messages": storage.room_messages(),
            "next_id": storage.next_id(),
        }

    def test_changes_read_back_and_survive_reopening(self) -> None:
        """Every kind of change reads back as written, also from a new connection."""
        test: unittest.TestCase = self  # type: ignore[assignment]  # a mixin of TestCase
        storage = self.open()
        storage.write(CHANGES[:5])
        storage.write(CHANGES[5:])
        storage.probe()
        test.assertEqual(self.reads(storage), EXPECTED)
        test.assertEqual(storage.stored_for("bob"), EXPECTED["stored"])
        test.assertEqual(storage.stored_for("ann"), [])
        storage.close()
        again = self.open()
        test.assertEqual(self.reads(again), EXPECTED)
        again.close()

    def test_blocks_of_ids_are_claimed_once(self) -> None:
        """Two connections claiming blocks in turn get disjoint ones, each after the
        highest id ever used; the last one claimed is what a restart starts after."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        one, two = self.open(), self.open()
        one.write([Store(Message(41, "ann", "bob", "hi", TS))])
        test.assertEqual(one.claim_ids(100), 141)
        test.assertEqual(two.claim_ids(100), 241)
        test.assertEqual(one.claim_ids(10), 251)
        one.close()
        two.close()
        again = self.open()
        test.assertEqual(again.next_id(), 252)
        again.close()

    def test_an_empty_store(self) -> None:
        """A new store holds nothing and hands out id 1 first."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        storage = self.open()
        empty = {"users": [], "stored": [], "rooms": [], "room_messages": [], "next_id": 1}
        test.assertEqual(self.reads(storage), empty)
        storage.close()

    def test_a_failed_write_changes_nothing(self) -> None:
        """A write whose last change fails (a message without text, which the schema
        refuses) leaves none of its changes behind: one transaction."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        storage = self.open()
        broken = Message(7, "ann", "bob", None, TS)  # type: ignore[arg-type]  # on purpose
        with test.assertRaises(StorageError) as failed:
            storage.write([AddUser("zed"), Store(broken)])
        test.assertTrue(
            str(failed.exception).startswith(
                "The chat storage is unavailable; try again later (writing changes: "
            ),
            str(failed.exception),
        )
        test.assertEqual(storage.users(), [])
        storage.write([AddUser("zed")])  # the store goes on
        test.assertEqual(storage.users(), ["zed"])
        storage.close()


class SQLiteContractTest(ContractMixin, unittest.TestCase):
    def setUp(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.path = Path(folder.name) / "chat.sqlite3"

    def open(self) -> Storage:
        return open_storage(str(self.path), self.path.parent)


@requires_network
@requires_service("postgresql")
class PostgresContractTest(ContractMixin, unittest.TestCase):
    postgres: ClassVar[PostgresServer]

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        cls.postgres = class_postgres(cls)

    def setUp(self) -> None:
        self.url = fresh_database(self.postgres)

    def open(self) -> Storage:
        storage = open_storage(self.url, Path("/nonexistent"))
        self.assertIsInstance(storage, PostgresStorage)
        return storage

    def test_migrations_run_once(self) -> None:
        """Opening the database again applies no migration twice."""
        self.open().close()
        storage = self.open()
        assert isinstance(storage, PostgresStorage)
        versions = storage._read("reading the version", "SELECT version FROM schema_version")
        self.assertEqual(versions, [(v,) for v in range(1, len(MIGRATIONS) + 1)])
        storage.close()

    def test_a_newer_schema_is_refused(self) -> None:
        """A database whose schema a newer zCLI wrote is not opened, saying why."""
        storage = self.open()
        assert isinstance(storage, PostgresStorage)
        storage._run("marking", lambda db: db.execute("INSERT INTO schema_version VALUES (99)"))
        storage.close()
        with self.assertRaises(StorageError) as refused:
            self.open()
        self.assertEqual(
            str(refused.exception),
            f"The chat database {self.url} cannot be opened: its schema is version 99, "
            f"newer than this zCLI knows ({len(MIGRATIONS)}).",
        )

    def test_a_restart_between_writes_costs_no_error(self) -> None:
        """PostgreSQL restarted between two writes: the next write finds its connection
        broken, connects again and succeeds, without a StorageError (no outage)."""
        storage = self.open()
        storage.write([AddUser("ann")])
        self.postgres.stop()
        self.postgres.start()
        storage.write([AddUser("bob")])
        self.assertEqual(storage.users(), ["ann", "bob"])
        storage.close()

    def test_repeating_a_write_changes_nothing(self) -> None:
        """Every change is idempotent (what makes the retry on a fresh connection safe):
        written twice, the store reads as written once."""
        storage = self.open()
        storage.write(CHANGES)
        storage.write(CHANGES)
        self.assertEqual(self.reads(storage), EXPECTED)
        storage.close()

    def test_lost_and_back(self) -> None:
        """With the server stopped, a write and a probe fail with the sentence; once it
        is back, the same storage object writes again (it reconnects)."""
        storage = self.open()
        storage.write([AddUser("ann")])
        self.postgres.stop()
        try:
            for call in (lambda: storage.write([AddUser("bob")]), storage.probe):
                with self.assertRaises(StorageError) as failed:
                    call()
                self.assertTrue(
                    str(failed.exception).startswith(
                        "The chat storage is unavailable; try again later ("
                    ),
                    str(failed.exception),
                )
        finally:
            self.postgres.start()
        storage.probe()
        storage.write([AddUser("bob")])
        self.assertEqual(storage.users(), ["ann", "bob"])
        storage.close()


class RedactedTest(unittest.TestCase):
    def test_password_is_hidden(self) -> None:
        """A URL's password never reaches a sentence; a URL without one is unchanged."""
        for url, shown in (
            ("postgresql://u:pw@h:5432/d", "postgresql://u:***@h:5432/d"),
            ("postgresql://u@h/d", "postgresql://u@h/d"),
        ):
            with self.subTest(url=url):
                self.assertEqual(redacted(url), shown)

    def test_a_path_is_sqlite(self) -> None:
        """--db with a path (or nothing) opens SQLite."""
        with tempfile.TemporaryDirectory() as folder:
            storage = open_storage(None, Path(folder))
            self.assertIsInstance(storage, SQLiteStorage)
            storage.close()
            self.assertTrue((Path(folder) / "chat.sqlite3").exists())
