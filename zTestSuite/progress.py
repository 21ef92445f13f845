"""What a person watching the run sees while it runs.

- ``-v``: one line per finished test (outcome, duration, id, and the reason or message).
- On a terminal: one live line, redrawn in place, with tests done/total, failures so
  far, elapsed time and the test running now; a failing test also gets a line of its
  own above it, so failures stay on screen.
- Otherwise (a pipe, a CI log): one line per finished suite.
"""

from __future__ import annotations

import shutil
import threading
import time
from typing import TextIO

from .records import SuiteRecord, TestRecord

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    return f"{seconds:.3f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def test_line(record: TestRecord) -> str:
    reason = f": {record.message}" if record.message else ""
    return f"{record.outcome:7} {record.duration:8.3f}s {record.id}{reason}"


def suite_line(record: SuiteRecord) -> str:
    counts = record.counts
    return (
        f"{record.name}: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped in {format_duration(record.duration)}"
    )


class Progress:
    """An Observer (see recorder) that prints; ``mode`` is "verbose", "live" or "suites".
    Safe to call from several threads (the ``-j`` parent's readers)."""

    def __init__(self, out: TextIO, mode: str, total: int) -> None:
        self.out = out
        self.mode = mode
        self.total = total
        self.done = 0
        self.failed = 0
        self.running: dict[str, str] = {}  # test id -> suite
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._drawn = False
        self._ticker: threading.Thread | None = None
        self._stopping = threading.Event()
        if mode == "live":
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()

    # --- the Observer protocol ---------------------------------------------------

    def test_started(self, suite: str, test_id: str) -> None:
        with self._lock:
            self.running[test_id] = suite
            self._redraw()

    def test_finished(self, record: TestRecord) -> None:
        with self._lock:
            self.running.pop(record.id, None)
            self.done += 1
            if record.outcome == "failed":
                self.failed += 1
            if self.mode == "verbose":
                self._write(test_line(record) + "\n")
            elif self.mode == "live" and record.outcome == "failed":
                self._clear()
                self._write(f"FAILED {record.id}: {record.message}\n")
            self._redraw()

    def suite_finished(self, record: SuiteRecord) -> None:
        with self._lock:
            if self.mode == "suites":
                self._write(suite_line(record) + "\n")

    # --- the live line -----------------------------------------------------------

    def status(self) -> str:
        elapsed = time.monotonic() - self.started
        now = ", ".join(sorted(self.running)) or "-"
        return (
            f"[{self.done}/{self.total}] {self.failed} failed, {format_duration(elapsed)} | {now}"
        )

    def _tick(self) -> None:
        while not self._stopping.wait(1.0):
            with self._lock:
                self._redraw()

    def _redraw(self) -> None:
        if self.mode != "live" or self._stopping.is_set():
            return
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        line = self.status()
        if len(line) > width:
            line = line[: width - 1] + "…"
        self._write("\r\x1b[K" + line)
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self._write("\r\x1b[K")
            self._drawn = False

    def _write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def close(self) -> None:
        """Stop redrawing and leave the terminal at the start of a clean line."""
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.join()
        with self._lock:
            self._clear()
