"""The zCLI object: builds the subsystems in order and runs the configured mode."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

from . import fast
from .config import Config, load_config
from .dispatch import Dispatcher
from .display import Display
from .exceptions import ConfigError
from .plugins import Registry
from .terminal import TerminalRenderer
from .walker import zWalker
from .zui import ZuiLoader

if TYPE_CHECKING:
    from .auth import zAuth
    from .bridge import zBifrost
    from .http_server import zServer

__all__ = ["zCLI"]


class zCLI:
    """One app: its configuration, plugins, zUI files, dispatcher and walker.

    Construction order is the dependency order: zConfig, logging, zDisplay, plugins
    (zFunc), the zUI loader and zDispatch, zWalker. Everything that can be checked is
    checked here, so a bad config, plugin or zUI file fails before anything runs.
    zAuth, zComm (the zBifrost bridge) and zServer are built on first use, so Terminal
    mode never creates their files or sockets.
    """

    # zcli serve --workers: called once zBifrost (and zServer) listen
    on_listening: Callable[[], None] | None = None

    def __init__(self, zSpark: Mapping[str, Any] | None = None) -> None:
        self.config: Config = load_config(zSpark)
        self.logger = logging.getLogger("zCLI")
        self.logger.setLevel(self.config.logger)
        self.workspace = self.config.zWorkspace.resolve()
        self.state_dir = self.workspace / self.config.state_dir  # absolute stays absolute
        self.display = Display(TerminalRenderer(sys.stdout))
        self.plugins = Registry()
        self.plugins.discover(self.config.plugins, self.workspace)
        self.loader = ZuiLoader(self.workspace, self.plugins)
        self.dispatch = Dispatcher(self.loader, self.plugins)
        self.walker = zWalker(self.dispatch, self)
        if self.config.zVaFile is not None:
            zui = self.loader.load(self.config.zVaFile)
            if self.config.zBlock is not None and self.config.zBlock not in zui.blocks:
                raise ConfigError([f"zBlock: {zui.path.name} has no block {self.config.zBlock!r}"])
        self._auth: zAuth | None = None
        self._auth_lock = threading.Lock()  # zServer's threads may ask for it first
        self._comm: zBifrost | None = None
        self._server: zServer | None = None

    @property
    def auth(self) -> zAuth:
        if self._auth is None:
            with self._auth_lock:
                if self._auth is None:
                    from .auth import zAuth

                    self._auth = zAuth(self.config.auth, self.state_dir)
        return self._auth

    @property
    def comm(self) -> zBifrost:
        if self._comm is None:
            from .bridge import zBifrost

            self._comm = zBifrost(self)
        return self._comm

    @property
    def server(self) -> zServer:
        if self._server is None:
            from .http_server import zServer

            self._server = zServer(self)
        return self._server

    @property
    def bridge_url(self) -> str:
        """Where clients reach zBifrost: its bound port when it runs, else the config's."""
        ws = self.config.websocket
        port = self._comm.port if self._comm is not None and self._comm.running else ws.port
        return f"ws://{ws.host}:{port}"

    def close(self) -> None:
        """Release what zAuth holds open (its SQLite connections), if it was built."""
        if self._auth is not None:
            self._auth.close()
            self._auth = None

    def run(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
        """Run the configured mode to the end and return the exit status."""
        if self.config.zMode == "Terminal":
            if self.config.zVaFile is None:
                raise ConfigError(["zVaFile: a zUI file is needed to walk in the terminal"])
            session = self.walker.start(self.config.zVaFile, self.config.zBlock)
            return self.walker.run_terminal(session, stdin or sys.stdin, stdout or sys.stdout)
        renderer = TerminalRenderer(stdout or sys.stdout)
        serving = self.serve(renderer, freeze=True)
        return fast.run(serving, bool(self.config.websocket.fast))  # uvloop if fast

    async def serve(self, renderer: TerminalRenderer | None = None, freeze: bool = False) -> int:
        """zBifrost mode: serve until SIGINT or SIGTERM, then stop both servers cleanly.

        ``freeze`` (the process is the server's, as under ``zcli serve``): once both
        servers listen, what start-up built (config, zUI models, plugins and their
        state) is moved out of the garbage collector's reach with ``gc.freeze()``, so
        a full collection scans only what connections add (a served app's 34,000
        start-up objects cost each full collection 5 ms on the bench machine)."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_accept_failures(loop.get_exception_handler()))
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            if self.config.http_server.enabled:
                _ = self.server  # a bad serve_path stops start-up before anything listens
            await self.comm.start()
            if renderer is not None:
                renderer.write(f"zBifrost listening on {self.comm.url}")
            if self.config.http_server.enabled:
                self.server.start()
                if renderer is not None:
                    renderer.write(f"zServer listening on {self.server.url}")
            if freeze:
                gc.freeze()
            if self.on_listening is not None:
                self.on_listening()
            await stop.wait()
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
            if self._server is not None:
                self._server.stop()
            await self.comm.stop()
            self.close()
        if renderer is not None:
            renderer.write("Stopped.")
        return 0


def _quiet_accept_failures(fallback: Any) -> Any:
    """An event-loop exception handler: when the bridge's accept() fails for lack of file
    descriptors, asyncio retries a second later and would log a traceback each time; say
    it in one line a second instead. Everything else goes to ``fallback``."""
    from .bridge.limits import LogThrottle

    throttle = LogThrottle()
    log = logging.getLogger("zCLI.zBifrost")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        if isinstance(error, OSError) and error.errno in (errno.EMFILE, errno.ENFILE):
            count = throttle.hit(loop.time())
            if count:
                log.warning(
                    "zBifrost cannot accept connections: %s (%d time(s) since the last line)",
                    error.strerror,
                    count,
                )
            return
        if fallback is not None:
            fallback(loop, context)
        else:
            loop.default_exception_handler(context)

    return handle
