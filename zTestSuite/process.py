"""A system under test as a real process: started, waited for, read, stopped by PID.

``ServerProcess`` runs a command the way a user does, keeps the last ``keep`` lines it
prints, waits until a line matches (``wait_for``) or a port accepts (``wait_for_port``),
and stops it with SIGTERM, then SIGKILL after a deadline. Each process gets its own
session, so a Ctrl-C at the terminal reaches the runner only, and ``stop`` signals the
whole process group (the command's own children too).

Every process started here is tracked until it is stopped: when a test fails, the
runner appends the output tail of the processes that test (or its suite's fixtures)
started to the failure, and when a run ends or is interrupted, ``stop_all`` stops
whatever is still running. ``served_app`` starts ``zcli serve`` on free ports and reads
the addresses it prints. Memory figures come from ``/proc/PID/status`` (Linux).
"""

from __future__ import annotations

import atexit
import collections
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .harness import timeout
from .metrics import STORE

__all__ = ["ServedApp", "ServerProcess", "served_app", "stop_all", "tails_for"]

FIXTURE = "(suite fixture)"  # the owner of processes started outside a test
_LIVE: list[ServerProcess] = []  # started and not yet forgotten (see forget_stopped)
_LOCK = threading.Lock()


class ServerProcess:
    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: dict[str, str] | None = None,
        keep: int = 200,
    ) -> None:
        self.command = [str(part) for part in command]
        self.owner = STORE.current if STORE.current != "(no test)" else FIXTURE
        self.process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            cwd=cwd,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        with _LOCK:
            _LIVE.append(self)
        self.lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._fresh: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(
            target=self._pump, name=f"ServerProcess-{self.pid}", daemon=True
        )
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
        deadline = time.monotonic() + timeout(units)
        while True:
            try:
                line = self._fresh.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matched {pattern!r}:\n{self.tail()}") from None
            if line is None:
                self._fresh.put(None)  # later waits see the end too
                raise AssertionError(f"the process ended before {pattern!r}:\n{self.tail()}")
            match = compiled.search(line)
            if match is not None:
                return match

    def wait_for_port(self, port: int, host: str = "127.0.0.1", units: float = 10) -> None:
        """Until ``host:port`` accepts a TCP connection; AssertionError (with the
        output's tail) if the process ends or the timeout passes first."""
        deadline = time.monotonic() + timeout(units)
        pause = 0.005
        while True:
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the process ended (status {self.process.returncode}) before "
                    f"{host}:{port} accepted:\n{self.tail()}"
                )
            try:
                with socket.create_connection((host, port), timeout=timeout(1)):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{host}:{port} did not accept ({exc}):\n{self.tail()}"
                    ) from None
            time.sleep(pause)  # polling a port that is not open yet; backs off to 0.1 s
            pause = min(pause * 2, 0.1)

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

    def describe(self) -> str:
        state = self.process.poll()
        status = "running" if state is None else f"exited {state}"
        command = " ".join(self.command).replace("\n", "\\n")
        if len(command) > 120:
            command = command[:119] + "…"
        return f"{command} (pid {self.pid}, {status})"

    def _signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.pid, signum)  # its own session: the group id is its pid
        except ProcessLookupError:
            pass

    def stop(self, signum: int = signal.SIGTERM, units: float = 10) -> int:
        """Signal its process group and wait; SIGKILL if it outlives the deadline.
        Returns the exit status (negative: the signal that ended it)."""
        if self.process.poll() is None:
            self._signal_group(signum)
            try:
                self.process.wait(timeout=timeout(units))
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.process.wait()
        self._signal_group(signal.SIGKILL)  # children it left behind
        # Its last lines ("Stopped.") are in ``lines`` once the reader has seen the end
        # of its output; a child that still holds the pipe open only delays that.
        self._reader.join(timeout(2))
        return self.process.returncode


class ServedApp(ServerProcess):
    """``zcli serve APP`` on free ports; ``ws_url`` and ``http_url`` as it printed them."""

    ws_url: str
    http_url: str


def served_app(
    app: str | Path, *args: str, env: dict[str, str] | None = None, units: float = 10
) -> ServedApp:
    """Start ``python -m zCLI serve APP --ws-port 0 --http-port 0 ARGS`` and wait until
    it prints both addresses."""
    served = ServedApp(
        [sys.executable, "-m", "zCLI", "serve", str(app), "--ws-port", "0", "--http-port", "0"]
        + list(args),
        env=env,
    )
    try:
        served.ws_url = served.wait_for(r"^zBifrost listening on (ws://\S+)$", units).group(1)
        served.http_url = served.wait_for(r"^zServer listening on (http://\S+)$", units).group(1)
    except BaseException:
        served.stop()
        raise
    return served


def tails_for(test_id: str, lines: int = 40) -> str:
    """The output tails of the processes ``test_id`` or its suite's fixtures started,
    for a failure report; "" when there are none."""
    with _LOCK:
        mine = [p for p in _LIVE if p.owner in (test_id, FIXTURE)]
    parts = []
    for proc in mine:
        text = proc.tail(lines) or "(no output)"
        parts.append(f"\n--- last lines of {proc.describe()} ---\n{text}\n")
    return "".join(parts)


def forget(owner: str | None = None) -> None:
    """Drop stopped processes from tracking (all owners when ``owner`` is None)."""
    with _LOCK:
        _LIVE[:] = [
            p for p in _LIVE if p.process.poll() is None or (owner is not None and p.owner != owner)
        ]


def stop_all(units: float = 2) -> list[str]:
    """Stop every tracked process that still runs; what was stopped, described."""
    with _LOCK:
        running = [p for p in _LIVE if p.process.poll() is None]
    stopped = []
    for proc in running:
        proc.stop(units=units)
        stopped.append(proc.describe())
    forget()
    return stopped


atexit.register(stop_all)
