"""The terminal chat client of plan 001: ``zcli chat -c NICK HOST PORT [CLIENT_PORT]``.

It connects to ``ws://HOST:PORT`` (the fourth argument is accepted and ignored: plan
001's clients named a UDP port of their own), signs in and reads commands from stdin,
one a line, printing plan 001's lines as they happen (``terminal.Terminal`` decides
them; this module only moves frames and lines).

Signing in: the first use of a nickname registers it (``chat.register``, then ``auth``
with the token it returns); a nickname that exists signs in with ``login``. The
password is the first line of stdin with ``--password-stdin``, else the environment
variable ``ZCHAT_PASSWORD``, else the fixed default ``zchat`` so plan 001 runs exactly as
written (anyone may then sign in as that nickname: set a password for real use).

When the connection is lost it signs in again up to 5 times, waiting
``ZCHAT_RETRY_DELAY`` seconds (0.2) before the first try and doubling up to 8 times
that; what is typed meanwhile is sent once it is back. If every try fails it prints
``>>> [Server is shut down]`` and ``>>> [Exiting]`` and exits 1. ``exit`` signs out and
exits 0; Ctrl-C prints ``Caught keyboard interrupt. Exiting`` and exits 0; the end of
stdin waits for the replies to what was sent, then does what ``exit`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from .terminal import Output, Terminal

__all__ = ["DEFAULT_PASSWORD", "RETRIES", "SignInRefused", "run"]

DEFAULT_PASSWORD = "zchat"
RETRIES = 5
LINE_QUEUE = 100  # typed lines waiting for the event loop; the reader blocks beyond it


class SignInRefused(Exception):
    """The server refused the nickname or password; retrying will not help."""


def _timeout(seconds: float) -> float:
    return seconds * float(os.environ.get("ZCHAT_TIMEOUT_FACTOR", "1"))


def _target(args: Any) -> tuple[str, str, int]:
    """(nick, host, port) from ``zcli chat``'s arguments: ``args.client`` is either the
    list ``NICK HOST PORT [CLIENT_PORT]`` or the nick, with ``args.host``/``args.port``."""
    client = args.client
    if isinstance(client, (list, tuple)):
        if not 3 <= len(client) <= 4:
            raise ValueError("chat -c needs NICK HOST PORT [CLIENT_PORT].")
        nick, host, port = client[0], client[1], client[2]
    else:
        nick, host, port = client, args.host, args.port
    return str(nick), str(host), int(port)


def _print(output: Output) -> None:
    for line in output.lines:
        print(line, flush=True)


def _read_stdin(loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]) -> None:
    """Feed stdin's lines to ``lines`` (None at the end). Raw ``os.read`` on fd 0, so
    a pipe, a file or a terminal all work and no Python-level lock is held at exit."""
    buffer = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            if buffer:
                _put(loop, lines, buffer.decode("utf-8", "replace"))
            _put(loop, lines, None)
            return
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        for raw in complete:
            _put(loop, lines, raw.decode("utf-8", "replace").rstrip("\r"))


def _put(
    loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None], line: str | None
) -> None:
    try:
        asyncio.run_coroutine_threadsafe(lines.put(line), loop).result()
    except RuntimeError:  # the loop has closed: the client is leaving
        pass


class _Client:
    """One terminal client: a connection (or a reconnection under way), stdin, Ctrl-C."""

    def __init__(self, nick: str, host: str, port: int, password: str) -> None:
        self.nick, self.url, self.password = nick, f"ws://{host}:{port}", password
        self.terminal = Terminal(nick)
        self.retry_delay = float(os.environ.get("ZCHAT_RETRY_DELAY", "0.2"))
        self.registered = False  # whether this client has made sure the account exists
        self.ws: ClientConnection | None = None
        # The server closes a connection silent for ZCHAT_KEEPALIVE seconds (30).
        self.keepalive = float(os.environ.get("ZCHAT_KEEPALIVE", "30")) / 3

    # -- signing in -------------------------------------------------------------------

    async def _request(self, ws: ClientConnection, frame: dict[str, Any]) -> dict[str, Any]:
        """Send ``frame`` and return its reply; frames before it go to the terminal."""
        await ws.send(json.dumps(frame))
        while True:
            message = json.loads(await ws.recv())
            if not isinstance(message, dict):
                continue
            if message.get("_requestId") == frame["_requestId"]:
                return message
            if message.get("event") == "login" and "token" in message:
                return {"result": message}  # a login that opened a require_auth bridge
            if message.get("event") == "connection_info" and frame["event"] == "auth":
                return {"result": message}  # an auth that opened it: served from now on
            if "error" in message and message.get("_requestId") is None:
                return message  # a sign-in refused before connection_info
            await self._deliver(ws, self.terminal.receive(message))

    async def _sign_in(self, ws: ClientConnection) -> None:
        if not self.registered:
            reply = await self._request(
                ws,
                {
                    "event": "chat.register",
                    "data": {"username": self.nick, "password": self.password},
                    "_requestId": "register",
                },
            )
            if "result" in reply:
                self.registered = True
                reply = await self._request(
                    ws, {"event": "auth", "token": reply["result"]["token"], "_requestId": "auth"}
                )
                if "error" in reply:
                    raise SignInRefused(reply["error"])
                return
            if reply.get("code") != "user_exists":
                raise SignInRefused(reply["error"])
            self.registered = True
        reply = await self._request(
            ws,
            {
                "event": "login",
                "username": self.nick,
                "password": self.password,
                "_requestId": "login",
            },
        )
        if "error" in reply:
            raise SignInRefused(reply["error"])

    async def _connect(self) -> ClientConnection:
        ws = await asyncio.wait_for(connect(self.url, open_timeout=None), _timeout(10))
        try:
            await asyncio.wait_for(self._sign_in(ws), _timeout(10))
        except BaseException:
            await ws.close()
            raise
        self.ws = ws
        await self._deliver(ws, self.terminal.connection_made())
        return ws

    async def _reconnect(self) -> ClientConnection | None:
        """Up to RETRIES tries with capped backoff; None when every one failed."""
        delay = self.retry_delay
        for _ in range(RETRIES):
            await asyncio.sleep(delay)  # backoff between tries of a server that is gone
            delay = min(delay * 2, self.retry_delay * 8)
            try:
                return await self._connect()
            except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
                continue
        return None

    # -- the loop ---------------------------------------------------------------------

    async def _deliver(self, ws: ClientConnection | None, output: Output) -> None:
        _print(output)
        if ws is None:
            return
        for frame in output.frames:
            await ws.send(json.dumps(frame))

    async def _leave(self, ws: ClientConnection | None) -> None:
        """After ``exit``: wait for the sign-out's reply (or the close), then close."""
        if ws is None:
            return
        try:
            async with asyncio.timeout(_timeout(2)):
                while not self.terminal.signed_out:
                    message = json.loads(await ws.recv())
                    if isinstance(message, dict):
                        _print(self.terminal.receive(message))
        except (ConnectionClosed, TimeoutError):
            pass
        await ws.close()

    async def _settle(self, ws: ClientConnection) -> int:
        """At the end of stdin: until every request is answered, then sign out."""
        try:
            async with asyncio.timeout(_timeout(5)):
                while self.terminal.busy:
                    message = json.loads(await ws.recv())
                    if isinstance(message, dict):
                        await self._deliver(ws, self.terminal.receive(message))
        except (ConnectionClosed, TimeoutError):
            return 0
        await self._send_quietly(ws, self.terminal.command("exit"))
        await self._leave(ws)
        return 0

    async def run(self, lines: asyncio.Queue[str | None]) -> int:
        interrupted = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGINT, interrupted.set)
        ws: ClientConnection | None = None
        try:
            ws = await self._connect()
        except (OSError, ConnectionClosed, InvalidHandshake, TimeoutError):
            pass
        except SignInRefused as refused:
            print(f">>> [{refused}]", flush=True)
            return 1
        link: asyncio.Task[Any] | None = asyncio.create_task(ws.recv() if ws else self._reconnect())
        typed: asyncio.Future[str | None] = asyncio.create_task(lines.get())
        stop = asyncio.create_task(interrupted.wait())
        tick = asyncio.create_task(asyncio.sleep(self.keepalive))
        stdin_ended = False
        try:
            while True:
                assert link is not None
                done, _ = await asyncio.wait(
                    {link, typed, stop, tick}, return_when=asyncio.FIRST_COMPLETED
                )
                if stop in done:
                    if ws is not None:
                        await ws.close()
                    _print(self.terminal.interrupted())
                    return 0
                if tick in done:
                    await self._send_quietly(ws, self.terminal.keepalive())
                    tick = asyncio.create_task(asyncio.sleep(self.keepalive))
                if typed in done:
                    line = typed.result()
                    if line is None:  # the end of stdin: no more commands
                        stdin_ended = True
                        typed = asyncio.get_running_loop().create_future()
                        if ws is not None:
                            return await self._settle(ws)
                    else:
                        output = self.terminal.command(line)
                        await self._send_quietly(ws, output)
                        if output.exit is not None:
                            await self._leave(ws)
                            return output.exit
                        typed = asyncio.create_task(lines.get())
                if link in done:
                    reconnecting = ws is None
                    ws, link = await self._follow(ws, link)
                    if link is None:
                        _print(self.terminal.give_up())
                        return 1
                    if reconnecting and ws is not None and stdin_ended:
                        return await self._settle(ws)  # stdin ended while reconnecting
        except SignInRefused as refused:
            print(f">>> [{refused}]", flush=True)
            return 1
        finally:
            for task in (link, typed, stop, tick):
                if task is not None:
                    task.cancel()

    async def _send_quietly(self, ws: ClientConnection | None, output: Output) -> None:
        try:
            await self._deliver(ws, output)
        except ConnectionClosed:
            pass  # the link task sees the close and reconnects

    async def _follow(
        self, ws: ClientConnection | None, link: asyncio.Task[Any]
    ) -> tuple[ClientConnection | None, asyncio.Task[Any] | None]:
        """The next link task after ``link`` finished: read on, or reconnect."""
        if ws is None:  # a reconnection finished
            ws = link.result()
            if ws is None:
                return None, None
            return ws, asyncio.create_task(ws.recv())
        try:
            message = json.loads(link.result())
        except ConnectionClosed:
            self.terminal.connection_lost()
            self.ws = None
            return None, asyncio.create_task(self._reconnect())
        if isinstance(message, dict):
            try:
                await self._deliver(ws, self.terminal.receive(message))
            except ConnectionClosed:
                pass  # the next recv sees it
        return ws, asyncio.create_task(ws.recv())


def _password(args: Any) -> str:
    if getattr(args, "password_stdin", False):
        # Byte by byte on fd 0, so the commands after it stay for the stdin reader.
        line = b""
        while (byte := os.read(0, 1)) not in (b"", b"\n"):
            line += byte
        return line.decode("utf-8", "replace").rstrip("\r") or DEFAULT_PASSWORD
    return os.environ.get("ZCHAT_PASSWORD") or DEFAULT_PASSWORD


async def _main(nick: str, host: str, port: int, password: str) -> int:
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue(LINE_QUEUE)
    threading.Thread(target=_read_stdin, args=(loop, lines), name="stdin", daemon=True).start()
    return await _Client(nick, host, port, password).run(lines)


def run(args: Any) -> int:
    """``zcli chat -c NICK HOST PORT [CLIENT_PORT]``: the exit status."""
    try:
        nick, host, port = _target(args)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    return asyncio.run(_main(nick, host, port, _password(args)))
