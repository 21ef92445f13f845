"""A system under test as a real process: started, waited for, read, stopped by PID.

``ServerProcess`` runs a command the way a user does, keeps every line it prints (the
last ``keep`` of them), waits for a line matching a pattern (``wait_for``), and stops
it with SIGTERM, then SIGKILL after a deadline. ``tail()`` is what a failing test shows.
Memory figures come from ``/proc/PID/status`` (Linux).
"""

from __future__ import annotations

import collections
import os
import queue
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from .harness import timeout

__all__ = ["ServerProcess"]


class ServerProcess:
    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        keep: int = 200,
    ) -> None:
        self.command = list(command)
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=cwd,
            env={**os.environ, **(env or {})},
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._fresh: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, name="ServerProcess", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self._fresh.put(line)
        self._fresh.put(None)

    def wait_for(self, pattern: str, units: float = 10) -> re.Match[str]:
        """The first line from now on matching ``pattern``; AssertionError (with the
        output's tail) if the process ends or the timeout passes first."""
        compiled = re.compile(pattern)
        deadline = timeout(units)
        while True:
            try:
                line = self._fresh.get(timeout=deadline)
            except queue.Empty:
                raise AssertionError(f"no line matched {pattern!r}:\n{self.tail()}") from None
            if line is None:
                raise AssertionError(f"the process ended before {pattern!r}:\n{self.tail()}")
            match = compiled.search(line)
            if match is not None:
                return match

    def _status(self, field: str) -> int:
        text = Path(f"/proc/{self.pid}/status").read_text()
        found = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
        if found is None:
            raise AssertionError(f"/proc/{self.pid}/status has no {field}")
        return int(found.group(1)) * 1024

    def rss(self) -> int:
        """Resident memory now, in bytes."""
        return self._status("VmRSS")

    def peak_rss(self) -> int:
        """The highest resident memory so far, in bytes."""
        return self._status("VmHWM")

    def tail(self, count: int = 40) -> str:
        return "\n".join(list(self.lines)[-count:])

    def stop(self, signum: int = signal.SIGTERM, units: float = 10) -> int:
        """Signal it and wait; SIGKILL if it outlives the deadline. The exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
            try:
                self.process.wait(timeout=timeout(units))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode
