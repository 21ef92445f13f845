"""Where zAuth's users live: a YAML file, a ``users`` table in the app's SQLite file, or
a ``zcli_users`` table in PostgreSQL (``auth.users_database``), which the processes
of one service share across machines.

``open_user_store`` picks a file store by suffix: ``.sqlite3``, ``.sqlite`` or ``.db``
is a database (the table is created if missing, so an app can keep its accounts beside
its own tables); anything else is YAML ``{users: {name: {password, role}}}``. Every
store keeps only scrypt hashes.

Every store is checked when it opens (readable, parseable, and writable by a real
write), and every failed read or write raises ``StorageError`` naming the store (a
database URL without its password), so a broken store is found at start-up and never
mistaken for "no such user". PostgreSQL connects again by itself after an outage. The YAML file
is replaced atomically (mode 0600) and re-parsed only when it changes on disk, since
``zAuth.verify`` looks a user up for every token.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

import yaml

from .exceptions import StorageError
from .postgres import PostgresDatabase
from .statefiles import check_database, check_writable_folder, storage_error, write_atomically

__all__ = ["PostgresUsers", "SqliteUsers", "UserStore", "YamlUsers", "open_user_store"]

DATABASE_SUFFIXES = (".sqlite3", ".sqlite", ".db")


class UserStore(Protocol):
    """What zAuth needs from a user store; failures raise StorageError."""

    where: str  # the file, or the database URL without its password

    def get(self, username: str) -> tuple[str, str] | None:
        """(password hash, role), or None for an unknown user."""

    def put(self, username: str, password_hash: str, role: str) -> None:
        """Create or replace the user."""

    def remove(self, username: str) -> bool:
        """Delete the user; False when there was no such user."""

    def close(self) -> None: ...


class YamlUsers:
    """Users in a YAML file, re-read when its inode, size or modification time change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()  # zServer's threads, the loop and the hash pool
        self._seen: tuple[int, int, int] | None = None
        self._document: dict[str, Any] = {}
        with self._lock:
            self._load()
        check_writable_folder(path.parent, "the users file's folder")

    def _load(self) -> dict[str, Any]:
        """The whole document (call with the lock held); parsed again only if changed."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            self._seen, self._document = None, {}
            return self._document
        except OSError as exc:
            raise storage_error("read the users file", self.path, exc) from None
        seen = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
        if seen == self._seen:
            return self._document
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise storage_error("read the users file", self.path, exc) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise storage_error(
                "read the users file", self.path, f"not valid YAML{where}"
            ) from None
        data = {} if data is None else data
        if isinstance(data, dict) and data.get("users") is None:
            data = {**data, "users": {}}  # "users:" with no one under it yet
        if not isinstance(data, dict) or not isinstance(data["users"], dict):
            raise storage_error(
                "read the users file", self.path, "expected 'users:' holding a mapping of names"
            )
        self._seen, self._document = seen, data
        return data

    def get(self, username: str) -> tuple[str, str] | None:
        with self._lock:
            users = self._load().get("users", {})
        record = users.get(username)
        if not isinstance(record, dict) or not isinstance(record.get("password"), str):
            return None
        return record["password"], str(record.get("role", "user"))

    def put(self, username: str, password_hash: str, role: str) -> None:
        with self._lock:
            document = dict(self._load())
            users = dict(document.get("users", {}))
            users[username] = {"password": password_hash, "role": role}
            self._write({**document, "users": users})

    def remove(self, username: str) -> bool:
        with self._lock:
            document = dict(self._load())
            users = dict(document.get("users", {}))
            if users.pop(username, None) is None:
                return False
            self._write({**document, "users": users})
            return True

    def _write(self, document: dict[str, Any]) -> None:
        text = yaml.safe_dump(document, sort_keys=True, allow_unicode=True)
        write_atomically(self.path, text.encode("utf-8"), "the users file")
        self._seen = None  # parse what is on disk next time, not what we meant to write

    def close(self) -> None:
        return None


class SqliteUsers:
    """Users in a ``users`` table; one connection shared by threads under a lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            raise storage_error("open the users database", path, exc) from None
        try:
            with self._db:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS users "
                    "(name TEXT PRIMARY KEY, password TEXT NOT NULL, role TEXT NOT NULL)"
                )
        except sqlite3.Error as exc:
            self._db.close()
            raise storage_error("write the users database", path, exc) from None
        try:
            check_database(self._db, path, "the users database")
        except StorageError:
            self._db.close()
            raise

    def get(self, username: str) -> tuple[str, str] | None:
        try:
            with self._lock:
                row = self._db.execute(
                    "SELECT password, role FROM users WHERE name = ?", (username,)
                ).fetchone()
        except sqlite3.Error as exc:
            raise storage_error("read the users database", self.path, exc) from None
        return (str(row[0]), str(row[1])) if row else None

    def put(self, username: str, password_hash: str, role: str) -> None:
        self._write(
            "INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (username, password_hash, role)
        )

    def remove(self, username: str) -> bool:
        return self._write("DELETE FROM users WHERE name = ?", (username,)) > 0

    def _write(self, statement: str, values: tuple[str, ...]) -> int:
        """Run one statement in its own transaction; the number of rows it changed."""
        try:
            with self._lock, self._db:
                return self._db.execute(statement, values).rowcount
        except sqlite3.Error as exc:
            raise storage_error("write the users database", self.path, exc) from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PostgresUsers:
    """Users in the ``zcli_users`` table of a PostgreSQL database, created (and later
    migrated) when the store opens, so an app's own tables can live beside it."""

    MIGRATIONS = (
        "CREATE TABLE zcli_users (name TEXT PRIMARY KEY, password TEXT NOT NULL, "
        "role TEXT NOT NULL)",
    )
    LOCK_KEY = 0x7A417574  # "zAut": the advisory lock its migrations hold

    def __init__(self, url: str, connect_timeout: float = 2.0) -> None:
        self.database = PostgresDatabase(
            url,
            open_error="Cannot open the users database {name}: {reason}.",
            run_error="Cannot use the users database {name} ({action}: {reason}).",
            connect_timeout=connect_timeout,
        )
        self.where = self.database.name
        self.database.opened(self.MIGRATIONS, self.LOCK_KEY, "zcli_users_schema")
        self.database.run("checking it", self._check)

    @staticmethod
    def _check(db: Any) -> None:
        """A real write that changes nothing, like the file stores' start-up check."""
        with db.transaction():
            db.execute("DELETE FROM zcli_users WHERE false")

    def get(self, username: str) -> tuple[str, str] | None:
        def work(db: Any) -> Any:
            query = "SELECT password, role FROM zcli_users WHERE name = %s"
            return db.execute(query, (username,)).fetchone()

        row = self.database.run("reading a user", work)
        return (str(row[0]), str(row[1])) if row else None

    def put(self, username: str, password_hash: str, role: str) -> None:
        self.database.run(
            "saving a user",
            lambda db: db.execute(
                "INSERT INTO zcli_users VALUES (%s, %s, %s) ON CONFLICT (name) DO UPDATE "
                "SET password = excluded.password, role = excluded.role",
                (username, password_hash, role),
            ),
        )

    def remove(self, username: str) -> bool:
        def work(db: Any) -> int:
            return int(db.execute("DELETE FROM zcli_users WHERE name = %s", (username,)).rowcount)

        return self.database.run("removing a user", work) > 0

    def close(self) -> None:
        self.database.close()


def open_user_store(path: Path) -> UserStore:
    """The store for ``path``; StorageError if it cannot be read or written."""
    if path.suffix.lower() in DATABASE_SUFFIXES:
        return SqliteUsers(path)
    return YamlUsers(path)
