"""Where zAuth's users live: a YAML file, or a ``users`` table in the app's SQLite file.

``open_user_store`` picks by suffix: ``.sqlite3``, ``.sqlite`` or ``.db`` is a database
(the table is created if missing, so an app can keep its accounts beside its own
tables); anything else is YAML ``{users: {name: {password, role}}}``. Both keep only
scrypt hashes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

import yaml

__all__ = ["SqliteUsers", "UserStore", "YamlUsers", "open_user_store"]

DATABASE_SUFFIXES = (".sqlite3", ".sqlite", ".db")


class UserStore(Protocol):
    def get(self, username: str) -> tuple[str, str] | None:
        """(password hash, role), or None for an unknown user."""

    def put(self, username: str, password_hash: str, role: str) -> None: ...

    def close(self) -> None: ...


class YamlUsers:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        return data if isinstance(data, dict) else {}

    def get(self, username: str) -> tuple[str, str] | None:
        users = self._read().get("users", {})
        record = users.get(username) if isinstance(users, dict) else None
        if not isinstance(record, dict) or not isinstance(record.get("password"), str):
            return None
        return record["password"], str(record.get("role", "user"))

    def put(self, username: str, password_hash: str, role: str) -> None:
        data = self._read()
        data.setdefault("users", {})[username] = {"password": password_hash, "role": role}
        self.path.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")

    def close(self) -> None:
        return None


class SqliteUsers:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._lock, self._db:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS users "
                "(name TEXT PRIMARY KEY, password TEXT NOT NULL, role TEXT NOT NULL)"
            )

    def get(self, username: str) -> tuple[str, str] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT password, role FROM users WHERE name = ?", (username,)
            ).fetchone()
        return (str(row[0]), str(row[1])) if row else None

    def put(self, username: str, password_hash: str, role: str) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO users VALUES (?, ?, ?)", (username, password_hash, role)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_user_store(path: Path) -> UserStore:
    if path.suffix.lower() in DATABASE_SUFFIXES:
        return SqliteUsers(path)
    return YamlUsers(path)
