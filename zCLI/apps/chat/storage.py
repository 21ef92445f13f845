"""Where the chat keeps what must survive a restart, behind a narrow interface.

The core asks for little: store this message, what is stored for everyone, delete
these ids, the users, the rooms and their recent messages. ``SQLiteStorage`` is one
file in WAL mode; a networked store implements the same ``Storage`` protocol. Every
failure is a ``zCLI.StorageError`` whose sentence names the action and the file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from zCLI import StorageError

from .core import Message, RoomMessage

__all__ = ["UNAVAILABLE", "SQLiteStorage", "Storage"]

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


class Storage(Protocol):
    """What the chat server needs from a durable store."""

    def add_user(self, user: str) -> None: ...
    def users(self) -> list[str]: ...
    def store(self, message: Message) -> None: ...
    def stored(self) -> list[Message]: ...
    def delete(self, ids: tuple[int, ...]) -> None: ...
    def save_room(self, room: str, members: tuple[str, ...]) -> None: ...
    def rooms(self) -> list[tuple[str, list[str]]]: ...
    def store_room_message(self, message: RoomMessage, keep: int) -> None: ...
    def room_messages(self) -> list[RoomMessage]: ...
    def next_id(self) -> int: ...
    def close(self) -> None: ...


class SQLiteStorage:
    """One SQLite file (WAL); every write is committed before the call returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=1.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"The chat database {self.path} cannot be opened: {exc}.") from None

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
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

    def add_user(self, user: str) -> None:
        with self._write("adding a user") as db:
            db.execute("INSERT OR IGNORE INTO users VALUES (?)", (user,))

    def users(self) -> list[str]:
        return [
            row[0] for row in self._read("reading users", "SELECT name FROM users ORDER BY name")
        ]

    def store(self, message: Message) -> None:
        with self._write("storing a message") as db:
            db.execute(
                "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                (message.id, message.sender, message.recipient, message.text, message.ts,
                 int(message.all)),
            )  # fmt: skip
            self._bump(db, message.id)

    def stored(self) -> list[Message]:
        rows = self._read("reading stored messages", "SELECT * FROM messages ORDER BY id")
        return [Message(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def delete(self, ids: tuple[int, ...]) -> None:
        with self._write("deleting messages") as db:
            db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids])

    def save_room(self, room: str, members: tuple[str, ...]) -> None:
        with self._write("saving a room") as db:
            db.execute("INSERT OR IGNORE INTO room_names VALUES (?)", (room,))
            db.execute("DELETE FROM rooms WHERE room = ?", (room,))
            db.executemany("INSERT INTO rooms VALUES (?, ?)", [(room, m) for m in members])

    def rooms(self) -> list[tuple[str, list[str]]]:
        names = self._read("reading rooms", "SELECT room FROM room_names ORDER BY room")
        pairs = self._read("reading rooms", "SELECT room, member FROM rooms ORDER BY member")
        return [(name, [m for r, m in pairs if r == name]) for (name,) in names]

    def store_room_message(self, message: RoomMessage, keep: int) -> None:
        with self._write("storing a room message") as db:
            db.execute(
                "INSERT INTO room_messages VALUES (?, ?, ?, ?, ?)",
                (message.id, message.room, message.sender, message.text, message.ts),
            )
            db.execute(
                "DELETE FROM room_messages WHERE room = ? AND id NOT IN (SELECT id FROM "
                "room_messages WHERE room = ? ORDER BY id DESC LIMIT ?)",
                (message.room, message.room, keep),
            )
            self._bump(db, message.id)

    def room_messages(self) -> list[RoomMessage]:
        rows = self._read("reading room messages", "SELECT * FROM room_messages ORDER BY id")
        return [RoomMessage(*row) for row in rows]

    def _bump(self, db: sqlite3.Connection, used: int) -> None:
        """Remember the highest id ever stored, so a restart never reuses a deleted one."""
        db.execute(
            "INSERT INTO counters VALUES ('last_id', ?) ON CONFLICT(name) DO UPDATE SET "
            "value = max(value, excluded.value)",
            (used,),
        )

    def next_id(self) -> int:
        rows = self._read("reading ids", "SELECT value FROM counters WHERE name = 'last_id'")
        return (rows[0][0] if rows else 0) + 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
