"""A psycopg 3 asyncio connection pool to one PostgreSQL database that rides out its
outages (``postgresql://USER:PASSWORD@HOST:PORT/DB``), for stores that serve many
requests at once from the event loop (zChat's).

psycopg and psycopg-pool come with the ``cluster`` extra and are imported only when a
pool is made; without them it is a ``StorageError`` that names the install command.
``opened(migrations, lock_key, table)`` connects once, brings the schema to the newest
version (``PostgresDatabase``'s rules: numbered versions, each applied once, in order,
under an advisory lock) and starts a ``psycopg_pool.AsyncConnectionPool`` of ``size``
connections. Every connection attempt is bounded by ``connect_timeout``.

``run(action, work)`` awaits ``work(connection)`` on a pooled connection (autocommit:
``work`` opens its own transaction). When that connection is found broken (the server
restarted, an idle connection cut), or none is free within ``wait_timeout``, ``work``
runs once more, at once, on a connection of its own (at most ``size`` such connections
at a time: a pool that is only busy grows to twice its size, no further), so callers
keep each ``work`` idempotent; a database that is already back costs no error. When
that fails too, the database is taken to be away: the pool is closed (its waiters fail
at once, its reconnection attempts stop) and the failure is a ``StorageError`` whose
sentence names the action and the driver's reason. Any other failure (the server
refused the work on a sound connection) is that ``StorageError`` at once, and the pool
stays.

While there is no pool, every ``run`` connects on its own: it fails as fast as the
server refuses, and the first one that succeeds starts a fresh pool. That is how a
probe notices the database is back, with no reconnection backoff to wait out. Sentences
and logs never show the password (``redacted``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .exceptions import StorageError
from .postgres import checked_version, reason, redacted

__all__ = ["PostgresPool"]

R = TypeVar("R")
log = logging.getLogger("zCLI.postgres")


class PostgresPool:
    """``size`` pooled connections to ``url``; ``open_error`` and ``run_error`` are the
    sentences of its failures, formatted with ``name`` (the redacted URL), ``action``
    and ``reason``. ``application`` names its connections in ``pg_stat_activity``
    unless the URL names them (``application_name``)."""

    def __init__(
        self,
        url: str,
        *,
        size: int = 4,
        open_error: str = "The database {name} cannot be opened: {reason}.",
        run_error: str = "The database {name} cannot be used ({action}: {reason}).",
        connect_timeout: float = 2.0,
        wait_timeout: float = 5.0,
        application: str | None = None,
    ) -> None:
        self.url = url
        self.name = redacted(url)
        self.size = size
        self.open_error, self.run_error = open_error, run_error
        self.connect_timeout, self.wait_timeout = connect_timeout, wait_timeout
        try:
            import psycopg
            import psycopg_pool
        except ImportError as exc:
            raise StorageError(
                f"{self.name} is a PostgreSQL database, but {exc.name} is not installed: "
                "pip install 'zCLI[cluster]'."
            ) from None
        self._psycopg, self._psycopg_pool = psycopg, psycopg_pool
        self._errors = (psycopg.Error, OSError)  # pool errors are psycopg's OperationalError
        self._kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(connect_timeout)),
        }
        if application is not None and "application_name" not in _conninfo(psycopg, url):
            self._kwargs["application_name"] = application
        self._pool: Any = None  # psycopg_pool.AsyncConnectionPool, or None while away
        self._own = asyncio.Semaphore(size)  # connections of their own, at most ``size``
        self._closing: set[asyncio.Task[None]] = set()  # pools given up, closing
        self._closed = False

    async def opened(self, migrations: Sequence[str], lock_key: int, table: str) -> None:
        """Connect, bring the schema to the newest version, start the pool; a failure
        raises ``open_error``."""
        try:
            async with await self._connect() as db:
                await _migrate(self._psycopg, db, migrations, lock_key, table)
        except self._errors as exc:
            raise StorageError(self.open_error.format(name=self.name, reason=reason(exc))) from None
        await self._start_pool()

    async def run(self, action: str, work: Callable[[Any], Awaitable[R]]) -> R:
        """``work(connection)`` on a pooled connection, once more on a connection of
        its own if that one was broken or none came; ``run_error`` otherwise."""
        pool = self._pool
        if pool is not None:
            used: Any = None
            try:
                async with pool.connection() as db:
                    used = db
                    return await work(db)
            except self._errors as exc:
                if used is not None and not (used.broken or used.closed):
                    raise self._failure(action, exc) from None
        try:
            async with self._own, await self._connect() as db:
                result = await work(db)
        except self._errors as exc:
            self._give_up_pool()
            raise self._failure(action, exc) from None
        if self._pool is None:
            await self._start_pool()
        return result

    async def close(self) -> None:
        """Close the pool (and wait for those given up to close)."""
        self._closed = True
        self._give_up_pool()
        while self._closing:
            await asyncio.gather(*self._closing)

    async def _connect(self) -> Any:
        return await self._psycopg.AsyncConnection.connect(self.url, **self._kwargs)

    def _failure(self, action: str, exc: BaseException) -> StorageError:
        sentence = self.run_error.format(name=self.name, action=action, reason=reason(exc))
        return StorageError(sentence)

    async def _start_pool(self) -> None:
        """A fresh pool: its connections are made in the background."""
        pool = self._psycopg_pool.AsyncConnectionPool(
            self.url,
            kwargs=self._kwargs,
            min_size=self.size,
            max_size=self.size,
            timeout=self.wait_timeout,
            open=False,
        )
        await pool.open()
        if self._pool is None and not self._closed:
            self._pool = pool
        else:  # another run started one meanwhile, or we are closing
            self._close_later(pool)

    def _give_up_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            self._close_later(pool)

    def _close_later(self, pool: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._close_pool(pool))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_pool(self, pool: Any) -> None:
        try:
            await pool.close(timeout=self.connect_timeout + 1)
        except Exception:  # its connections are gone with the server: nothing to keep
            log.debug("closing a PostgreSQL pool of %s failed", self.name, exc_info=True)


async def _migrate(
    psycopg: Any, db: Any, migrations: Sequence[str], lock_key: int, table: str
) -> None:
    """Version N is ``migrations[N - 1]``; the versions applied are rows of ``table``."""
    async with db.transaction():
        await db.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key,))
        await db.execute(f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER NOT NULL)")
        row = await (await db.execute(f"SELECT max(version) FROM {table}")).fetchone()
        current = checked_version(psycopg, row[0], migrations)
        for version in range(current + 1, len(migrations) + 1):
            await db.execute(migrations[version - 1])
            await db.execute(f"INSERT INTO {table} VALUES (%s)", (version,))


def _conninfo(psycopg: Any, url: str) -> dict[str, Any]:
    try:
        return dict(psycopg.conninfo.conninfo_to_dict(url))
    except psycopg.ProgrammingError:  # a malformed URL: connecting will say so
        return {}
