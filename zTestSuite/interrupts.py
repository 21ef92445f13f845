"""Ctrl-C and SIGTERM stop a run cleanly: the test running then is left out of the
results, every process the run started is stopped, and the summary of what ran is
printed (see runner). ``STOPPING`` tells the result that the test now ending was cut
short, not passed. The handlers replace asyncio's own SIGINT handling during the run,
so an ``async`` test is stopped at once too."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOPPING", "stop_on_signals"]

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
