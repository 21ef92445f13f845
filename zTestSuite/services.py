"""Database servers for the tests, as real processes: ``redis-server`` and PostgreSQL.

``RedisServer`` and ``PostgresServer`` each get a temporary folder of their own and a
free port, start the binaries Debian installs (``redis-server``; ``initdb`` and
``postgres`` from ``/usr/lib/postgresql/<version>/bin`` or the ``PATH``), wait until
the server says it accepts connections and its port opens, and stop it by PID
(``ServerProcess``). ``stop()`` and ``start()`` may be called again mid-test, on the
same port and the same data: that is how a test takes the database away and brings it
back. ``close()`` stops it and removes the folder.

``requires_service("redis")`` / ``requires_service("postgresql")`` skip a test whose
binaries are missing, naming the binary and the Debian package; like a browser, a
database server is a strict requirement: under ``ZTEST_STRICT=1`` (CI, where the
Makefile installs them) the skip is a failure.

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
``postgres`` user the Debian package creates (``nobody`` without it), through
``setpriv``, and its folder belongs to that user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .harness import timeout
from .network import requires_network
from .process import ServerProcess
from .requirements import requirement

__all__ = [
    "DEBIAN_POSTGRES",
    "SERVICES",
    "PostgresServer",
    "RedisServer",
    "client_missing",
    "free_port",
    "requires_service",
    "service_binaries",
    "service_missing",
]

T = TypeVar("T")
DEBIAN_POSTGRES = Path("/usr/lib/postgresql")  # <version>/bin/{initdb,postgres,...}
# service -> (the binaries it needs, the Debian package that has them)
SERVICES: dict[str, tuple[tuple[str, ...], str]] = {
    "redis": (("redis-server",), "redis-server"),
    "postgresql": (("initdb", "postgres", "createdb"), "postgresql"),
}
CLIENTS = {"redis": "redis", "postgresql": "psycopg"}  # service -> its Python client
USER = "zcli"  # PostgreSQL's superuser in the clusters started here (trust auth)


def _versions(root: Path) -> list[Path]:
    """Debian's PostgreSQL bin folders, newest version first."""
    try:
        found = [p / "bin" for p in root.iterdir() if p.name.replace(".", "").isdigit()]
    except OSError:
        return []
    return sorted(found, key=lambda p: float(p.parent.name), reverse=True)


def service_binaries(
    service: str, search_path: str | None = None, debian_root: Path | None = None
) -> dict[str, Path | None]:
    """Where each binary of ``service`` is (None: nowhere). PostgreSQL's are looked for
    in Debian's newest version folder first, where its ``postgres`` is, then on the
    ``PATH`` (``search_path`` stands for it in tests)."""
    names, _package = SERVICES[service]
    path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    root = DEBIAN_POSTGRES if debian_root is None else debian_root
    folders = _versions(root) if service == "postgresql" else []
    found: dict[str, Path | None] = {}
    for name in names:
        where = next((f / name for f in folders if (f / name).is_file()), None)
        if where is None:
            located = shutil.which(name, path=path)
            where = Path(located) if located is not None else None
        found[name] = where
    return found


def service_missing(
    service: str, search_path: str | None = None, debian_root: Path | None = None
) -> str | None:
    """Why ``service`` cannot be started here (the binary and the package that has
    it), or None when it can."""
    missing = [n for n, p in service_binaries(service, search_path, debian_root).items() if not p]
    if not missing:
        return None
    package = SERVICES[service][1]
    return (
        f"{' and '.join(missing)} not found (Debian package {package}: "
        f"apt-get install {package}, or make services)"
    )


def client_missing(service: str) -> str | None:
    """Why the tests cannot talk to ``service`` from Python (its client package, which
    the ``test`` and ``cluster`` extras install), or None when they can."""
    module = CLIENTS[service]
    if importlib.util.find_spec(module) is None:
        return f"the Python package {module} is not installed (pip install 'zCLI[test]')"
    return None


def requires_service(service: str) -> Callable[[T], T]:
    """Skip a test or class (fail it under ZTEST_STRICT=1) without ``service``'s binaries
    or its Python client; without loopback it skips as ``requires_network`` does (the
    service is reached over TCP), whatever ZTEST_STRICT says."""
    if service not in SERVICES:
        raise ValueError(f"There is no service named {service!r}; known: {sorted(SERVICES)}.")
    installed = requirement(
        lambda: service_missing(service) or client_missing(service), service, strict=True
    )

    def decorate(target: T) -> T:
        return requires_network(installed(target))

    return decorate


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class _Service:
    """A server process in a folder of its own, on a port chosen once and kept across
    ``stop()``/``start()``."""

    name = "service"
    ready = r"."  # the line that says it accepts connections

    def __init__(self, prefix: str, parent: str | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        self.host = "127.0.0.1"
        self.port = 0
        self.process: ServerProcess | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.process.poll() is None

    def start(self, units: float = 15) -> None:
        """Start it (on a free port the first time, on the same one after); returns once
        it says it is ready and its port accepts. A first start whose port was taken
        in the meantime tries another."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid}).")
        for attempt in range(3):
            first = self.port == 0
            if first:
                self.port = free_port(self.host)
            self.process = ServerProcess(self.command(), cwd=self.folder)
            try:
                self.process.wait_for(self.ready, units)
                self.process.wait_for_port(self.port, self.host, units)
                return
            except AssertionError:
                self.process.stop()
                if not first or attempt == 2 or "in use" not in self.process.tail():
                    raise
                self.port = 0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self, signum: int = signal.SIGTERM, units: float = 10) -> int:
        """Stop it by PID; the exit status (0 when it was not running)."""
        return self.process.stop(signum, units) if self.process is not None else 0

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self: T) -> T:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisServer(_Service):
    """``redis-server`` on a free port of 127.0.0.1; no persistence unless ``persist``
    (then an append-only file synced on every write, in its folder)."""

    name = "redis-server"
    ready = r"Ready to accept connections"

    def __init__(self, persist: bool = False) -> None:
        super().__init__("ztest-redis-")
        self.persist = persist
        binary = service_binaries("redis")["redis-server"]
        if binary is None:
            raise RuntimeError(f"requires redis: {service_missing('redis')}")
        self.binary = binary

    def command(self) -> list[str]:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        return [str(self.binary), "--port", str(self.port), "--bind", self.host,
                "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--protected-mode", "no", *persistence]  # fmt: skip

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"


class PostgresServer(_Service):
    """A PostgreSQL cluster made by ``initdb`` in its folder (superuser ``zcli``, trust
    auth), served by ``postgres`` on a free port of 127.0.0.1 and a Unix socket in the
    folder. ``stop()`` is a fast shutdown (SIGINT: clients are disconnected, nothing
    committed is lost); ``stop(signal.SIGKILL)`` a crash. It runs with ``fsync=off``
    (a killed server still loses nothing committed; a machine crash would) unless
    ``durable``, which a benchmark comparing it with a synced SQLite file wants."""

    name = "postgres"
    ready = r"database system is ready to accept connections"

    def __init__(self, durable: bool = False) -> None:
        super().__init__("ztest-pg-", _socket_parent())
        self.durable = durable
        binaries = service_binaries("postgresql")
        if None in binaries.values():
            raise RuntimeError(f"requires postgresql: {service_missing('postgresql')}")
        self.binaries: dict[str, Path] = {k: v for k, v in binaries.items() if v is not None}
        self.data = self.folder / "data"
        self._owner = _unprivileged() if os.geteuid() == 0 else None
        if self._owner is not None:
            os.chown(self.folder, self._owner.pw_uid, self._owner.pw_gid)
        initdb = [str(self.binaries["initdb"]), "-D", str(self.data), "-U", USER,
                  "--auth=trust", "--no-sync", "--encoding=UTF8", "--locale=C"]  # fmt: skip
        self._run(initdb)

    def _as_owner(self, command: list[str]) -> list[str]:
        if self._owner is None:
            return command
        return ["setpriv", "--reuid", str(self._owner.pw_uid), "--regid",
                str(self._owner.pw_gid), "--clear-groups", *command]  # fmt: skip

    def _run(self, command: list[str]) -> None:
        done = subprocess.run(
            self._as_owner(command),
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout(30),
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {done.returncode}:\n{done.stdout}{done.stderr}"
            )

    def command(self) -> list[str]:
        command = [str(self.binaries["postgres"]), "-D", str(self.data), "-p", str(self.port),
                   "-k", str(self.folder), "-c", f"listen_addresses={self.host}",
                   "-c", f"fsync={'on' if self.durable else 'off'}",
                   "-c", "logging_collector=off"]  # fmt: skip
        return self._as_owner(command)

    def stop(self, signum: int = signal.SIGINT, units: float = 10) -> int:
        return super().stop(signum, units)

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of ``database`` over TCP."""
        return f"postgresql://{USER}@{self.host}:{self.port}/{database}"

    def socket_url(self, database: str = "postgres") -> str:
        """A libpq URL of ``database`` over the Unix socket in the folder."""
        return f"postgresql://{USER}@/{database}?host={self.folder}&port={self.port}"

    def create_database(self, name: str) -> str:
        """A new empty database (``createdb``); its URL."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ValueError(f"{name!r} is not a plain database name.")
        self._run([str(self.binaries["createdb"]), "-h", str(self.folder), "-p",
                   str(self.port), "-U", USER, name])  # fmt: skip
        return self.url(name)


def _socket_parent() -> str | None:
    """Where PostgreSQL's folder goes: the temporary folder, unless its path is too long
    for a Unix socket (107 bytes) or another user cannot reach it (``postgres`` runs as
    its own user under root); then /tmp."""
    parent = Path(tempfile.gettempdir())
    reachable = all(p.stat().st_mode & 0o001 for p in (parent, *parent.parents))
    return None if reachable and len(str(parent)) <= 40 else "/tmp"


def _unprivileged() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("PostgreSQL cannot run as root, and there is no postgres or nobody user.")
