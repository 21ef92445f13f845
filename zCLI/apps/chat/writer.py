"""The storage's one writer thread, so the event loop never waits for a disk.

``submit`` queues a list of changes and returns a future the loop can await. The
thread takes everything queued so far and writes it in one transaction (a group
commit: one sync for many requests under load), then settles each future: all of them
succeed, or all fail with the ``StorageError``. Writes happen in the order they were
submitted. ``probe`` and ``call`` (a read, or claiming ids) go through the same
queue, so they wait behind the writes submitted before them.
An unexpected error (a bug) fails that batch's futures with it and is logged; the
thread goes on.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zCLI import StorageError

from .core import Change
from .storage import Storage

__all__ = ["StorageWriter"]

MAX_BATCH = 512  # submissions per transaction
log = logging.getLogger("zCLI.apps.chat")


@dataclass
class _Job:
    changes: Sequence[Change]  # empty: a probe (or a call)
    future: asyncio.Future[Any]
    call: Callable[[Storage], Any] | None = None  # a read: runs alone, its result kept


class StorageWriter:
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

    def close(self) -> None:
        """Finish what is queued, then stop the thread and close the storage."""
        self._jobs.put(None)
        self._thread.join()
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
            _settle(job.future, exc)
            return
        except Exception as exc:  # a bug: its waiter hears of it, the thread goes on
            log.exception("a storage read failed with an unexpected error")
            _settle(job.future, exc)
            return
        _settle(job.future, None, result)

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
            _settle(job.future, error)


def _settle(future: asyncio.Future[Any], error: Exception | None, result: Any = None) -> None:
    def done() -> None:
        if future.done():  # its waiter was cancelled
            return
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)

    try:
        future.get_loop().call_soon_threadsafe(done)
    except RuntimeError:  # the loop is closed: nobody waits any more
        pass
