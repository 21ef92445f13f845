"""The chat's ``Storage`` in PostgreSQL (psycopg 3), for ``--db postgresql://...``.

The same narrow interface and the same promises as ``SQLiteStorage``: ``write`` applies
the core's changes in one transaction and returns only once it is committed (so nothing
reported stored is lost), and the highest id ever used or reserved is kept in
``counters``, from which each process claims its blocks of ids atomically. It is
synchronous on purpose: the ``Storage`` protocol is called from the one writer thread
(``writer.py``), which already groups every queued request into one transaction, so one
connection in that thread does what an async pool would, with no second code path in
the chat server.

The schema is created, and later versions migrated, when the storage opens: each
migration runs once, in order, recorded in ``schema_version``, under an advisory lock
so that two processes starting at once do not both apply it. A connection found
broken is replaced, once, at once (the writes are idempotent: repeating one is safe);
when the server does not answer, the request fails with a ``StorageError`` and the next
call connects again, which is how the chat's probe notices the database is back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from zCLI import PostgresDatabase, is_postgres_url, redacted

from .core import (
    AddUser,
    Change,
    Delete,
    Store,
    StoreRoom,
    StoreRoomMessage,
)
from .storage import UNAVAILABLE, StoredRows, action_of

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


class PostgresStorage(StoredRows):
    """zCLI's ``PostgresDatabase`` (one connection, replaced when found broken), used by
    the writer thread and by reads at start-up and after an outage."""

    def __init__(self, url: str, connect_timeout: float = 2.0) -> None:
        self.database = PostgresDatabase(
            url,
            open_error="The chat database {name} cannot be opened: {reason}.",
            run_error=UNAVAILABLE[:-1] + " ({action}: {reason}).",
            connect_timeout=connect_timeout,
        )
        self.url, self.name = url, self.database.name
        self.database.opened(MIGRATIONS, _LOCK_KEY, "schema_version")

    def _run(self, action: str, work: Callable[[Any], Any]) -> Any:
        return self.database.run(action, work)

    _param = "%s"

    def _read(self, action: str, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        return self._run(action, lambda db: list(db.execute(sql, args).fetchall()))

    def claim_ids(self, count: int) -> int:
        """Record ``count`` more ids as used and return the last of them: one atomic
        ``UPDATE ... RETURNING``, so no two processes ever get the same block."""

        def work(db: Any) -> int:
            with db.transaction():
                db.execute("INSERT INTO counters VALUES ('last_id', 0) ON CONFLICT DO NOTHING")
                row = db.execute(
                    "UPDATE counters SET value = value + %s WHERE name = 'last_id' RETURNING value",
                    (count,),
                ).fetchone()
                return int(row[0])

        return self._run("reserving ids", work)

    def write(self, changes: Sequence[Change]) -> None:
        def work(db: Any) -> None:
            with db.transaction(), db.cursor() as cursor:
                for change in changes:
                    _WRITERS[type(change)](cursor, change)

        self._run(action_of(changes), work)

    def probe(self) -> None:
        """A write that changes nothing the chat reads: it fails exactly when a real
        write would (server down, connection lost, read-only, disk full)."""

        def work(db: Any) -> None:
            with db.transaction():
                db.execute(
                    "INSERT INTO counters VALUES ('probe', 0) ON CONFLICT (name) DO UPDATE "
                    "SET value = 0"
                )

        self._run("checking the database", work)

    def close(self) -> None:
        self.database.close()


def _bump(cursor: Any, used: int) -> None:
    """Remember the highest id ever used, so a restart never reuses a deleted one."""
    cursor.execute(
        "INSERT INTO counters VALUES ('last_id', %s) ON CONFLICT (name) DO UPDATE SET "
        "value = GREATEST(counters.value, excluded.value)",
        (used,),
    )


def _store(cursor: Any, change: Store) -> None:
    msg = change.message
    cursor.execute(
        "INSERT INTO messages VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET "
        "sender = excluded.sender, recipient = excluded.recipient, text = excluded.text, "
        "ts = excluded.ts, is_all = excluded.is_all",
        (msg.id, msg.sender, msg.recipient, msg.text, msg.ts, msg.all),
    )
    _bump(cursor, msg.id)


def _delete(cursor: Any, change: Delete) -> None:
    cursor.execute("DELETE FROM messages WHERE id = ANY(%s)", (list(change.ids),))


def _add_user(cursor: Any, change: AddUser) -> None:
    cursor.execute("INSERT INTO users VALUES (%s) ON CONFLICT DO NOTHING", (change.user,))


def _save_room(cursor: Any, change: StoreRoom) -> None:
    cursor.execute("INSERT INTO room_names VALUES (%s) ON CONFLICT DO NOTHING", (change.room,))
    cursor.execute("DELETE FROM rooms WHERE room = %s", (change.room,))
    if change.members:
        cursor.executemany(
            "INSERT INTO rooms VALUES (%s, %s)", [(change.room, m) for m in change.members]
        )


def _store_room_message(cursor: Any, change: StoreRoomMessage) -> None:
    msg = change.message
    cursor.execute(
        "INSERT INTO room_messages VALUES (%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
        (msg.id, msg.room, msg.sender, msg.text, msg.ts),
    )
    cursor.execute(
        "DELETE FROM room_messages WHERE room = %s AND id NOT IN (SELECT id FROM "
        "room_messages WHERE room = %s ORDER BY id DESC LIMIT %s)",
        (msg.room, msg.room, change.keep),
    )
    _bump(cursor, msg.id)


_WRITERS: dict[type, Callable[[Any, Any], None]] = {
    Store: _store,
    Delete: _delete,
    AddUser: _add_user,
    StoreRoom: _save_room,
    StoreRoomMessage: _store_room_message,
}
