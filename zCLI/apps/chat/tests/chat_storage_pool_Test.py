"""zChat's PostgreSQL writer on its connection pool (``--db-pool``), on a real server:
writes commit one batch at a time in the order they were submitted, each batch in one
transaction; a read waits only for the writes submitted before it, then runs on a
connection of its own, beside the writes after it and other reads. Locks taken by a
connection of the test's own hold a write or a read where the test wants it."""

from __future__ import annotations

import asyncio
import unittest
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from zCLI import StorageError
from zCLI.apps.chat.core import AddUser, Message, Store
from zCLI.apps.chat.storage import UNAVAILABLE
from zCLI.apps.chat.tests.plan002 import OwnServer
from zCLI.apps.chat.tests.postgres import OnPostgres, fresh_database
from zCLI.apps.chat.writer import Writer, open_writer
from zTestSuite import (
    requires_network,
    requires_service,
    timeout,
    zTestCase,
)

TS = 1648153596.7672942
HI = Message(1, "ann", "bob", "hi", TS)
BAD_POOL = (
    "zcli chat: error: 1 configuration problem: --db-pool (ZCHAT_DB_POOL) must be a whole "
    "number of connections, at least 1, not {!r}.\n"
)


def pool_connections(url: str) -> int:
    """How many connections the chat's pool holds to the database of ``url`` (they
    name themselves ``zchat``)."""
    import psycopg  # the test extra's; requires_service has checked it is there

    with psycopg.connect(url, autocommit=True) as db:
        row = db.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'zchat'"
        ).fetchone()
    assert row is not None
    return int(row[0])


@requires_network
@requires_service("postgresql")
class PoolWriterTest(OnPostgres, unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self) -> None:
        import psycopg

        self.url = await asyncio.to_thread(fresh_database, self.postgres)
        self.monitor = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        self.addAsyncCleanup(self.monitor.close)

    async def open(self, pool: int = 4) -> Writer:
        writer = await open_writer(self.url, Path("/nonexistent"), pool)
        self.addAsyncCleanup(writer.close)
        return writer

    async def hold(self, lock: str) -> Any:
        """A connection of the test's own in a transaction that took ``lock``; its
        ``rollback()`` lets go."""
        import psycopg

        holder = await psycopg.AsyncConnection.connect(self.url)
        self.addAsyncCleanup(holder.close)
        await holder.execute(lock)
        return holder

    async def waiting_on(self, table: str) -> int:
        """How many connections wait for a lock on ``table`` (held by ``hold``)."""
        cursor = await self.monitor.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (table,),
        )
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])

    async def look_until(self, condition: Callable[[], Awaitable[bool]], what: str) -> None:
        """Look at ``condition`` every 2 ms until it holds; fail after a timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(5)
        while not await condition():
            if loop.time() > deadline:
                self.fail(f"{what}: not within {timeout(5)} s")
            await asyncio.sleep(0.002)  # a look every 2 ms, not a synchronising sleep

    async def within(self, future: Awaitable[Any]) -> Any:
        """``future``'s result, failing the test if it does not come in time."""
        return await asyncio.wait_for(future, timeout(5))

    async def test_reads_run_beside_a_held_read_and_the_writes_after_it(self) -> None:
        """Two reads held by a lock on ``messages``: a write submitted after them
        commits, and a read after that write sees it, while both still wait; once the
        lock goes, the held reads answer."""
        writer = await self.open(pool=4)
        await writer.submit([Store(HI)])
        holder = await self.hold("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        bob = writer.call(lambda storage: storage.stored_for("bob"))
        ann = writer.call(lambda storage: storage.stored_for("ann"))

        async def both_held() -> bool:
            return await self.waiting_on("messages") == 2

        await self.look_until(both_held, "two reads waiting for the lock on messages")
        await self.within(writer.submit([AddUser("zed")]))
        users = await self.within(writer.call(lambda storage: storage.users()))
        self.assertEqual((users, bob.done(), ann.done()), (["zed"], False, False))
        await holder.rollback()
        self.assertEqual(await self.within(bob), [HI])
        self.assertEqual(await self.within(ann), [])

    async def test_writes_commit_in_order_in_batches_and_reads_wait_for_the_writes_before(
        self,
    ) -> None:
        """A write held by a lock on ``users``: a read submitted before it answers
        meanwhile; the writes submitted while it is held commit after it, together in
        one transaction, in order; a read submitted after them sees every one."""
        writer = await self.open()
        holder = await self.hold("LOCK TABLE users IN EXCLUSIVE MODE")  # reads may go on
        before = writer.call(lambda storage: storage.users())
        first = writer.submit([AddUser("zed")])

        async def held() -> bool:
            return await self.waiting_on("users") == 1

        await self.look_until(held, "the first write waiting for the lock on users")
        self.assertEqual(await self.within(before), [])
        later = [writer.submit([AddUser(name)]) for name in ("amy", "bea", "cid")]
        after = writer.call(lambda storage: storage.users())
        settled: list[str] = []

        def note(label: str) -> Callable[[object], None]:
            return lambda _done: settled.append(label)

        labels = ("zed", "amy", "bea", "cid", "read")
        for label, future in zip(labels, (first, *later, after), strict=True):
            future.add_done_callback(note(label))
        self.assertFalse(first.done())
        await holder.rollback()
        self.assertEqual(await self.within(after), ["amy", "bea", "cid", "zed"])
        await self.within(asyncio.gather(first, *later))
        self.assertEqual(settled, ["zed", "amy", "bea", "cid", "read"])
        cursor = await self.monitor.execute("SELECT name, xmin::text FROM users ORDER BY name")
        transaction: dict[str, str] = dict(await cursor.fetchall())  # which wrote each row
        self.assertEqual(len({transaction[name] for name in ("amy", "bea", "cid")}), 1)
        self.assertNotEqual(transaction["zed"], transaction["amy"])

    async def test_the_pool_holds_its_size_in_connections(self) -> None:
        """The writer keeps exactly ``pool`` connections to the database, and many
        reads at once share them."""
        writer = await self.open(pool=3)

        async def filled() -> bool:
            return await asyncio.to_thread(pool_connections, self.url) == 3

        await self.look_until(filled, "3 pooled connections")
        reads = [writer.call(lambda storage: storage.users()) for _ in range(10)]
        self.assertEqual(await self.within(asyncio.gather(*reads)), [[]] * 10)
        self.assertEqual(await asyncio.to_thread(pool_connections, self.url), 3)

    async def test_an_outage_closes_the_pool_and_the_first_probe_back_makes_a_new_one(
        self,
    ) -> None:
        """PostgreSQL stopped under a read holding the only pooled connection and one
        waiting for it: both fail with the sentence at once (the pool is closed, nobody
        waits out its timeout), and so does a probe; started again, the first probe
        succeeds and the pool is full again."""
        writer = await self.open(pool=1)
        await self.hold("LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
        held = writer.call(lambda storage: storage.stored_for("bob"))

        async def held_read() -> bool:
            return await self.waiting_on("messages") == 1

        await self.look_until(held_read, "a read waiting for the lock on messages")
        queued = writer.call(lambda storage: storage.users())  # no connection left for it
        await asyncio.to_thread(self.postgres.stop)
        try:
            for future in (held, queued, writer.probe()):
                with self.assertRaises(StorageError) as failed:
                    await asyncio.wait_for(future, timeout(1))
                self.assertTrue(str(failed.exception).startswith(UNAVAILABLE[:-1] + " ("))
        finally:
            await asyncio.to_thread(self.postgres.start)
        await self.within(writer.probe())

        async def refilled() -> bool:
            return await asyncio.to_thread(pool_connections, self.url) == 1

        await self.look_until(refilled, "the new pool's connection")
        self.assertEqual(await self.within(writer.call(lambda storage: storage.users())), [])


@requires_network
class PoolOptionTest(zTestCase):
    def test_a_bad_pool_size_stops_the_start(self) -> None:
        """--db-pool (or ZCHAT_DB_POOL) that is not a whole number of at least 1 stops
        ``zcli chat -s`` with the sentence, before it opens anything."""
        cases = [
            (["--db-pool", "0"], {}, "0"),
            (["--db-pool", "-2"], {}, "-2"),
            (["--db-pool", "2.5"], {}, "2.5"),
            ([], {"ZCHAT_DB_POOL": "many"}, "many"),
        ]
        for options, env, shown in cases:
            with self.subTest(options=options, env=env):
                workspace = str(self.workspace)
                done = self.zcli("chat", "-s", "0", *options, "--workspace", workspace, env=env)
                self.assertEqual(
                    (done.returncode, done.stdout, done.stderr), (2, "", BAD_POOL.format(shown))
                )


@requires_network
@requires_service("postgresql")
class PoolServerTest(OnPostgres, zTestCase):
    def test_db_pool_sets_the_server_connections(self) -> None:
        """``zcli chat -s --db postgresql://... --db-pool 2`` holds two connections to
        the chat's database (zAuth's accounts have one of their own, named otherwise)."""
        url = fresh_database(self.postgres)
        server = OwnServer(["--db-pool", "2"], db=url)
        self.addCleanup(server.close)
        server.start()
        self.look_until(lambda: pool_connections(url) == 2, "two pooled connections", 5)
