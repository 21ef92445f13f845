"""Plan 002's shared part: the chat server under test, a WebSocket chat client, and the
base test case whose asserts speak docs/chat.md.

The suites are black-box: they talk to the server only over its WebSocket (zBifrost
frames, docs/protocol.md) and its HTTP API (zServer). With the target ``CHAT`` unset a
suite starts ``zcli chat -s`` itself, as a user runs it, on free ports in a folder of its
own; with ``CHAT`` (and ``CHAT_HTTP``) given it tests that server instead, so every name
a test creates carries a random tag and every list the server returns is read through
that tag: a long-running server holds other users.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import signal
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection

from zTestSuite import ServerProcess, Target, requires_network, timeout

__all__ = [
    "CHAT",
    "CHAT_HTTP",
    "CHAT_KEEPALIVE",
    "CHAT_TOKEN_TTL",
    "CHAT_EVENTS",
    "PASSWORD",
    "REQUIRED",
    "SHORT",
    "SIGNED_OUT",
    "Account",
    "ChatClient",
    "ChatTestCase",
    "OwnServer",
    "Sent",
    "token_claims",
]

CHAT = Target(
    "CHAT", "ws:// URL of a zChat server under test; unset: the suite starts `zcli chat -s` itself"
)
CHAT_HTTP = Target(
    "CHAT_HTTP",
    "http:// URL of the HTTP API (zServer) of the server CHAT names; unset with CHAT given: "
    "the tests that need HTTP skip",
)
CHAT_KEEPALIVE = Target(
    "CHAT_KEEPALIVE",
    "the keep-alive seconds (--keepalive) of the server CHAT names; unset with CHAT given: "
    "the keep-alive suite skips",
)
CHAT_TOKEN_TTL = Target(
    "CHAT_TOKEN_TTL",
    "the token lifetime in seconds (--token-ttl) of the server CHAT names; unset with "
    "CHAT given: the expired-token test skips",
)

# The chat events docs/chat.md lists, all of which connection_info must announce.
CHAT_EVENTS = (
    "chat.ack", "chat.dereg", "chat.keepalive", "chat.online", "chat.reg", "chat.register",
    "chat.room.create", "chat.room.history", "chat.room.join", "chat.room.leave",
    "chat.room.send", "chat.rooms", "chat.send", "chat.send_all", "chat.users",
)  # fmt: skip
REQUIRED = "Authentication required: send a token or log in first."  # protocol.md's refusal
SIGNED_OUT = "Signed out."
PASSWORD = "plan-002-secret"
# The keep-alive, sign-in timeout, ack timeout and token lifetime of the servers these
# suites start: short enough to wait for in a test, scaled like every harness timeout.
SHORT = timeout(0.25)


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, read without checking it (the test only needs ``exp``)."""
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _with_token(url: str, token: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"token={quote(token, safe='')}") if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, ""))


# --- the server under test ---------------------------------------------------------------


class OwnServer:
    """``zcli chat -s`` as a user runs it, in a temporary folder of its own (database,
    users, signing key) on free ports; ``restart`` starts it again on the same ports and
    the same folder, as an operator restarts a server its clients know the address of.
    ``db`` is its ``--db``: by default ``chat.sqlite3`` in that folder, or a
    ``postgresql://`` URL."""

    def __init__(
        self,
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        db: str | None = None,
    ) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="zchat-plan002-")
        self.folder = Path(self._folder.name)
        self.options = [str(option) for option in options]
        self.env = dict(env or {})
        self.db = db or str(self.folder / "chat.sqlite3")
        self.process: ServerProcess | None = None
        self.ws_url = self.http_url = ""

    @property
    def ws_urls(self) -> list[str]:
        return [self.ws_url]

    def start(self, ws_port: int = 0, http_port: int = 0) -> None:
        command = [sys.executable, "-m", "zCLI", "chat", "-s", str(ws_port)]
        command += ["--http-port", str(http_port), "--db", self.db]
        command += ["--workspace", str(self.folder), *self.options]
        self.process = ServerProcess(command, cwd=self.folder, env=self.env)
        try:
            self.ws_url = self.process.wait_for(r"^zBifrost listening on (ws://\S+)$").group(1)
            self.http_url = self.process.wait_for(r"^zServer listening on (http://\S+)$").group(1)
        except BaseException:
            self.process.stop()
            raise

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Stop it (SIGTERM: the graceful stop; SIGKILL: a crash); the exit status."""
        return self.process.stop(signum) if self.process is not None else 0

    def restart(self, signum: int = signal.SIGTERM) -> None:
        ws_port, http_port = urlsplit(self.ws_url).port, urlsplit(self.http_url).port
        self.stop(signum)
        self.start(ws_port or 0, http_port or 0)

    def close(self) -> None:
        self.stop()
        self._folder.cleanup()


# --- the client ----------------------------------------------------------------------------


class ChatClient:
    """One WebSocket connection, read by one task. A frame whose ``_requestId`` matches a
    request of ours is that request's reply; every other frame (pushed events, the
    sign-in answer, a refusal) is a push, kept in arrival order until a test takes it."""

    def __init__(self, ws: ClientConnection, label: str) -> None:
        self.ws = ws
        self.label = label
        self.user: str | None = None  # set once signed in
        self.token: str | None = None  # the token it signed in with
        self.pushes: list[dict[str, Any]] = []  # not taken yet
        self.history: list[dict[str, Any]] = []  # every push, in order
        self.closed = False
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(
        cls, url: str, label: str, *, token: str | None = None, bearer: str | None = None
    ) -> ChatClient:
        """Connect; ``token`` goes in the URL (``?token=``), ``bearer`` in the
        ``Authorization`` header."""
        if token is not None:
            url = _with_token(url, token)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else None
        ws = await websockets.connect(
            url, additional_headers=headers, proxy=None, open_timeout=timeout(3)
        )
        return cls(ws, label)

    def __repr__(self) -> str:
        return f"<ChatClient {self.label}>"

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                try:
                    message = json.loads(frame)
                except ValueError:
                    message = {"not JSON": frame}
                rid = message.get("_requestId") if isinstance(message, dict) else None
                future = self._replies.pop(rid, None) if isinstance(rid, int) else None
                if future is not None and not future.done():
                    future.set_result(message)
                else:
                    self.pushes.append(message)
                    self.history.append(message)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed = True
            for rid, future in self._replies.items():
                if not future.done():
                    future.set_exception(
                        AssertionError(f"{self} {self._closing()} before reply {rid}")
                    )
            self._replies.clear()
            self._changed.set()

    def _closing(self) -> str:
        return f"was closed ({self.close_code} {self.close_reason!r})"

    async def close(self) -> None:
        await self.ws.close()
        await self._reader

    # --- sending and waiting ----------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        """A frame as it is, with no reply to wait for (a first-message sign-in)."""
        await self.ws.send(json.dumps(frame))

    async def request(
        self, event: str, data: Any = None, units: float = 3, **fields: Any
    ) -> dict[str, Any]:
        """Send ``event`` with ``data`` (and top-level ``fields``) and a fresh
        ``_requestId``; the whole reply frame."""
        self._next_id += 1
        rid = self._next_id
        frame: dict[str, Any] = {"event": event, **fields, "_requestId": rid}
        if data is not None:
            frame["data"] = data
        future = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        try:
            await self.send(frame)
        except BaseException:  # closed before it went: nobody will wait for a reply
            self._replies.pop(rid, None)
            if future.done() and not future.cancelled():
                future.exception()  # the reader failed it as it closed: seen here
            raise
        try:
            return await asyncio.wait_for(future, timeout(units))
        except TimeoutError:
            raise AssertionError(
                f"{self}: no reply to {frame} within {timeout(units):g} s"
            ) from None

    async def call(self, event: str, data: Any = None, **fields: Any) -> Any:
        """The ``result`` of a request that must succeed."""
        reply = await self.request(event, data, **fields)
        if set(reply) != {"result", "_requestId"}:
            raise AssertionError(f"{self}: {event} {data} was answered {reply}")
        return reply["result"]

    async def ping(self) -> None:
        """A round trip. Whatever the server had queued for this connection before it
        read the ping arrives before the pong: the barrier ``expect_no`` stands on."""
        reply = await self.request("ping")
        if reply != {"event": "pong", "_requestId": reply.get("_requestId")}:
            raise AssertionError(f"{self}: ping was answered {reply}")

    async def wait_for(self, found: Callable[[], Any], what: str, units: float = 3) -> Any:
        """Until ``found()`` returns something other than None (checked on each frame);
        AssertionError when the connection closes or ``units`` timeouts pass first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout(units)
        while True:
            result = found()
            if result is not None:
                return result
            if self.closed:
                raise AssertionError(f"{self} {self._closing()} before {what}; "
                                     f"pushes not taken: {self.pushes}")  # fmt: skip
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"{self}: no {what} within {timeout(units):g} s; "
                                     f"pushes not taken: {self.pushes}")  # fmt: skip
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    def _take(
        self, event: str | None, where: Callable[[dict[str, Any]], bool] | None, latest: bool
    ) -> Any:
        for index, push in enumerate(self.pushes):
            if (event is None or push.get("event") == event) and (where is None or where(push)):
                del self.pushes[index]
                if latest:  # the pushes of ``event`` before it are outdated snapshots
                    self.pushes[:index] = [
                        p for p in self.pushes[:index] if p.get("event") != event
                    ]
                return push
        return None

    async def expect(
        self,
        event: str | None,
        where: Callable[[dict[str, Any]], bool] | None = None,
        units: float = 3,
        latest: bool = False,
    ) -> dict[str, Any]:
        """Take the first push of ``event`` (None: any) for which ``where`` holds,
        waiting for it; the whole frame. With ``latest`` (snapshots such as
        ``chat.clients``) the earlier pushes of ``event`` go too: they are outdated."""
        found = await self.wait_for(
            lambda: self._take(event, where, latest), f"push {event}", units
        )
        return dict(found)

    async def expect_error(self, units: float = 3) -> dict[str, Any]:
        """Take the first pushed error (a frame with ``error`` and no ``event``)."""
        return await self.expect(None, lambda push: "error" in push, units)

    async def expect_no(
        self, event: str, where: Callable[[dict[str, Any]], bool] | None = None
    ) -> None:
        """No push of ``event`` (matching ``where``) has come or is on its way: after a
        round trip (``ping``) none is waiting."""
        await self.ping()
        waiting = [
            p for p in self.pushes if p.get("event") == event and (where is None or where(p))
        ]
        if waiting:
            raise AssertionError(f"{self} got {waiting}")

    async def wait_closed(self, units: float = 3) -> tuple[int | None, str | None]:
        """(code, reason) of the close the server sent, once the connection has closed."""
        await self.wait_for(lambda: True if self.closed else None, "close", units)
        return self.close_code, self.close_reason


# --- data the tests pass around ------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    name: str
    password: str
    token: str  # the one chat.register returned


@dataclass(frozen=True)
class Sent:
    """A ``chat.send`` the server accepted: its result."""

    id: int
    ts: float
    sender: str
    to: str
    text: str

    def message(self, offline: bool = False) -> dict[str, Any]:
        """The ``chat.message`` push its addressee must get."""
        data: dict[str, Any] = {
            "id": self.id,
            "from": self.sender,
            "text": self.text,
            "ts": self.ts,
        }
        if offline:
            data["offline"] = True
        return {"event": "chat.message", "data": data}


# --- the base test case -----------------------------------------------------------------


@requires_network
class ChatTestCase(unittest.IsolatedAsyncioTestCase):
    """Finds the server under test (``CHAT`` or one started here) and gives each test a
    random ``tag`` for the names it creates, plus clients and asserts in chat terms."""

    server_options: ClassVar[Sequence[str]] = ()  # options of the server we start
    server_env: ClassVar[Mapping[str, str]] = {}
    server_per_test: ClassVar[bool] = False  # a fresh server for each test
    own_server_only: ClassVar[str] = ""  # why this class cannot test a given CHAT server
    database_url: ClassVar[str | None] = None  # the --db of the server we start (None: SQLite)
    needs_target: ClassVar[Target | None] = None  # what it must know of a given server
    server: ClassVar[OwnServer | None] = None
    ws_url: ClassVar[str] = ""
    http_url: ClassVar[str | None] = None
    # every process of the server under test (a cluster has several): each user's
    # connections go to them in turn, the first to the next process after the last user's
    ws_urls: ClassVar[Sequence[str]] = ()

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()  # requires_network has checked loopback before this
        cls.server = None
        if CHAT.value is not None:
            if cls.own_server_only:
                raise unittest.SkipTest(
                    f"target CHAT is given ({CHAT.value}), but {cls.own_server_only}"
                )
            needs = cls.needs_target
            if needs is not None and needs.value is None:
                raise unittest.SkipTest(
                    f"target CHAT is given, but not {needs.name} ({needs.env}): {needs.meaning}"
                )
            cls.ws_url, cls.http_url = CHAT.value, CHAT_HTTP.value
        elif not cls.server_per_test:
            cls._start_own()
            cls.addClassCleanup(cls._stop_own)

    @classmethod
    def _own_server(cls) -> OwnServer:
        """The server this class starts (a cluster's class returns its cluster)."""
        return OwnServer(cls.server_options, cls.server_env, cls.database_url)

    @classmethod
    def _start_own(cls) -> None:
        cls.server = cls._own_server()
        try:
            cls.server.start()
        except BaseException:
            cls.server.close()
            raise
        cls.ws_url, cls.http_url = cls.server.ws_url, cls.server.http_url
        cls.ws_urls = cls.server.ws_urls

    @classmethod
    def _stop_own(cls) -> None:
        if cls.server is not None:
            cls.server.close()
            cls.server = None

    async def asyncSetUp(self) -> None:
        await super().asyncSetUp()
        if self.server_per_test and CHAT.value is None:
            await asyncio.to_thread(type(self)._start_own)
            self.addCleanup(type(self)._stop_own)
        self.tag = "t" + secrets.token_hex(4)
        self.clients: list[ChatClient] = []
        self._places: dict[str, list[int]] = {}  # user -> [their first process, connections]
        self.addAsyncCleanup(self._close_clients)

    async def _close_clients(self) -> None:
        await asyncio.gather(*(client.close() for client in self.clients))

    @property
    def own(self) -> OwnServer:
        """The server this class started; the test skips when it tests a given one."""
        if self.server is None:
            self.skipTest("needs a server of its own; target CHAT is given")
        return self.server

    async def restart(self, signum: int = signal.SIGTERM) -> None:
        """Stop our server and start it again on the same ports and folder. In a thread:
        the clients must go on reading (the close handshake) while it stops."""
        await asyncio.to_thread(self.own.restart, signum)
        type(self).ws_url, type(self).http_url = self.own.ws_url, self.own.http_url
        type(self).ws_urls = self.own.ws_urls

    # --- names and accounts -------------------------------------------------------

    def name(self, label: str) -> str:
        """A user or room name of this test: ``<tag>-<label>``, sorted as the labels."""
        name = f"{self.tag}-{label}"
        if len(name) > 32:
            raise ValueError(f"{name!r} is longer than a chat name may be (32): shorten {label!r}")
        return name

    def mine(self, name: str) -> bool:
        return name.startswith(self.tag + "-")

    def url_for(self, user: str | None) -> str:
        """Where the next connection of ``user`` goes: on a cluster, a user's
        connections take its processes in turn, each user starting one process further
        than the user before (so a test's users are spread, and a user who signs in
        again lands on another process); anything else goes to the first."""
        if user is None or len(self.ws_urls) < 2:
            return self.ws_url
        place = self._places.setdefault(user, [len(self._places), 0])
        index = (place[0] + place[1]) % len(self.ws_urls)
        place[1] += 1
        return self.ws_urls[index]

    async def connect(
        self,
        label: str = "client",
        *,
        token: str | None = None,
        bearer: str | None = None,
        user: str | None = None,
    ) -> ChatClient:
        """A new connection (not signed in unless ``token``/``bearer`` does it), closed
        when the test ends; ``user`` is whose it will be (on a cluster, it picks the
        process)."""
        url = self.url_for(user)
        client = await ChatClient.open(url, label, token=token, bearer=bearer)
        self.clients.append(client)
        return client

    async def register(self, label: str, password: str = PASSWORD) -> Account:
        """Create the account ``name(label)`` with ``chat.register`` on a connection of
        its own, which then closes: the user exists and is offline."""
        client = await self.connect(f"register {label}", user=self.name(label))
        account = await self.register_on(client, label, password)
        await client.close()
        return account

    async def register_on(
        self, client: ChatClient, label: str, password: str = PASSWORD
    ) -> Account:
        name = self.name(label)
        result = await client.call("chat.register", {"username": name, "password": password})
        self.assertEqual(set(result), {"user", "token"}, result)
        self.assertEqual(result["user"], name)
        self.assertIsInstance(result["token"], str)
        return Account(name, password, result["token"])

    async def sign_in(
        self, account: Account, how: str = "auth", *, token: str | None = None, arrives: bool = True
    ) -> ChatClient:
        """A new connection signed in as ``account``: ``how`` is ``auth`` (first message
        with the token), ``url`` (``?token=``), ``bearer`` (the header) or ``login``
        (first message with the password). Checks connection_info; with ``arrives`` (the
        user was offline) waits for the ``chat.clients`` that shows the user online."""
        token = account.token if token is None else token
        client = await self.connect(
            account.name,
            token=token if how == "url" else None,
            bearer=token if how == "bearer" else None,
            user=account.name,
        )
        if how == "auth":
            await client.send({"event": "auth", "token": token})
        elif how == "login":
            await client.send(
                {"event": "login", "username": account.name, "password": account.password}
            )
            login = await client.expect("login")
            self.assertEqual(
                login,
                {"event": "login", "token": login.get("token"), "user": account.name,
                 "role": "user"},
            )  # fmt: skip
            self.assertIsInstance(login["token"], str)
            token = login["token"]
        client.token = token
        await self.signed_in(client, account.name, arrives)
        return client

    async def signed_in(self, client: ChatClient, name: str, arrives: bool = True) -> None:
        """``client`` gets connection_info for ``name`` (and, with ``arrives``, the table
        showing ``name`` online)."""
        self.assertConnectionInfo(await client.expect("connection_info"), name)
        client.user = name
        if arrives:
            await self.expect_online(client, name, True)

    async def user(self, label: str, password: str = PASSWORD) -> ChatClient:
        """A new user, signed in: ``chat.register`` then ``auth`` with the token it
        returned, on one connection (docs/chat.md's sign-up)."""
        client = await self.connect(label, user=self.name(label))
        account = await self.register_on(client, label, password)
        await client.send({"event": "auth", "token": account.token})
        client.token = account.token
        await self.signed_in(client, account.name)
        return client

    def account_of(self, client: ChatClient) -> Account:
        """The account a signed-in client holds: its name, token, and the password every
        test user gets unless told otherwise."""
        assert client.user is not None and client.token is not None
        return Account(client.user, PASSWORD, client.token)

    async def users(self, *labels: str) -> list[ChatClient]:
        """Users signed in one after the other; each has seen the table with itself,
        and those before it a table with it online (so whichever process serves them
        knows it is: on a cluster that word crosses between processes)."""
        clients: list[ChatClient] = []
        for label in labels:
            client = await self.user(label)
            for earlier in clients:
                await self.seen_online(earlier, client.user or "")
            clients.append(client)
        return clients

    # --- HTTP ---------------------------------------------------------------------------

    async def http(
        self, method: str, path: str, body: Any = None, token: str | None = None
    ) -> tuple[int, Any]:
        """(status, JSON body) of a request to the HTTP API; skips without CHAT_HTTP."""
        if not self.http_url:
            self.skipTest("needs the HTTP API: target CHAT_HTTP is not given")
        url = self.http_url.rstrip("/") + path
        data = json.dumps(body).encode() if body is not None else b""
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

        def fetch() -> tuple[int, Any]:
            try:
                with opener.open(request, timeout=timeout(3)) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as refused:
                with refused:
                    return refused.code, json.loads(refused.read())

        return await asyncio.to_thread(fetch)

    # --- waiting in chat terms ------------------------------------------------------------

    def view(self, table: list[dict[str, Any]]) -> dict[str, bool]:
        """A user table (``chat.clients``, ``chat.users``) checked for shape and order,
        cut to this test's users: name -> online."""
        self.assertIsInstance(table, list)
        for entry in table:
            self.assertEqual(set(entry), {"user", "online"}, entry)
            self.assertIsInstance(entry["user"], str)
            self.assertIsInstance(entry["online"], bool)
        names = [entry["user"] for entry in table]
        self.assertEqual(names, sorted(set(names)), "the table is sorted by name, once each")
        return {entry["user"]: entry["online"] for entry in table if self.mine(entry["user"])}

    def table_of(self, push: dict[str, Any]) -> dict[str, bool]:
        self.assertEqual(set(push), {"event", "data"}, push)
        self.assertEqual(set(push["data"]), {"table"}, push)
        return self.view(push["data"]["table"])

    async def expect_table(self, client: ChatClient, expected: Mapping[str, bool]) -> None:
        """``client`` gets a ``chat.clients`` whose table, cut to this test's users, is
        exactly ``expected`` (earlier tables of a long-running server's traffic pass)."""
        await client.expect(
            "chat.clients", lambda push: self.table_of(push) == dict(expected), latest=True
        )

    async def seen_online(self, client: ChatClient, name: str) -> None:
        """``client`` has had a ``chat.clients`` with ``name`` online; unlike
        ``expect_online`` it leaves the pushes for the test to take."""

        def seen() -> bool | None:
            for push in client.pushes:
                if push.get("event") == "chat.clients" and self.table_of(push).get(name):
                    return True
            return None

        await client.wait_for(seen, f"a chat.clients with {name} online")

    async def expect_online(
        self, client: ChatClient, name: str, online: bool, units: float = 3
    ) -> None:
        """``client`` gets a ``chat.clients`` in which ``name`` is (not) online."""
        await client.expect(
            "chat.clients",
            lambda push: self.table_of(push).get(name) is online,
            units=units,
            latest=True,
        )

    async def send(self, sender: ChatClient, to: str, text: str) -> Sent:
        """``chat.send``; its result is exactly ``{"id", "ts"}``, a positive id and the
        server's time."""
        before = time.time()
        result = await sender.call("chat.send", {"to": to, "text": text})
        self.assertEqual(set(result), {"id", "ts"}, result)
        self.assertIsInstance(result["id"], int)
        self.assertGreater(result["id"], 0)
        self.assertIsInstance(result["ts"], float)
        self.assertLessEqual(abs(result["ts"] - before), timeout(5), "ts is the server's time")
        assert sender.user is not None
        return Sent(result["id"], result["ts"], sender.user, to, text)

    async def receive(self, client: ChatClient, sent: Sent, offline: bool = False) -> None:
        """``client`` gets ``sent`` exactly (the next ``chat.message``) and acknowledges it."""
        self.assertEqual(await client.expect("chat.message"), sent.message(offline))
        self.assertEqual(await client.call("chat.ack", {"id": sent.id}), {"acked": True})

    async def expect_status(self, sender: ChatClient, sent: Sent, status: str) -> None:
        """The sender's ``chat.status`` for ``sent`` is exactly ``status``."""
        push = await sender.expect("chat.status", lambda p: p.get("data", {}).get("id") == sent.id)
        self.assertEqual(push, {"event": "chat.status", "data": {"id": sent.id, "status": status}})

    async def deliver(self, sender: ChatClient, addressee: ChatClient, text: str) -> Sent:
        """A message both online: sent, received, acknowledged, reported delivered."""
        assert addressee.user is not None
        sent = await self.send(sender, addressee.user, text)
        await self.receive(addressee, sent)
        await self.expect_status(sender, sent, "delivered")
        return sent

    async def wait_expired(self, token: str) -> None:
        """Until the token's ``exp`` has passed on this machine's clock (the server's).
        Waiting for a moment read from the token is the condition itself."""
        expires = float(token_claims(token)["exp"])
        while (left := expires - time.time()) >= 0:
            await asyncio.sleep(left + 0.01)

    # --- asserts ------------------------------------------------------------------------------

    def assertResult(self, reply: dict[str, Any], result: Any) -> None:  # noqa: N802
        """A reply is exactly ``{"result": result, "_requestId": <ours>}``."""
        self.assertEqual(reply, {"result": result, "_requestId": reply.get("_requestId")})
        self.assertIsInstance(reply["_requestId"], int)

    def assertError(self, reply: dict[str, Any], code: str, sentence: str) -> None:  # noqa: N802
        """A reply is exactly ``{"error": sentence, "code": code, "_requestId": <ours>}``."""
        expected = {"error": sentence, "code": code, "_requestId": reply.get("_requestId")}
        self.assertEqual(reply, expected)
        self.assertIsInstance(reply["_requestId"], int)

    def assertConnectionInfo(self, push: dict[str, Any], user: str) -> None:  # noqa: N802
        """protocol.md's connection_info for a signed-in chat user."""
        self.assertEqual(push.get("event"), "connection_info", push)
        data = push["data"]
        self.assertEqual(set(push), {"event", "data"})
        self.assertEqual(set(data), {"server_version", "features", "auth", "session"})
        self.assertIsInstance(data["server_version"], str)
        self.assertEqual(data["auth"], {"authenticated": True, "user": user, "role": "user"})
        self.assertEqual(set(data["session"]), {"id", "block", "zVaFile"})
        self.assertRegex(data["session"]["id"], r"^[0-9a-f]{32}$")
        self.assertEqual((data["session"]["block"], data["session"]["zVaFile"]), (None, None))
        self.assertLessEqual(set(CHAT_EVENTS), set(data["features"]), "the chat events")
        self.assertIn("plugin:chat_server", data["features"])

    async def assertRefused(  # noqa: N802
        self,
        client: ChatClient,
        sentence: str,
        code: str = "unauthorized",
        close: int = 1008,
        units: float = 3,
    ) -> None:
        """The connection is turned away: exactly one error frame with ``sentence`` (no
        ``_requestId``: it answers no request) and nothing else, then the close ``close``
        with ``sentence`` as its reason."""
        error = await client.expect_error(units)
        self.assertEqual(error, {"error": sentence, "code": code, "_requestId": None})
        self.assertEqual(await client.wait_closed(), (close, sentence))
        self.assertEqual(client.history, [error], "nothing but the refusal")

    async def assertTokenRefused(  # noqa: N802
        self, token: str, sentence: str, header: bool = True
    ) -> None:
        """``token`` is turned away with ``sentence`` in the URL, as a first ``auth``
        message, in the ``Authorization`` header (unless not ``header``) and by
        ``POST /api/logout``."""
        in_url = await self.connect("token in URL", token=token)
        await self.assertRefused(in_url, sentence)
        first = await self.connect("auth first")
        await first.send({"event": "auth", "token": token})
        await self.assertRefused(first, sentence)
        if header:
            bearer = await self.connect("Authorization header", bearer=token)
            await self.assertRefused(bearer, sentence)
        await self.assertHttpRefused(token, sentence)

    async def assertHttpRefused(self, token: str, sentence: str) -> None:  # noqa: N802
        """``POST /api/logout`` with ``token`` is 401 with ``sentence``."""
        answer = await self.http("POST", "/api/logout", token=token)
        self.assertEqual(answer, (401, {"error": sentence, "code": "unauthorized"}))
