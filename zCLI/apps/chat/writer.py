"""The storage's one writer, so the event loop never waits for a disk or a database.

``Writer`` is what the chat server uses, whatever the store: ``submit`` queues a list
of changes and returns a future the loop can await; everything queued so far is
written in one transaction (a group commit: one sync for many requests under load,
at most ``MAX_BATCH`` submissions), then each future is settled: all of them succeed,
or all fail with the ``StorageError``. Writes happen in the order they were
submitted. ``probe`` is a write of nothing, in the same order. ``call(work)`` (a read,
or claiming ids) runs ``work(storage)`` once every write submitted before it is settled
(committed, or failed). ``close`` finishes what is queued, then closes the store.
An unexpected error (a bug) fails that batch's (or read's) futures with it and is
logged; the writer goes on.

Two writers keep that contract. ``StorageWriter`` is a thread for SQLite: reads go
through its queue too, one at a time. ``AsyncStorageWriter`` is a task for PostgreSQL
(``PostgresStorage``'s coroutines on a connection pool): one task writes the batches in
turn, while each read starts as soon as the writes before it are settled and runs at
once on a pooled connection of its own, beside the writes after it and other reads (so
many sign-ins read in parallel). ``open_writer`` picks one from ``--db``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from zCLI import ConfigError, StorageError, is_postgres_url

from .core import Change
from .storage import SQLiteStorage, Storage

__all__ = [
    "DEFAULT_POOL",
    "MAX_BATCH",
    "AsyncStorageWriter",
    "StorageWriter",
    "Writer",
    "open_writer",
    "pool_size",
]

MAX_BATCH = 512  # submissions per transaction
DEFAULT_POOL = 4  # connections to PostgreSQL when --db-pool does not say
log = logging.getLogger("zCLI.apps.chat")


class Writer(Protocol):
    def submit(self, changes: Sequence[Change]) -> asyncio.Future[None]: ...
    def call(self, work: Callable[[Any], Any]) -> asyncio.Future[Any]: ...
    def probe(self) -> asyncio.Future[None]: ...
    async def close(self) -> None: ...


async def open_writer(db: str | None, state_dir: Path, pool: int) -> Writer:
    """The writer of the store ``--db`` names: a ``postgresql://`` URL is a PostgreSQL
    database (``pool`` connections), anything else a SQLite file (by default
    ``chat.sqlite3`` in the state folder)."""
    if db is not None and is_postgres_url(db):
        from .postgres import PostgresStorage

        storage = PostgresStorage(db, pool)
        await storage.open()
        return AsyncStorageWriter(storage)
    return StorageWriter(SQLiteStorage(Path(db) if db else state_dir / "chat.sqlite3"))


def pool_size(text: str | None) -> int:
    """``--db-pool`` (``ZCHAT_DB_POOL``, None when unset): a whole number of
    connections, at least 1; ``ConfigError`` otherwise."""
    if text is None:
        return DEFAULT_POOL
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        problem = "--db-pool (ZCHAT_DB_POOL) must be a whole number of connections, at least 1"
        raise ConfigError([f"{problem}, not {text!r}"])
    return size


@dataclass
class _Job:
    changes: Sequence[Change]  # empty: a probe (or a call)
    future: asyncio.Future[Any]
    call: Callable[[Any], Any] | None = None  # a read: runs alone, its result kept


class StorageWriter:
    """The writer thread of a ``Storage`` (SQLite): reads wait in its queue too."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="zChat storage", daemon=True)
        self._thread.start()

    def submit(self, changes: Sequence[Change]) -> asyncio.Future[None]:
        """Queue ``changes``; the future is done once they are committed."""
        future = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(changes, future))
        return future

    def call(self, work: Callable[[Storage], Any]) -> asyncio.Future[Any]:
        """``work(storage)`` in the thread, after every write submitted before it; the
        future holds its result (or its ``StorageError``)."""
        future = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job((), future, work))
        return future

    def probe(self) -> asyncio.Future[None]:
        """A future that fails with ``StorageError`` when the storage cannot write."""
        return self.submit(())

    async def close(self) -> None:
        """Finish what is queued, then stop the thread and close the storage (the loop
        goes on meanwhile)."""
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self.storage.close()

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if job.call is not None:
                self._call(job)
                continue
            batch = [job]
            stop = False
            call: _Job | None = None
            while len(batch) < MAX_BATCH:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                if more.call is not None:  # after the writes before it
                    call = more
                    break
                batch.append(more)
            self._write(batch)
            if call is not None:
                self._call(call)
            if stop:
                return

    def _call(self, job: _Job) -> None:
        assert job.call is not None
        try:
            result = job.call(self.storage)
        except StorageError as exc:
            _settle_threadsafe(job.future, exc)
            return
        except Exception as exc:  # a bug: its waiter hears of it, the thread goes on
            log.exception("a storage read failed with an unexpected error")
            _settle_threadsafe(job.future, exc)
            return
        _settle_threadsafe(job.future, None, result)

    def _write(self, batch: list[_Job]) -> None:
        changes = [change for job in batch for change in job.changes]
        error: Exception | None = None
        try:
            if changes:
                self.storage.write(changes)
            else:
                self.storage.probe()
        except StorageError as exc:
            error = exc
        except Exception as exc:  # a bug: the waiters hear of it, the thread goes on
            log.exception("a storage write failed with an unexpected error")
            error = exc
        for job in batch:
            _settle_threadsafe(job.future, error)


class AsyncStorage(Protocol):
    """What ``AsyncStorageWriter`` needs of a store: ``Storage``'s writes as coroutines
    (its reads, coroutines too, are what ``call``'s work awaits)."""

    async def write(self, changes: Sequence[Change]) -> None: ...
    async def probe(self) -> None: ...
    async def close(self) -> None: ...


class AsyncStorageWriter:
    """The writer task of an ``AsyncStorage`` (PostgreSQL): reads run beside it."""

    def __init__(self, storage: AsyncStorage) -> None:
        self.storage = storage
        self._jobs: deque[_Job] = deque()  # submitted, not taken yet
        self._submitted = 0  # writes (and probes) ever submitted
        self._settled = 0  # of them, committed or failed (in submission order)
        # reads waiting for the writes before them: (writes submitted before it, read)
        self._reads: deque[tuple[int, _Job]] = deque()
        self._reading: set[asyncio.Task[None]] = set()
        self._queued = asyncio.Event()
        self._closing = False
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="zChat storage writer")

    def submit(self, changes: Sequence[Change]) -> asyncio.Future[None]:
        """Queue ``changes``; the future is done once they are committed."""
        future = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(changes, future))
        self._submitted += 1
        self._queued.set()
        return future

    def call(self, work: Callable[[Any], Awaitable[Any]]) -> asyncio.Future[Any]:
        """``await work(storage)`` once every write submitted before it is settled, on
        a connection of its own; the future holds its result (or its ``StorageError``)."""
        read = _Job((), asyncio.get_running_loop().create_future(), work)
        if self._settled == self._submitted:
            self._start(read)
        else:
            self._reads.append((self._submitted, read))
        return read.future

    def probe(self) -> asyncio.Future[None]:
        """A future that fails with ``StorageError`` when the storage cannot write."""
        return self.submit(())

    async def close(self) -> None:
        """Finish what is queued and the reads under way, then close the storage."""
        self._closing = True
        self._queued.set()
        await self._task
        while self._reading:
            await asyncio.gather(*self._reading)
        await self.storage.close()

    async def _run(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._jobs:
                batch = [self._jobs.popleft() for _ in range(min(len(self._jobs), MAX_BATCH))]
                await self._write(batch)
                self._settled += len(batch)
                while self._reads and self._reads[0][0] <= self._settled:
                    self._start(self._reads.popleft()[1])
            if self._closing:
                return

    async def _write(self, batch: list[_Job]) -> None:
        changes = [change for job in batch for change in job.changes]
        error: Exception | None = None
        try:
            if changes:
                await self.storage.write(changes)
            else:
                await self.storage.probe()
        except StorageError as exc:
            error = exc
        except Exception as exc:  # a bug: the waiters hear of it, the task goes on
            log.exception("a storage write failed with an unexpected error")
            error = exc
        for job in batch:
            _settle(job.future, error)

    def _start(self, read: _Job) -> None:
        task = asyncio.get_running_loop().create_task(self._read(read))
        self._reading.add(task)
        task.add_done_callback(self._reading.discard)

    async def _read(self, read: _Job) -> None:
        assert read.call is not None
        try:
            result = await read.call(self.storage)
        except StorageError as exc:
            _settle(read.future, exc)
        except Exception as exc:  # a bug: its waiter hears of it, the writer goes on
            log.exception("a storage read failed with an unexpected error")
            _settle(read.future, exc)
        else:
            _settle(read.future, None, result)


def _settle(future: asyncio.Future[Any], error: Exception | None, result: Any = None) -> None:
    if future.done():  # its waiter was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _settle_threadsafe(
    future: asyncio.Future[Any], error: Exception | None, result: Any = None
) -> None:
    try:
        future.get_loop().call_soon_threadsafe(_settle, future, error, result)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass
