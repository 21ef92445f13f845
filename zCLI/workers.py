"""``zcli serve --workers N``: N processes serving one app on one port.

The parent checks the configuration once, then holds the ports: it binds a socket with
``SO_REUSEPORT`` to each (port 0 becomes a real port here, once for all workers) and
never listens on it, so the kernel hands connections only to the workers. Each worker
is a forked process with its own event loop that binds the same ports with
``SO_REUSEPORT`` and serves as ``zcli serve`` does; the kernel spreads new connections
over the workers' sockets. Workers share nothing but the broker (``websocket.broker``),
so N > 1 without a broker is refused: each worker's broadcasts, ``send_to`` and presence
would reach only its own connections.

Every line a worker writes is tagged ``[worker K]`` (its log lines and what it prints).
Once every worker listens, the parent prints the two addresses as ``zcli serve`` does,
then ``Workers: N (pids ...).``. SIGTERM or SIGINT to the parent is passed to every
worker, which stops as ``zcli serve`` does (clients told, connections closed); the
parent exits 0 when they all exited 0. A worker that exits on its own (or fails to
start) is an error: the parent stops the others and exits 1. Workers ask the kernel
to stop them if the parent dies (Linux).

Where ``SO_REUSEPORT`` or ``fork`` is missing (Windows), ``--workers`` above 1 is an
error (``WorkersUnavailable``, exit 2): run one process per port behind a proxy.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TextIO, cast

from .config import load_config
from .exceptions import zCLIError

__all__ = ["REUSE_PORT", "NeedsBroker", "WorkersUnavailable", "serve_workers"]

log = logging.getLogger("zCLI.workers")
REUSE_PORT: int | None = getattr(socket, "SO_REUSEPORT", None)
READY = b"ready\n"
PR_SET_PDEATHSIG = 1  # prctl(2)


class WorkersUnavailable(zCLIError):
    """This system cannot share one port between processes."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"--workers {count} needs SO_REUSEPORT and fork, which this system does not "
            "have; run one zcli serve per port behind a proxy instead."
        )


class NeedsBroker(zCLIError):
    """Several workers without a broker would be several unrelated servers."""

    def __init__(self, count: int) -> None:
        super().__init__(
            f"--workers {count} needs a broker (--broker redis://HOST:PORT/DB, or "
            "websocket.broker): without one, each worker's broadcasts, send_to and "
            "presence would reach only its own connections."
        )


def serve_workers(spark: dict[str, Any], count: int) -> int:
    """Run ``count`` workers of the app ``spark`` describes until SIGTERM or SIGINT."""
    if REUSE_PORT is None or not hasattr(os, "fork"):
        raise WorkersUnavailable(count)
    config = load_config(spark)  # every problem is reported once, by the parent
    if config.websocket.broker is None:
        raise NeedsBroker(count)
    from .core import zCLI

    zCLI(spark)  # plugins and zUI files checked here too, before any fork
    ws, http = config.websocket, config.http_server
    held = [_hold(ws.host, ws.port)]
    spark = {**spark, "websocket": {**spark.get("websocket", {}), "port": _port(held[0])}}
    if http.enabled:
        held.append(_hold(http.host, http.port))
        spark["http_server"] = {**spark.get("http_server", {}), "port": _port(held[1])}
    try:
        return _Parent(spark, count).run()
    finally:
        for sock in held:
            sock.close()


def _hold(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT that never listens."""
    assert REUSE_PORT is not None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, REUSE_PORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            from .bridge import PortInUseError

            raise PortInUseError(host, port) from None
        raise
    return sock


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


class _Parent:
    def __init__(self, spark: dict[str, Any], count: int) -> None:
        self.spark = spark
        self.count = count
        self.workers: dict[int, int] = {}  # pid -> worker number
        self.stopping = False

    def run(self) -> int:
        previous = {s: signal.signal(s, self._stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            ready = [self._fork(number) for number in range(1, self.count + 1)]
            started = all(_wait_ready(fd) for fd in ready)
            if started and not self.stopping:
                ws, http = load_config(self.spark).websocket, load_config(self.spark).http_server
                _say(f"zBifrost listening on ws://{ws.host}:{ws.port}")
                if http.enabled:
                    _say(f"zServer listening on http://{http.host}:{http.port}/")
                pids = ", ".join(str(pid) for pid in self.workers)
                _say(f"Workers: {self.count} (pids {pids}).")
            elif not started:
                self._stop_all("a worker could not start")
            return self._wait_all(failed=not started)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _fork(self, number: int) -> int:
        read, write = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: it never returns from here
            os.close(read)
            code = 1
            try:
                code = _worker(number, self.spark, write)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write)
        self.workers[pid] = number
        return read

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True
        self._signal_all(signal.SIGTERM)

    def _signal_all(self, signum: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _stop_all(self, why: str) -> None:
        if not self.stopping:
            log.error("%s; stopping the other workers", why)
            self.stopping = True
            self._signal_all(signal.SIGTERM)

    def _wait_all(self, failed: bool) -> int:
        while self.workers:
            pid, status = os.waitpid(-1, 0)
            number = self.workers.pop(pid, None)
            if number is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if code != 0 or not self.stopping:
                failed = True
                self._stop_all(f"worker {number} (pid {pid}) exited with status {code}")
        if not failed:
            _say("Stopped.")
        return 1 if failed else 0


def _wait_ready(fd: int) -> bool:
    """The worker said it listens (True), or closed its end without saying so."""
    received = b""
    with os.fdopen(fd, "rb") as pipe:
        while chunk := pipe.read(len(READY)):
            received += chunk
    return received == READY


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _worker(number: int, spark: dict[str, Any], ready_fd: int) -> int:
    """One worker, in the forked child: serve until SIGTERM; the exit status."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # the serving loop installs its own
    _die_with_parent()
    tag = f"[worker {number}]"
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(f"%(levelname)s {tag} %(name)s: %(message)s"))
    out = _Tagged(sys.stdout, tag)
    from .core import zCLI

    try:
        z = zCLI(spark)
        z.comm.reuse_port = True
        if z.config.http_server.enabled:
            z.server.reuse_port = True
        z.on_listening = _signaller(ready_fd)
        return z.run(stdout=cast(TextIO, out))  # it has what a renderer uses of one
    except zCLIError as exc:
        sys.stderr.write(f"zcli: error: {tag} {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130


def _signaller(fd: int) -> Callable[[], None]:
    def ready() -> None:
        os.write(fd, READY)
        os.close(fd)

    return ready


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this worker when the parent dies (elsewhere: nothing)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


class _Tagged:
    """A text stream that starts each line with ``tag``."""

    def __init__(self, stream: TextIO, tag: str) -> None:
        self.stream = stream
        self.tag = tag
        self.at_line_start = True

    def write(self, text: str) -> int:
        out = []
        for line in text.splitlines(keepends=True):
            if self.at_line_start:
                out.append(f"{self.tag} ")
            out.append(line)
            self.at_line_start = line.endswith("\n")
        self.stream.write("".join(out))
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False
