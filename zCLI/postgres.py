"""One PostgreSQL connection that outlives a server restart, for zAuth's accounts and
plugins' storage (``postgresql://USER:PASSWORD@HOST:PORT/DB``).

psycopg 3 comes with the ``cluster`` extra and is imported only when a database is
opened; without it, opening one is a ``StorageError`` that names the install command.
``run(action, work)`` calls ``work(connection)`` under a lock (threads share the
connection). A connection found broken (the server restarted, an idle connection cut)
is replaced and ``work`` runs once more on a fresh one, so callers keep each ``work``
idempotent; any other failure, or a second one, is a ``StorageError`` whose sentence
names the action and the driver's reason, and the next call connects again. That is
how a probe notices the server is back. ``migrate`` applies numbered schema versions
once each, in order, under an advisory lock, so two processes starting at once do not
both apply one. Sentences and logs never show the password (``redacted``).
``PostgresPool`` (``postgres_pool.py``) is its asyncio counterpart: a connection pool,
for a store that serves many requests at once from the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from .exceptions import StorageError

__all__ = ["PostgresDatabase", "is_postgres_url", "redacted"]

R = TypeVar("R")
_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(url: str) -> bool:
    return url.startswith(_SCHEMES)


def redacted(url: str) -> str:
    """``url`` without its password, for sentences and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def reason(exc: BaseException) -> str:
    """The first line of a driver error, without a trailing period."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__).rstrip(".")


def checked_version(psycopg: Any, found: int | None, migrations: Sequence[str]) -> int:
    """The schema version a database records (``found``, None for a new one), refused
    with psycopg's ``DataError`` when it is newer than the ``migrations`` known here."""
    current = found or 0
    if current > len(migrations):
        raise psycopg.DataError(
            f"its schema is version {current}, newer than this zCLI knows ({len(migrations)})"
        )
    return current


class PostgresDatabase:
    """A connection to ``url`` used under a lock; ``open_error`` and ``run_error`` are
    the sentences of its failures, formatted with ``name`` (the redacted URL),
    ``action`` and ``reason``."""

    def __init__(
        self,
        url: str,
        *,
        open_error: str = "The database {name} cannot be opened: {reason}.",
        run_error: str = "The database {name} cannot be used ({action}: {reason}).",
        connect_timeout: float = 2.0,
    ) -> None:
        self.url = url
        self.name = redacted(url)
        self.open_error, self.run_error = open_error, run_error
        self.connect_timeout = connect_timeout
        try:
            import psycopg
        except ImportError:
            raise StorageError(
                f"{self.name} is a PostgreSQL database, but psycopg is not installed: "
                "pip install 'zCLI[cluster]'."
            ) from None
        self._psycopg = psycopg
        self._lock = threading.Lock()
        self._db: Any = None  # psycopg.Connection, or None until (re)connected

    def opened(self, migrations: Sequence[str], lock_key: int, table: str) -> None:
        """Connect and bring the schema to the newest version (``migrate``); a failure
        closes the connection and raises ``open_error``."""
        try:
            with self._lock:
                self._migrate(self._connection(), migrations, lock_key, table)
        except (self._psycopg.Error, OSError) as exc:
            self.close()
            raise StorageError(self.open_error.format(name=self.name, reason=reason(exc))) from None

    def _connection(self) -> Any:
        if self._db is None or self._db.closed:
            self._db = self._psycopg.connect(
                self.url, autocommit=True, connect_timeout=max(1, round(self.connect_timeout))
            )
        return self._db

    def _migrate(self, db: Any, migrations: Sequence[str], lock_key: int, table: str) -> None:
        """Version N is ``migrations[N - 1]``; the versions applied are rows of ``table``."""
        with db.transaction():
            db.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
            row = db.execute(f"SELECT max(version) FROM {table}").fetchone()
            current = checked_version(self._psycopg, row[0], migrations)
            for version in range(current + 1, len(migrations) + 1):
                db.execute(migrations[version - 1])
                db.execute(f"INSERT INTO {table} VALUES (%s)", (version,))

    def run(self, action: str, work: Callable[[Any], R]) -> R:
        """``work(connection)`` under the lock, once more on a fresh connection if the
        first found it broken; ``run_error`` as a StorageError otherwise."""
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
                        sentence = self.run_error.format(
                            name=self.name, action=action, reason=reason(exc)
                        )
                        raise StorageError(sentence) from None
            raise AssertionError("unreachable: the second attempt returns or raises")

    def _drop(self) -> None:
        try:
            self._db.close()
        except Exception:  # a broken connection may fail to close; it is gone either way
            pass
        self._db = None

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._drop()
