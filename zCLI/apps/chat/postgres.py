"""The chat's storage in PostgreSQL (psycopg 3, asyncio), for ``--db postgresql://...``.

The same reads and writes as ``SQLiteStorage``, as coroutines, each on a connection of
zCLI's ``PostgresPool`` (a ``psycopg_pool.AsyncConnectionPool`` of ``--db-pool``
connections, 4 by default), and the same promises: ``write`` applies the core's changes
in one transaction and returns only once it is committed (so nothing reported stored is
lost), and the highest id ever used or reserved is kept in ``counters``, from which each
process claims its blocks of ids atomically (one ``UPDATE ... RETURNING``). The writer
task (``writer.py``) calls it: it writes everything queued in one transaction at a time,
in order (the statements of one sent in psycopg's pipeline mode, without waiting for
each answer), while reads run at once on connections of their own.

The schema is created, and later versions migrated, when the storage opens: each
migration runs once, in order, recorded in ``schema_version``, under an advisory lock
so that two processes starting at once do not both apply it. When a pooled connection
is found broken, the work runs once more at once on a connection of its own (the writes
are idempotent: repeating one is safe); when that fails too, the pool is closed and the
request fails with a ``StorageError``. Until a connection succeeds again, each call
connects on its own, which is how the chat's probe notices the database is back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from zCLI import PostgresPool, is_postgres_url, redacted

from .core import (
    AddUser,
    Change,
    Delete,
    Message,
    RoomMessage,
    Store,
    StoreRoom,
    StoreRoomMessage,
)
from .storage import UNAVAILABLE, Saved, action_of, messages_of, rooms_of

__all__ = ["MIGRATIONS", "PostgresStorage", "is_postgres_url", "redacted"]

# Version N is MIGRATIONS[N - 1]; append, never edit one that has shipped.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE users (name TEXT PRIMARY KEY);
    CREATE TABLE messages (
        id BIGINT PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL,
        text TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, is_all BOOLEAN NOT NULL);
    CREATE INDEX messages_recipient ON messages (recipient, id);
    CREATE TABLE rooms (room TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY (room, member));
    CREATE TABLE room_names (room TEXT PRIMARY KEY);
    CREATE TABLE room_messages (
        id BIGINT PRIMARY KEY, room TEXT NOT NULL, sender TEXT NOT NULL,
        text TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL);
    CREATE INDEX room_messages_room ON room_messages (room, id);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
    """,
)
_LOCK_KEY = 0x7A436861  # "zCha": the advisory lock migrations hold


class PostgresStorage:
    """``SQLiteStorage``'s methods as coroutines on a pool of ``pool_size``
    connections; ``open`` before use, ``close`` after."""

    def __init__(self, url: str, pool_size: int, connect_timeout: float = 2.0) -> None:
        self.pool = PostgresPool(
            url,
            size=pool_size,
            open_error="The chat database {name} cannot be opened: {reason}.",
            run_error=UNAVAILABLE[:-1] + " ({action}: {reason}).",
            connect_timeout=connect_timeout,
            application="zchat",
        )
        self.url, self.name = url, self.pool.name

    async def open(self) -> None:
        """Connect, create or migrate the schema, start the pool."""
        await self.pool.opened(MIGRATIONS, _LOCK_KEY, "schema_version")

    async def _read(
        self, action: str, sql: str, args: tuple[object, ...] = ()
    ) -> list[tuple[Any, ...]]:
        async def work(db: Any) -> list[tuple[Any, ...]]:
            return list(await (await db.execute(sql, args)).fetchall())

        return await self.pool.run(action, work)

    async def users(self) -> list[str]:
        rows = await self._read("reading users", "SELECT name FROM users ORDER BY name")
        return [row[0] for row in rows]

    async def stored(self) -> list[Message]:
        sql = "SELECT * FROM messages ORDER BY id"
        return messages_of(await self._read("reading stored messages", sql))

    async def stored_for(self, user: str) -> list[Message]:
        """What is stored for ``user``, by whichever process stored it (a sign-in reads
        it when several processes share the database)."""
        sql = "SELECT * FROM messages WHERE recipient = %s ORDER BY id"
        return messages_of(await self._read("reading stored messages", sql, (user,)))

    async def rooms(self) -> list[tuple[str, list[str]]]:
        names = await self._read("reading rooms", "SELECT room FROM room_names ORDER BY room")
        pairs = await self._read("reading rooms", "SELECT room, member FROM rooms ORDER BY member")
        return rooms_of(names, pairs)

    async def room(self, name: str) -> list[str] | None:
        """The members of room ``name``, or None when there is no such room."""
        sql = "SELECT 1 FROM room_names WHERE room = %s"
        if not await self._read("reading rooms", sql, (name,)):
            return None
        sql = "SELECT member FROM rooms WHERE room = %s ORDER BY member"
        return [row[0] for row in await self._read("reading rooms", sql, (name,))]

    async def room_messages(self) -> list[RoomMessage]:
        sql = "SELECT * FROM room_messages ORDER BY id"
        return [RoomMessage(*row) for row in await self._read("reading room messages", sql)]

    async def next_id(self) -> int:
        """One past the highest id ever stored or reserved."""
        sql = "SELECT value FROM counters WHERE name = 'last_id'"
        rows = await self._read("reading ids", sql)
        return int(rows[0][0] if rows else 0) + 1

    async def saved(self, block: int) -> Saved:
        """Everything durable, with a block of ``block`` ids claimed first."""
        users = await self.users()
        last = await self.claim_ids(block)
        return Saved(
            users, last, await self.stored(), await self.rooms(), await self.room_messages()
        )

    async def claim_ids(self, count: int) -> int:
        """Record ``count`` more ids as used and return the last of them: one atomic
        ``UPDATE ... RETURNING``, so no two processes ever get the same block."""

        async def work(db: Any) -> int:
            async with db.transaction():
                await db.execute(
                    "INSERT INTO counters VALUES ('last_id', 0) ON CONFLICT DO NOTHING"
                )
                cursor = await db.execute(
                    "UPDATE counters SET value = value + %s WHERE name = 'last_id' RETURNING value",
                    (count,),
                )
                row = await cursor.fetchone()
                return int(row[0])

        return int(await self.pool.run("reserving ids", work))

    async def write(self, changes: Sequence[Change]) -> None:
        """``changes`` in one transaction, committed when it returns."""

        async def work(db: Any) -> None:
            async with db.pipeline(), db.transaction(), db.cursor() as cursor:
                for change in changes:
                    await _WRITERS[type(change)](cursor, change)

        await self.pool.run(action_of(changes), work)

    async def probe(self) -> None:
        """A write that changes nothing the chat reads: it fails exactly when a real
        write would (server down, connection lost, read-only, disk full)."""

        async def work(db: Any) -> None:
            async with db.transaction():
                await db.execute(
                    "INSERT INTO counters VALUES ('probe', 0) ON CONFLICT (name) DO UPDATE "
                    "SET value = 0"
                )

        await self.pool.run("checking the database", work)

    async def close(self) -> None:
        await self.pool.close()


async def _bump(cursor: Any, used: int) -> None:
    """Remember the highest id ever used, so a restart never reuses a deleted one."""
    await cursor.execute(
        "INSERT INTO counters VALUES ('last_id', %s) ON CONFLICT (name) DO UPDATE SET "
        "value = GREATEST(counters.value, excluded.value)",
        (used,),
    )


async def _store(cursor: Any, change: Store) -> None:
    msg = change.message
    await cursor.execute(
        "INSERT INTO messages VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "sender = excluded.sender, recipient = excluded.recipient, text = excluded.text, "
        "ts = excluded.ts, is_all = excluded.is_all",
        (msg.id, msg.sender, msg.recipient, msg.text, msg.ts, msg.all),
    )
    await _bump(cursor, msg.id)


async def _delete(cursor: Any, change: Delete) -> None:
    await cursor.execute("DELETE FROM messages WHERE id = ANY(%s)", (list(change.ids),))


async def _add_user(cursor: Any, change: AddUser) -> None:
    await cursor.execute("INSERT INTO users VALUES (%s) ON CONFLICT DO NOTHING", (change.user,))


async def _save_room(cursor: Any, change: StoreRoom) -> None:
    await cursor.execute(
        "INSERT INTO room_names VALUES (%s) ON CONFLICT DO NOTHING", (change.room,)
    )
    await cursor.execute("DELETE FROM rooms WHERE room = %s", (change.room,))
    if change.members:
        await cursor.executemany(
            "INSERT INTO rooms VALUES (%s, %s)", [(change.room, m) for m in change.members]
        )


async def _store_room_message(cursor: Any, change: StoreRoomMessage) -> None:
    msg = change.message
    await cursor.execute(
        "INSERT INTO room_messages VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (msg.id, msg.room, msg.sender, msg.text, msg.ts),
    )
    await cursor.execute(
        "DELETE FROM room_messages WHERE room = %s AND id NOT IN (SELECT id FROM "
        "room_messages WHERE room = %s ORDER BY id DESC LIMIT %s)",
        (msg.room, msg.room, change.keep),
    )
    await _bump(cursor, msg.id)


_WRITERS: dict[type, Callable[[Any, Any], Awaitable[None]]] = {
    Store: _store,
    Delete: _delete,
    AddUser: _add_user,
    StoreRoom: _save_room,
    StoreRoomMessage: _store_room_message,
}
