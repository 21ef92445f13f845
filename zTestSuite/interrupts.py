"""Ctrl-C and SIGTERM stop a run cleanly: the test running then is left out of the
results, every process the run started is stopped, and the summary of what ran is
printed (see runner). ``STOPPING`` tells the result that the test now ending was cut
short, not passed. The handlers replace asyncio's own SIGINT handling during the run,
so an ``async`` test is stopped at once too.

A process that runs no test (the ``-j`` parent) must not be interrupted in the middle
of its bookkeeping: ``signals_call`` turns each signal into a call of ``notify`` from a
thread of its own, and the parent treats it as one more event in its queue.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOPPING", "signals_call", "stop_on_signals"]

STOPPING = threading.Event()


def _stop(signum: int, frame: FrameType | None) -> None:
    STOPPING.set()
    raise KeyboardInterrupt


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """While inside: SIGINT and SIGTERM set STOPPING and raise KeyboardInterrupt."""
    previous = {signum: signal.signal(signum, _stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def signals_call(notify: Callable[[], None]) -> Iterator[None]:
    """While inside: SIGINT and SIGTERM set STOPPING and, instead of raising, call
    ``notify()`` from a helper thread (the handler only writes a byte to a pipe)."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)

    def note(signum: int, frame: FrameType | None) -> None:
        STOPPING.set()
        try:
            os.write(write_end, b"!")
        except BlockingIOError:  # the pipe is full of earlier signals: one is enough
            pass

    def relay() -> None:
        with os.fdopen(read_end, "rb", buffering=0) as signals:
            while signals.read(1):
                notify()

    relaying = threading.Thread(target=relay, name="signals", daemon=True)
    relaying.start()
    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        os.close(write_end)  # the relay reads the end of the pipe and stops
        relaying.join()
