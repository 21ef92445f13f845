"""The chat's ``Storage`` in PostgreSQL (psycopg 3), for ``--db postgresql://...``.

The same narrow interface and the same promises as ``SQLiteStorage``: ``write`` applies
the core's changes in one transaction and returns only once it is committed (so nothing
reported stored is lost), and the highest id ever used or reserved is kept in
``counters`` (the core reserves ids in blocks). It is synchronous on purpose: the
``Storage`` protocol is called from the one writer thread (``writer.py``), which already
groups every queued request into one transaction, so one connection in that thread does
what an async pool would, with no second code path in the chat server.

The schema is created, and later versions migrated, when the storage opens: each
migration runs once, in order, recorded in ``schema_version``, under an advisory lock
so that two processes starting at once do not both apply it. A connection found
broken is replaced, once, at once (the writes are idempotent: repeating one is safe);
when the server does not answer, the request fails with a ``StorageError`` and the next
call connects again, which is how the chat's probe notices the database is back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from zCLI import StorageError

from .core import (
    AddUser,
    Change,
    Delete,
    ReserveIds,
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
R = TypeVar("R")
_LOCK_KEY = 0x7A436861  # "zCha": the advisory lock migrations hold
_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(db: str) -> bool:
    return db.startswith(_SCHEMES)


def redacted(url: str) -> str:
    """``url`` without its password, for sentences and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


class PostgresStorage(StoredRows):
    """One connection, used by the writer thread (and by reads at start-up and after
    an outage, which the lock keeps apart); it reconnects when a call finds it lost."""

    def __init__(self, url: str, connect_timeout: float = 2.0) -> None:
        try:
            import psycopg
        except ImportError:
            raise StorageError(
                "The chat database is PostgreSQL, but psycopg is not installed: "
                "pip install 'zCLI[cluster]'."
            ) from None
        self._psycopg = psycopg
        self.url = url
        self.name = redacted(url)
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._db: Any = None  # psycopg.Connection, or None until (re)connected
        try:
            with self._lock:
                self._migrate(self._connection())
        except (psycopg.Error, OSError) as exc:
            self.close()
            raise StorageError(
                f"The chat database {self.name} cannot be opened: {_reason(exc)}."
            ) from None

    def _connection(self) -> Any:
        if self._db is None or self._db.closed:
            self._db = self._psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout))
            )
        return self._db

    def _migrate(self, db: Any) -> None:
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT max(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise self._psycopg.DataError(
                    f"its schema is version {current}, newer than this zCLI knows "
                    f"({len(MIGRATIONS)})"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                db.execute(MIGRATIONS[version - 1])
                db.execute("INSERT INTO schema_version VALUES (%s)", (version,))

    def _run(self, action: str, work: Callable[[Any], R]) -> R:
        """``work(connection)`` under the lock; a database error becomes the sentence.
        A connection found broken (the server restarted, an idle connection cut) is
        replaced and ``work`` runs once more on a fresh one, so a server that is back
        costs the chat no outage: every write here is idempotent, so repeating one that
        committed just before the connection broke changes nothing."""
        with self._lock:
            for attempt in range(2):
                fresh = self._db is None or self._db.closed
                try:
                    return work(self._connection())
                except (self._psycopg.Error, OSError) as exc:
                    broken = self._db is not None and (self._db.broken or self._db.closed)
                    if broken:
                        self._drop()
                    if not (broken and not fresh and attempt == 0):
                        sentence = f"{UNAVAILABLE[:-1]} ({action}: {_reason(exc)})."
                        raise StorageError(sentence) from None
            raise AssertionError("unreachable: the second attempt returns or raises")

    def _drop(self) -> None:
        try:
            self._db.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            pass
        self._db = None

    def _read(self, action: str, sql: str) -> list[tuple[Any, ...]]:
        return self._run(action, lambda db: list(db.execute(sql).fetchall()))

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
        with self._lock:
            if self._db is not None:
                self._drop()


def _reason(exc: BaseException) -> str:
    """The first line of a driver error, without a trailing period."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


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


def _reserve(cursor: Any, change: ReserveIds) -> None:
    _bump(cursor, change.upto)


_WRITERS: dict[type, Callable[[Any, Any], None]] = {
    Store: _store,
    Delete: _delete,
    AddUser: _add_user,
    StoreRoom: _save_room,
    StoreRoomMessage: _store_room_message,
    ReserveIds: _reserve,
}
