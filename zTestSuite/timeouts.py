"""Per-test time limits: a test that hangs fails with the stack of where it hung.

``--timeout SECONDS`` bounds every test (its setUp, body and tearDown); a test's own
``@time_limit(seconds)`` (on a method or a class) replaces that bound for it, scaled by
``ZTEST_TIMEOUT_FACTOR`` like every harness timeout. The runner arms a real-time timer
(SIGALRM) when a test starts; when it fires, the handler raises ``TestTimedOut`` in the
main thread, where the test runs. Blocking calls (socket reads, locks, ``select`` in an
event loop) are interrupted by the signal, so the test fails and the run goes on.

``TestTimedOut`` derives from BaseException so a test's own ``except Exception`` does
not swallow it; unittest still records it as the test's error, with the traceback
down to the call that hung. When an asyncio loop is running, that traceback ends in
the loop's ``select``, so the message adds the stack of every pending task (where an
``async`` test really waits) and cancels them, so the loop closes cleanly.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import traceback
import unittest
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

__all__ = ["TestTimedOut", "TimeLimit", "limit_for", "time_limit"]

T = TypeVar("T")
_ATTRIBUTE = "__ztest_time_limit__"


class TestTimedOut(BaseException):
    """A test ran past its time limit."""

    __test__ = False  # not a test case, whatever a collector thinks of the name


def _factor() -> float:
    return float(os.environ.get("ZTEST_TIMEOUT_FACTOR", "1"))


def time_limit(seconds: float) -> Callable[[T], T]:
    """Give a test (or every test of a class) its own time limit in seconds."""
    if not seconds > 0:
        raise ValueError(f"time_limit needs a positive number of seconds, not {seconds!r}")

    def mark(target: T) -> T:
        setattr(target, _ATTRIBUTE, float(seconds))
        return target

    return mark


def limit_for(test: unittest.TestCase, default: float | None) -> float | None:
    """The bound for ``test``: its method's or its class's ``time_limit`` (scaled by
    ZTEST_TIMEOUT_FACTOR), else ``default`` (the run's ``--timeout``), else None."""
    method = getattr(test, getattr(test, "_testMethodName", ""), None)
    own = getattr(method, _ATTRIBUTE, None) or getattr(type(test), _ATTRIBUTE, None)
    if own is not None:
        return float(own) * _factor()
    return default


def _stop_tasks() -> str:
    """The stack of each pending task of the loop running in this thread (where an
    ``async`` test really waits), then cancel them so the loop can close cleanly."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return ""
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        if not task.done():
            out.write(f"\nTask {task.get_name()} was waiting here:\n")
            out.writelines(traceback.format_list(_await_chain(task.get_coro())))
            task.cancel()
    return out.getvalue()


def _await_chain(coro: Any) -> traceback.StackSummary:
    """The frames of a suspended coroutine and of what it awaits, down to the bottom
    (asyncio's own task stack shows only the outermost frame)."""
    frames = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append((frame, frame.f_lineno))
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return traceback.StackSummary.extract(frames)


class TimeLimit:
    """Arms and disarms the SIGALRM timer around one test at a time (main thread only)."""

    def __init__(self) -> None:
        self.armed_for: str | None = None
        self.seconds = 0.0
        self._previous: Any = None
        self.usable = threading.current_thread() is threading.main_thread() and hasattr(
            signal, "setitimer"
        )

    def arm(self, test_id: str, seconds: float | None) -> None:
        if not self.usable or not seconds:
            return
        self.armed_for, self.seconds = test_id, seconds
        self._previous = signal.signal(signal.SIGALRM, self._fire)
        signal.setitimer(signal.ITIMER_REAL, seconds)

    def disarm(self) -> None:
        if self.armed_for is None:
            return
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._previous or signal.SIG_DFL)
        self.armed_for = None

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        test_id, seconds = self.armed_for, self.seconds
        self.disarm()
        raise TestTimedOut(f"{test_id} ran past its time limit of {seconds:g}s{_stop_tasks()}")
