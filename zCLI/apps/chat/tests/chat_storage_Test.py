"""The chat's narrow storage interface, one contract for every store, through the
writer the chat server uses: the same changes submitted to SQLite (the writer thread)
and to PostgreSQL (the writer task on a connection pool, on a real PostgreSQL server)
read back the same, survive reopening, and fail as one transaction."""

from __future__ import annotations

import asyncio
import tempfile
import unittest
from pathlib import Path
from typing import Any

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
from zCLI.apps.chat.storage import Saved, SQLiteStorage
from zCLI.apps.chat.tests.postgres import OnPostgres, fresh_database
from zCLI.apps.chat.writer import AsyncStorageWriter, StorageWriter, Writer, open_writer
from zTestSuite import requires_network, requires_service

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

    async def open(self) -> Writer:
        raise NotImplementedError

    async def reads(self, writer: Writer) -> dict[str, object]:
        names = ("users", "stored", "rooms", "room_messages", "next_id")
        return {name: await read(writer, name) for name in names}

    async def test_changes_read_back_and_survive_reopening(self) -> None:
        """Every kind of change reads back as written, also from a new connection."""
        test: unittest.TestCase = self  # type: ignore[assignment]  # a mixin of TestCase
        writer = await self.open()
        await writer.submit(CHANGES[:5])
        await writer.submit(CHANGES[5:])
        await writer.probe()
        test.assertEqual(await self.reads(writer), EXPECTED)
        test.assertEqual(await read(writer, "stored_for", "bob"), EXPECTED["stored"])
        test.assertEqual(await read(writer, "stored_for", "ann"), [])
        test.assertEqual(await read(writer, "room", "general"), ["bob"])
        test.assertEqual(await read(writer, "room", "empty"), [])
        test.assertIsNone(await read(writer, "room", "nowhere"))
        await writer.close()
        again = await self.open()
        test.assertEqual(await self.reads(again), EXPECTED)
        await again.close()

    async def test_blocks_of_ids_are_claimed_once(self) -> None:
        """Two connections claiming blocks in turn get disjoint ones, each after the
        highest id ever used; the last one claimed is what a restart starts after."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        one, two = await self.open(), await self.open()
        await one.submit([Store(Message(41, "ann", "bob", "hi", TS))])
        test.assertEqual(await read(one, "claim_ids", 100), 141)
        test.assertEqual(await read(two, "claim_ids", 100), 241)
        test.assertEqual(await read(one, "claim_ids", 10), 251)
        await one.close()
        await two.close()
        again = await self.open()
        test.assertEqual(await read(again, "next_id"), 252)
        await again.close()

    async def test_saved_is_everything_with_a_block_claimed(self) -> None:
        """What a chat server loads: every read at once, after claiming a block of ids
        past the highest ever used."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        writer = await self.open()
        await writer.submit(CHANGES)
        saved = await read(writer, "saved", 100)
        test.assertIsInstance(saved, Saved)
        test.assertEqual(
            (saved.users, saved.last, saved.stored, saved.rooms, saved.room_messages),
            (["ann", "bob"], 106, EXPECTED["stored"], EXPECTED["rooms"], EXPECTED["room_messages"]),
        )
        test.assertEqual(await read(writer, "next_id"), 107)
        await writer.close()

    async def test_an_empty_store(self) -> None:
        """A new store holds nothing and hands out id 1 first."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        writer = await self.open()
        empty = {"users": [], "stored": [], "rooms": [], "room_messages": [], "next_id": 1}
        test.assertEqual(await self.reads(writer), empty)
        await writer.close()

    async def test_a_failed_write_changes_nothing(self) -> None:
        """A write whose last change fails (a message without text, which the schema
        refuses) leaves none of its changes behind: one transaction."""
        test: unittest.TestCase = self  # type: ignore[assignment]
        writer = await self.open()
        broken = Message(7, "ann", "bob", None, TS)  # type: ignore[arg-type]  # on purpose
        with test.assertRaises(StorageError) as failed:
            await writer.submit([AddUser("zed"), Store(broken)])
        test.assertTrue(
            str(failed.exception).startswith(
                "The chat storage is unavailable; try again later (writing changes: "
            ),
            str(failed.exception),
        )
        test.assertEqual(await read(writer, "users"), [])
        await writer.submit([AddUser("zed")])  # the store goes on
        test.assertEqual(await read(writer, "users"), ["zed"])
        await writer.close()


async def read(writer: Writer, name: str, *args: Any) -> Any:
    """The storage's read ``name`` through ``writer.call``, as the chat server reads."""
    return await writer.call(lambda storage: getattr(storage, name)(*args))


class SQLiteContractTest(ContractMixin, unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        self.path = Path(folder.name) / "chat.sqlite3"

    async def open(self) -> Writer:
        writer = await open_writer(str(self.path), self.path.parent, 4)
        self.assertIsInstance(writer, StorageWriter)
        return writer


@requires_network
@requires_service("postgresql")
class PostgresContractTest(OnPostgres, ContractMixin, unittest.IsolatedAsyncioTestCase):
    def setUp(self) -> None:
        self.url = fresh_database(self.postgres)

    async def open(self) -> Writer:
        writer = await open_writer(self.url, Path("/nonexistent"), 4)
        assert isinstance(writer, AsyncStorageWriter)
        self.assertIsInstance(writer.storage, PostgresStorage)
        return writer

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """``query`` on a connection of the test's own."""
        import psycopg  # the test extra's; requires_service has checked it is there

        with psycopg.connect(self.url, autocommit=True) as db:
            cursor = db.execute(query)
            return cursor.fetchall() if cursor.description else []

    async def test_migrations_run_once(self) -> None:
        """Opening the database again applies no migration twice."""
        await (await self.open()).close()
        await (await self.open()).close()
        versions = self.sql("SELECT version FROM schema_version")
        self.assertEqual(versions, [(v,) for v in range(1, len(MIGRATIONS) + 1)])

    async def test_a_newer_schema_is_refused(self) -> None:
        """A database whose schema a newer zCLI wrote is not opened, saying why."""
        await (await self.open()).close()
        self.sql("INSERT INTO schema_version VALUES (99)")
        with self.assertRaises(StorageError) as refused:
            await self.open()
        self.assertEqual(
            str(refused.exception),
            f"The chat database {self.url} cannot be opened: its schema is version 99, "
            f"newer than this zCLI knows ({len(MIGRATIONS)}).",
        )

    async def test_a_restart_between_writes_costs_no_error(self) -> None:
        """PostgreSQL restarted between two writes: every pooled connection is broken,
        and each request that finds one connects again and succeeds, without a
        StorageError (no outage), however many at once."""
        writer = await self.open()
        await writer.submit([AddUser("ann")])
        await asyncio.gather(*(read(writer, "users") for _ in range(8)))  # all 4 used
        self.postgres.stop()
        self.postgres.start()
        await writer.submit([AddUser("bob")])
        reads = await asyncio.gather(*(read(writer, "users") for _ in range(8)))
        self.assertEqual(reads, [["ann", "bob"]] * 8)
        await writer.close()

    async def test_repeating_a_write_changes_nothing(self) -> None:
        """Every change is idempotent (what makes the retry on a fresh connection safe):
        written twice, the store reads as written once."""
        writer = await self.open()
        await writer.submit(CHANGES)
        await writer.submit(CHANGES)
        self.assertEqual(await self.reads(writer), EXPECTED)
        await writer.close()

    async def test_lost_and_back(self) -> None:
        """With the server stopped, a write, a read and a probe fail with the sentence
        (at once: the server refuses); once it is back, the first probe succeeds and
        the same writer writes and reads again."""
        writer = await self.open()
        await writer.submit([AddUser("ann")])
        self.postgres.stop()
        try:
            attempts = (writer.submit([AddUser("bob")]), read(writer, "users"), writer.probe())
            for attempt in attempts:
                with self.assertRaises(StorageError) as failed:
                    await attempt
                self.assertTrue(
                    str(failed.exception).startswith(
                        "The chat storage is unavailable; try again later ("
                    ),
                    str(failed.exception),
                )
        finally:
            self.postgres.start()
        await writer.probe()
        await writer.submit([AddUser("bob")])
        self.assertEqual(await read(writer, "users"), ["ann", "bob"])
        await writer.close()


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
        """--db with a path (or nothing) opens SQLite, through the writer thread."""

        async def opened(folder: str) -> None:
            writer = await open_writer(None, Path(folder), 4)
            assert isinstance(writer, StorageWriter)
            self.assertIsInstance(writer.storage, SQLiteStorage)
            await writer.close()

        with tempfile.TemporaryDirectory() as folder:
            asyncio.run(opened(folder))
            self.assertTrue((Path(folder) / "chat.sqlite3").exists())
