"""Where the chat keeps what must survive a restart, behind a narrow interface.

The core asks for little: write these changes (store a message, delete ids, add a
user, save a room, keep a room message) in one transaction; claim a block of ids no
other process will ever hand out; read what is stored for everyone (or one user), the
users, the rooms and their recent messages. ``SQLiteStorage`` is one file in WAL mode
(the ``Storage`` protocol, called from the writer thread); ``PostgresStorage``
(``postgres.py``) offers the same methods as coroutines on a connection pool, called
from the writer task. ``open_writer`` (``writer.py``) picks one from ``--db``. Every
failure is a ``zCLI.StorageError`` whose sentence names the action and the store.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from zCLI import StorageError

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

__all__ = [
    "UNAVAILABLE",
    "SQLiteStorage",
    "Saved",
    "Storage",
    "StoredRows",
    "action_of",
    "messages_of",
    "rooms_of",
]

UNAVAILABLE = "The chat storage is unavailable; try again later."

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, sender TEXT NOT NULL, recipient TEXT NOT NULL,
    text TEXT NOT NULL, ts REAL NOT NULL, is_all INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS messages_recipient ON messages (recipient, id);
CREATE TABLE IF NOT EXISTS rooms (room TEXT NOT NULL, member TEXT NOT NULL,
    PRIMARY KEY (room, member));
CREATE TABLE IF NOT EXISTS room_names (room TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS room_messages (
    id INTEGER PRIMARY KEY, room TEXT NOT NULL, sender TEXT NOT NULL,
    text TEXT NOT NULL, ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Saved:
    """What a chat server loads at start and after an outage: everything durable, and
    a first block of ids claimed for it (``last``, the last of them)."""

    users: list[str]
    last: int
    stored: list[Message]
    rooms: list[tuple[str, list[str]]]
    room_messages: list[RoomMessage]


class Storage(Protocol):
    """What the chat server needs from a durable store. ``write`` applies the core's
    changes in one transaction, all or none; every failure is a ``StorageError``."""

    def write(self, changes: Sequence[Change]) -> None: ...
    def claim_ids(self, count: int) -> int: ...
    def probe(self) -> None: ...
    def saved(self, block: int) -> Saved: ...
    def users(self) -> list[str]: ...
    def stored(self) -> list[Message]: ...
    def stored_for(self, user: str) -> list[Message]: ...
    def rooms(self) -> list[tuple[str, list[str]]]: ...
    def room(self, name: str) -> list[str] | None: ...
    def room_messages(self) -> list[RoomMessage]: ...
    def next_id(self) -> int: ...
    def close(self) -> None: ...


class StoredRows:
    """The reads of a synchronous SQL store; a subclass provides ``_read(action, sql,
    args)`` and ``claim_ids``. ``PostgresStorage`` runs the same queries as coroutines
    and turns rows into messages and rooms with the same helpers (``messages_of``,
    ``rooms_of``)."""

    def _read(self, action: str, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def users(self) -> list[str]:
        return [
            row[0] for row in self._read("reading users", "SELECT name FROM users ORDER BY name")
        ]

    def claim_ids(self, count: int) -> int:
        raise NotImplementedError

    def stored(self) -> list[Message]:
        return messages_of(
            self._read("reading stored messages", "SELECT * FROM messages ORDER BY id")
        )

    def stored_for(self, user: str) -> list[Message]:
        """What is stored for ``user``, by whichever process stored it (a sign-in reads
        it when several processes share the database)."""
        sql = "SELECT * FROM messages WHERE recipient = ? ORDER BY id"
        return messages_of(self._read("reading stored messages", sql, (user,)))

    def rooms(self) -> list[tuple[str, list[str]]]:
        names = self._read("reading rooms", "SELECT room FROM room_names ORDER BY room")
        pairs = self._read("reading rooms", "SELECT room, member FROM rooms ORDER BY member")
        return rooms_of(names, pairs)

    def room(self, name: str) -> list[str] | None:
        """The members of room ``name``, or None when there is no such room."""
        if not self._read("reading rooms", "SELECT 1 FROM room_names WHERE room = ?", (name,)):
            return None
        sql = "SELECT member FROM rooms WHERE room = ? ORDER BY member"
        return [row[0] for row in self._read("reading rooms", sql, (name,))]

    def room_messages(self) -> list[RoomMessage]:
        rows = self._read("reading room messages", "SELECT * FROM room_messages ORDER BY id")
        return [RoomMessage(*row) for row in rows]

    def next_id(self) -> int:
        """One past the highest id ever stored or reserved."""
        rows = self._read("reading ids", "SELECT value FROM counters WHERE name = 'last_id'")
        return int(rows[0][0] if rows else 0) + 1

    def saved(self, block: int) -> Saved:
        """Everything durable, with a block of ``block`` ids claimed first."""
        users = self.users()
        last = self.claim_ids(block)
        return Saved(users, last, self.stored(), self.rooms(), self.room_messages())


def messages_of(rows: Sequence[tuple[Any, ...]]) -> list[Message]:
    """The rows of ``messages`` (``SELECT *``) as the core's messages."""
    return [Message(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]


def rooms_of(
    names: Sequence[tuple[Any, ...]], pairs: Sequence[tuple[Any, ...]]
) -> list[tuple[str, list[str]]]:
    """Each room of ``room_names`` with its members (``pairs`` of ``rooms``, in order)."""
    return [(name, [m for r, m in pairs if r == name]) for (name,) in names]


class SQLiteStorage(StoredRows):
    """One SQLite file (WAL); a write is committed (and synced) before it returns.

    It is used from one writer thread plus reads at start-up; the lock makes any other
    use safe as well.
    """

    def __init__(self, path: Path, busy_timeout: float = 1.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=busy_timeout)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"The chat database {self.path} cannot be opened: {exc}.") from None

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if not self.path.exists():  # removed under us: writing would go nowhere
                raise StorageError(f"{UNAVAILABLE[:-1]} ({action}: {self.path} is gone).")
            try:
                with self._db:
                    yield self._db
            except sqlite3.Error as exc:
                raise StorageError(f"{UNAVAILABLE[:-1]} ({action}: {exc}).") from None

    def _read(self, action: str, sql: str, args: tuple[object, ...] = ()) -> list[tuple]:  # type: ignore[type-arg]  # rows are heterogeneous
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise StorageError(f"{UNAVAILABLE[:-1]} ({action}: {exc}).") from None

    def write(self, changes: Sequence[Change]) -> None:
        with self._transaction(action_of(changes)) as db:
            for change in changes:
                _WRITERS[type(change)](db, change)

    def claim_ids(self, count: int) -> int:
        """Record ``count`` more ids as used and return the last of them: the block
        ``last - count + 1 .. last`` is this caller's alone (one write transaction)."""
        with self._transaction("reserving ids") as db:
            db.execute("INSERT OR IGNORE INTO counters VALUES ('last_id', 0)")
            row = db.execute(
                "UPDATE counters SET value = value + ? WHERE name = 'last_id' RETURNING value",
                (count,),
            ).fetchone()
            return int(row[0])

    def probe(self) -> None:
        """A write that changes nothing the chat reads: it fails exactly when a real
        write would (file gone, locked, read-only, disk full)."""
        with self._transaction("checking the database") as db:
            db.execute("INSERT OR REPLACE INTO counters VALUES ('probe', 0)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


def action_of(changes: Sequence[Change]) -> str:
    """What a failed write was doing, for its sentence."""
    kinds = {type(change) for change in changes}
    if len(kinds) == 1:
        return _ACTIONS[kinds.pop()]
    return "writing changes"


def _bump(db: sqlite3.Connection, used: int) -> None:
    """Remember the highest id ever used, so a restart never reuses a deleted one."""
    db.execute(
        "INSERT INTO counters VALUES ('last_id', ?) ON CONFLICT(name) DO UPDATE SET "
        "value = max(value, excluded.value)",
        (used,),
    )


def _store(db: sqlite3.Connection, change: Store) -> None:
    msg = change.message
    db.execute(
        "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?)",
        (msg.id, msg.sender, msg.recipient, msg.text, msg.ts, int(msg.all)),
    )
    _bump(db, msg.id)


def _delete(db: sqlite3.Connection, change: Delete) -> None:
    db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in change.ids])


def _add_user(db: sqlite3.Connection, change: AddUser) -> None:
    db.execute("INSERT OR IGNORE INTO users VALUES (?)", (change.user,))


def _save_room(db: sqlite3.Connection, change: StoreRoom) -> None:
    db.execute("INSERT OR IGNORE INTO room_names VALUES (?)", (change.room,))
    db.execute("DELETE FROM rooms WHERE room = ?", (change.room,))
    db.executemany("INSERT INTO rooms VALUES (?, ?)", [(change.room, m) for m in change.members])


def _store_room_message(db: sqlite3.Connection, change: StoreRoomMessage) -> None:
    msg = change.message
    db.execute(
        "INSERT INTO room_messages VALUES (?, ?, ?, ?, ?)",
        (msg.id, msg.room, msg.sender, msg.text, msg.ts),
    )
    db.execute(
        "DELETE FROM room_messages WHERE room = ? AND id NOT IN (SELECT id FROM "
        "room_messages WHERE room = ? ORDER BY id DESC LIMIT ?)",
        (msg.room, msg.room, change.keep),
    )
    _bump(db, msg.id)


_WRITERS: dict[type, Callable[[sqlite3.Connection, Any], None]] = {
    Store: _store,
    Delete: _delete,
    AddUser: _add_user,
    StoreRoom: _save_room,
    StoreRoomMessage: _store_room_message,
}
_ACTIONS: dict[type, str] = {
    Store: "storing a message",
    Delete: "deleting messages",
    AddUser: "adding a user",
    StoreRoom: "saving a room",
    StoreRoomMessage: "storing a room message",
}
