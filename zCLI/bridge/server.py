"""zBifrost: the WebSocket bridge that serves a zUI app to browsers and Python clients.

The connection task (``_serve_connection``) is the one place that catches exceptions
for a connection: a request error becomes an error reply to the sender, anything else
is our bug, logged with its traceback and closed with 1011. Requests are routed
through one table, ``self._handlers``; plugin events extend it when the bridge starts.

Every socket is tracked from its first byte (``_sockets``), so a stop can cut
half-open handshakes too; ``max_connections`` counts every connection admitted by the
handshake, including those still signing in, and a stop closes them all at once under
one deadline (``shutdown_timeout``). Without a zUI file the bridge still serves its
built-in and plugin events; ``dispatch`` and ``menu`` then answer ``no_zui``.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from .. import strict_json
from ..auth import ANONYMOUS, AuthError, Identity
from ..dispatch import Effect, Outcome, Steps
from ..exceptions import RequestError, StorageError, zCLIError
from ..plugins import RESERVED_EVENTS
from ..session import Location, Session
from ..version import __version__
from ..zui.model import Message
from .audience import LocalPresence, Room, Rooms, User
from .broker import (
    PLUGIN_NAME,
    Broker,
    BrokerMessage,
    Deliver,
    Delivery,
    PeerListener,
    PeerMessage,
    Revoke,
    make_broker,
)
from .client import Client, FastClient
from .connection import BridgeConnection, TrackedConnection
from .driver import drive, run_until_wait
from .extensions import PluginExtensions
from .limits import LogThrottle, TokenBucket
from .origins import OriginPolicy
from .protocol import (
    AuthRequest,
    DispatchRequest,
    InputResponse,
    LoginRequest,
    ProtocolError,
    Request,
    dispatch_key,
    error_reply,
    parse,
    parse_object,
    request_object,
    result_reply,
    shown,
)
from .sansio import SansIOServer

if TYPE_CHECKING:
    from ..core import zCLI
    from ..walker import zWalker

__all__ = ["EventContext", "PortInUseError", "zBifrost"]

log = logging.getLogger("zCLI.zBifrost")
SERVER_HEADER = f"zBifrost/{__version__}"
NO_ZUI = "This server has no zUI file; only its events are served."


class PortInUseError(zCLIError):
    """The port is taken; the message names host and port."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        super().__init__(f"Port {port} on {host} is already in use.")


@dataclass
class EventContext:
    """What a plugin's bridge event handler receives with the event's data."""

    bridge: zBifrost
    client: Client
    request_id: Any


Handler = Callable[[Client, Request, Any], Any]


class zBifrost:
    def __init__(self, zcli: zCLI) -> None:
        self.zcli = zcli
        self.config = zcli.config.websocket
        self.clients: set[Client] = set()
        self.walker: zWalker = zcli.walker
        self._server: Server | SansIOServer | None = None
        self._stopped = asyncio.Event()
        self._sockets: set[BridgeConnection] = set()  # every open TCP connection
        self._admitted: set[BridgeConnection] = set()  # handshake done, handler running
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subscribed: object = None  # the zAuth whose revocations close connections
        self._refusals = LogThrottle()
        self._extensions = PluginExtensions(zcli.plugins)
        # the service's other processes (websocket.broker), or none (in-process); a
        # message larger than a client's queue could reach no one, so none is read
        self.broker: Broker = make_broker(
            self.config.broker, self.config.presence_ttl, self.config.queue_bytes
        )
        self.rooms: Rooms[Client] = Rooms()  # this process's connections in each room
        # plugin name -> what hears that plugin's peers in the other processes
        self._peer_listeners: dict[str, PeerListener] = {}
        self._presence: LocalPresence[Client] = LocalPresence()  # this process's signed-in users
        self.reuse_port = False  # zcli serve --workers: processes share the port
        # fast mode (zCLI.fast): JSON read and written by orjson, the strict rules kept
        self._loads = strict_json.fast_loads if self.config.fast else strict_json.loads
        self._client_type = (FastClient if self.config.fast else Client).for_bridge()
        # (block, file, zKey) -> the start of the reply to a key whose result never
        # changes (a message): built on its first dispatch, None for other keys that exist
        # per (block, file): key -> the reply up to its _requestId, or None (no constant)
        self._constant_tables: dict[tuple[str, Path], dict[str, str | None]] = {}
        hosts = (self.config.host, zcli.config.http_server.host)
        self._origins = OriginPolicy(self.config.allowed_origins, hosts)
        self._handlers: dict[str, Handler] = {
            "dispatch": self._on_dispatch,
            "menu": self._on_menu,
            "connection_info": self._on_connection_info,
            "ping": self._on_ping,
            "input_response": self._on_input_response,
            "login": self._on_login,
            "logout": self._on_logout,
            "auth": self._on_auth,
        }
        # plugins may not take these names; the registry refuses every reserved one
        assert self._handlers.keys() <= RESERVED_EVENTS

    # --- lifecycle ----------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("zBifrost is not listening")
        return int(next(iter(self._server.sockets)).getsockname()[1])

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def features(self) -> list[str]:
        plugins = [
            f"plugin:{name}"
            for name, plugin in sorted(self.zcli.plugins.plugins.items())
            if plugin.serves_clients
        ]
        return sorted(self._handlers) + plugins

    async def start(self, walker: zWalker | None = None) -> None:
        """Listen; return once the socket accepts. Raises PortInUseError if taken."""
        if self._server is not None:
            raise RuntimeError("zBifrost is already running")
        if walker is not None:
            self.walker = walker
        auth = self.zcli.auth  # built now: an unusable state folder stops start-up here
        if self._subscribed is not auth:
            auth.on_revoke(self._token_revoked)
            auth.also_revoked(self.broker.revoked)  # zServer's HTTP API refuses them too
            self._subscribed = auth
        for event, (_plugin, handler) in self.zcli.plugins.events.items():
            self._handlers[event] = self._plugin_handler(handler)
        self._stopped.clear()
        self._loop = asyncio.get_running_loop()
        await self.broker.start(self._from_broker, self._presence.users)
        try:
            self._server = await self._listen()
        except OSError as exc:
            await self.broker.stop()
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.config.host, self.config.port) from None
            raise
        self._extensions.start_services(self)
        log.info(
            "zBifrost listening on %s (JSON: %s; event loop: %s; adapter: %s)",
            self.url,
            "orjson" if self.config.fast else "json",
            type(self._loop).__module__,
            self.config.adapter,
        )

    async def _listen(self) -> Server | SansIOServer:
        """Listen through the configured adapter (``websocket.adapter``); both run the
        same handshake checks and the same connection task."""
        config = self.config
        if config.adapter == "sansio":
            return await SansIOServer.listen(
                self._serve_connection,
                config.host,
                config.port,
                tracked=self._sockets,
                process_request=self._check_request,
                process_response=self._admit,
                server_header=SERVER_HEADER,
                reuse_port=self.reuse_port,
                compression=config.compression,
                open_timeout=config.handshake_timeout,
                max_size=2 * config.max_size,  # our own check answers up to here
                ping_interval=config.ping_interval,
                ping_timeout=config.ping_timeout,
                close_timeout=config.ping_timeout,  # a silent peer is not waited on
            )
        connection_class: type[ServerConnection] = type(
            "Connection", (TrackedConnection,), {"tracked": self._sockets}
        )
        return await serve(
            self._serve_connection,  # type: ignore[arg-type]  # TrackedConnection is one
            config.host,
            config.port,
            create_connection=connection_class,
            process_request=self._check_request,  # type: ignore[arg-type]  # as above
            process_response=self._admit,  # type: ignore[arg-type]  # as above
            server_header=SERVER_HEADER,
            reuse_port=self.reuse_port,
            compression=None if config.compression == "none" else "deflate",
            open_timeout=config.handshake_timeout,
            max_size=2 * config.max_size,  # our own check answers up to here
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            close_timeout=config.ping_timeout,  # a silent peer is not waited on
        )

    async def stop(self, message: str = "The server is shutting down.") -> None:
        """Tell every client, let their queues drain, close every connection with 1001
        at once, and cut whatever is still open when ``shutdown_timeout`` runs out."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        await self._extensions.stop_services()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.shutdown_timeout
        shutdown = json.dumps({"event": "server_shutdown", "message": message})
        clients = list(self.clients)
        for client in clients:
            client.send_text(shutdown)
        await _all_within([client.wait_sent() for client in clients], deadline - loop.time())
        closing = [ws.close(1001, "Server shutdown.") for ws in list(self._admitted)]
        await _all_within(closing, deadline - loop.time())
        for ws in list(self._sockets):  # silent peers, handshakes that never finished
            ws.transport.abort()
        try:
            await asyncio.wait_for(server.wait_closed(), max(deadline - loop.time(), 1.0))
        except TimeoutError:  # a handler still waits on a plugin: stop waiting for it
            for task in list(server.handler_tasks):
                task.cancel()
            await server.wait_closed()
        await self.broker.stop()
        self._stopped.set()
        log.info("zBifrost stopped")

    async def start_websocket(
        self, socket_ready: asyncio.Event | None = None, walker: zWalker | None = None
    ) -> None:
        """Serve until ``stop()`` or until this task is cancelled (a graceful stop)."""
        await self.start(walker)
        if socket_ready is not None:
            socket_ready.set()
        try:
            await self._stopped.wait()
        except asyncio.CancelledError:
            await self.stop()

    async def __aenter__(self) -> zBifrost:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- the handshake ------------------------------------------------------------

    def _refuse(self, ws: BridgeConnection, status: HTTPStatus, text: str, why: str) -> Response:
        count = self._refusals.hit(time.monotonic())
        if count:
            log.warning("refused a handshake: %s (%d since the last such line)", why, count)
        response = ws.protocol.reject(status, text)
        response.headers["Server"] = SERVER_HEADER
        return response

    def _check_request(self, ws: BridgeConnection, request: HttpRequest) -> Response | None:
        origins = request.headers.get_all("Origin")
        if len(origins) > 1:
            return self._refuse(
                ws, HTTPStatus.FORBIDDEN, "Only one Origin header is allowed.\n", "two Origins"
            )
        if origins and not self._origins.allows(origins[0]):
            return self._refuse(
                ws, HTTPStatus.FORBIDDEN, "Origin not allowed.\n", f"origin {origins[0]!r}"
            )
        if len(self._admitted) >= self.config.max_connections:
            return self._too_many(ws)
        return None

    def _admit(
        self, ws: BridgeConnection, request: HttpRequest, response: Response
    ) -> Response | None:
        """The last word before the 101 goes out: count the connection (nothing yields
        between this check and the send, so a burst cannot pass the limit together)."""
        if response.status_code != HTTPStatus.SWITCHING_PROTOCOLS:
            return None
        if len(self._admitted) >= self.config.max_connections:
            return self._too_many(ws)
        self._admitted.add(ws)
        return None

    def _too_many(self, ws: BridgeConnection) -> Response:
        why = f"{len(self._admitted)} connections, the limit"
        return self._refuse(ws, HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections.\n", why)

    async def _authenticate(self, client: Client) -> Identity | None:
        """The connection's identity, or None after refusing it: an error reply with
        the machine code, then close 1008 (1013 when storage is failing)."""
        ws = client.ws
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query, keep_blank_values=True)
        token = query.get("token", [None])[0]
        headers = ws.request.headers.get_all("Authorization")
        if token is None and headers and headers[0].startswith("Bearer "):
            token = headers[0][len("Bearer ") :].strip()
        try:
            if len(headers) > 1:
                raise AuthError("Only one Authorization header is allowed.")
            if token is None and not self.config.require_auth:
                return ANONYMOUS
            if token is not None:
                return self._verify(token)
            return await self._sign_in_by_first_message(client)
        except RequestError as exc:
            await client.wait_sent()
            await ws.send(json.dumps(error_reply(None, exc.code, exc.message)))
            await ws.close(1013 if isinstance(exc, StorageError) else 1008, exc.message)
            return None

    async def _sign_in_by_first_message(self, client: Client) -> Identity:
        """An ``auth`` or ``login`` message must come within ``auth_timeout``; before
        it, up to ``max_public_requests`` of the plugins' public events are answered
        (one at a time). AuthError for anything else."""
        ws = client.ws
        required = AuthError("Authentication required: send a token or log in first.")
        deadline = asyncio.get_running_loop().time() + self.config.auth_timeout
        answered = 0
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                frame = await asyncio.wait_for(ws.recv(), max(left, 0.0))
                request = parse(frame, self.config.max_request_id, self._loads)
            except (TimeoutError, ProtocolError):
                raise required from None
            if isinstance(request, (AuthRequest, LoginRequest)):
                break
            if request.event not in self.zcli.plugins.public_events:
                raise required
            answered += 1
            if answered > self.config.max_public_requests:
                raise AuthError(
                    f"Sign in after at most {self.config.max_public_requests} requests: "
                    "send auth or login."
                )
            rid = client.request_id(request.has_id, request.request_id)
            handler = self._handlers[request.event]
            await self._guarded(handler, client, request, rid)
        if isinstance(request, AuthRequest):
            return self._verify(request.token)
        identity = await self.zcli.auth.login_async(
            request.username, request.password, _address(ws)
        )
        login = {
            "event": "login",
            "token": identity.token,
            "user": identity.user,
            "role": identity.role,
        }
        await client.wait_sent()
        await ws.send(json.dumps(login))
        return identity

    # --- one connection -----------------------------------------------------------

    async def _serve_connection(self, ws: BridgeConnection) -> None:
        client: Client | None = None  # set once signed in: then it is in self.clients
        bucket = TokenBucket(self.config.rate_limit, self.config.rate_burst, time.monotonic())
        pending = self._client_type(
            ws, None, ANONYMOUS, self.config.queue_size, bucket, self.config.queue_bytes
        )
        try:
            identity = await self._authenticate(pending)
            if identity is None:
                return
            if self.zcli.config.zVaFile is not None:
                pending.session = self.walker.start(
                    self.zcli.config.zVaFile, self.zcli.config.zBlock
                )
            client, client.identity = pending, identity
            self.clients.add(client)
            self._track_presence(client)
            client.send_uncompressed(self._connection_info(client))  # idle: no zlib use
            try:
                await self._extensions.run_hooks("connect", EventContext(self, client, None))
            except RequestError as exc:
                await self._turn_away(client, exc)
                return
            async with asyncio.TaskGroup() as tasks:
                try:
                    await self._read_frames(client, tasks)
                except ConnectionClosed:
                    pass
                client.finish()  # requests still waiting for input end now
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("internal error on a connection; closing it with 1011")
            await ws.close(1011, "Internal server error.")
        finally:
            self._admitted.discard(ws)
            pending.finish()
            self.rooms.discard(pending)  # a public event may have put it in a room
            if client is not None:
                self.clients.discard(client)
                self._track_presence(client)
                await self._extensions.run_hooks("disconnect", EventContext(self, client, None))

    async def _read_frames(self, client: Client, tasks: asyncio.TaskGroup) -> None:
        """Answer each message in turn until the connection closes (ConnectionClosed).
        The connection's adapter calls ``handle`` for each message and ``client.flush``
        once no other message is waiting, so the replies to one read from the socket go
        out in one system call."""
        max_size, max_request_id = self.config.max_size, self.config.max_request_id
        loads = self._loads
        handlers = self._handlers
        plugin_events = self.zcli.plugins.events

        def handle(frame: str | bytes) -> Awaitable[bool | None] | None:
            size = len(frame)
            if isinstance(frame, str) and 4 * size > max_size:
                size = len(frame.encode())  # a character is 1 to 4 bytes of UTF-8
            if size > max_size:
                return self._too_large(client, size)
            try:
                raw = request_object(frame, loads)
                if self._answered_at_once(client, raw, max_request_id):
                    return None
                request = parse_object(raw, max_request_id)
            except ProtocolError as exc:
                client.send(error_reply(client.request_id(False, None), exc.code, exc.message))
                return None
            request_id = client.request_id(request.has_id, request.request_id)
            if not client.bucket.take(time.monotonic()):
                self._rate_limited(client, request_id)
                return None
            handler = handlers.get(request.event)
            if handler is None:
                unknown = f"There is no event named {shown(request.event)}."
                client.send(error_reply(request_id, "unknown_event", unknown))
                return None
            if request.event == "dispatch":
                self._start_dispatch(client, request, request_id, tasks)
                return None
            if request.event in plugin_events:
                self._start_plugin_event(client, request, request_id, tasks)
                return None
            try:
                result = handler(client, request, request_id)
            except RequestError as exc:
                client.send(error_reply(request_id, exc.code, exc.message))
                return None
            return None if result is None else self._answer_when_done(client, request_id, result)

        await client.ws.serve_messages(handle, client.flush)

    async def _too_large(self, client: Client, size: int) -> bool:
        max_size = self.config.max_size
        client.send(
            error_reply(
                client.request_id(False, None),
                "too_large",
                f"The message of {size} bytes exceeds the {max_size}-byte limit.",
            )
        )
        await client.wait_sent()
        client.flush()
        await client.ws.close(1009, "Message too large.")
        return True  # read no more

    @staticmethod
    async def _answer_when_done(client: Client, request_id: Any, pending: Awaitable[Any]) -> None:
        """A built-in handler that waits (sign-in, sign-out): the next message waits for it."""
        try:
            await pending
        except RequestError as exc:
            client.send(error_reply(request_id, exc.code, exc.message))

    def _answered_at_once(self, client: Client, raw: dict[str, Any], max_request_id: int) -> bool:
        """A dispatch of a key that only says a message, answered from the table of
        constant replies: no request, dispatch step or reply object is built for it."""
        session = client.session
        if session is None or client.dispatching:
            return False
        key = dispatch_key(raw, max_request_id)
        if key is None:
            return False
        location = session.location
        cached = client.constants
        if cached is None or cached[0] is not location:  # the client moved: look it up once
            table = self._constant_tables.setdefault((location.block, location.file), {})
            cached = client.constants = (location, table)
        try:
            constant = cached[1][key]
        except KeyError:
            constant = self._constant_reply(location, key, cached[1])
        if constant is None:
            return False
        request_id = client.request_id("_requestId" in raw, raw.get("_requestId"))
        if client.bucket.take(time.monotonic()):
            client.send_text(constant + _json_scalar(request_id, client.encode) + "}", flush=False)
        else:
            self._rate_limited(client, request_id)
        return True

    def _rate_limited(self, client: Client, request_id: Any) -> None:
        message = f"Too many messages: the limit is {self.config.rate_limit:g} a second."
        client.send(error_reply(request_id, "rate_limited", message))

    async def _guarded(
        self,
        handler: Callable[..., Any],
        client: Client,
        request: Request,
        request_id: Any,
        *more: Any,
    ) -> None:
        try:
            result = handler(client, request, request_id, *more)
            if result is not None:  # the built-in handlers that never wait return None
                await result
        except RequestError as exc:
            client.send(error_reply(request_id, exc.code, exc.message))

    # --- built-in events --------------------------------------------------------------

    def _connection_info(self, client: Client) -> dict[str, Any]:
        location = client.session.location if client.session is not None else None
        return {
            "event": "connection_info",
            "data": {
                "server_version": __version__,
                "features": self.features,
                "auth": client.identity.to_json(),
                "session": {
                    "id": client.id,
                    "block": location.block if location else None,
                    "zVaFile": location.file.name if location else None,
                },
            },
        }

    @staticmethod
    def _with_id(payload: dict[str, Any], request: Request, request_id: Any) -> dict[str, Any]:
        return {**payload, "_requestId": request_id} if request.has_id else payload

    def _on_connection_info(self, client: Client, request: Request, rid: Any) -> None:
        client.send(self._with_id(self._connection_info(client), request, rid))

    def _on_ping(self, client: Client, request: Request, rid: Any) -> None:
        client.send(self._with_id({"event": "pong"}, request, rid))

    def _on_menu(self, client: Client, request: Request, rid: Any) -> None:
        session = _session(client)
        view = self.walker.dispatcher.menu(session)
        client.send(
            result_reply(
                rid, {"block": session.location.block, "menu": view.to_json() if view else None}
            )
        )

    def _start_dispatch(
        self, client: Client, request: Request, rid: Any, tasks: asyncio.TaskGroup
    ) -> None:
        """Run a dispatch right here up to its first effect that must wait (a prompt or
        a plugin call); a task finishes it. Most keys never wait, so need no task."""
        assert isinstance(request, DispatchRequest)
        if client.session is None:
            client.send(error_reply(rid, "no_zui", NO_ZUI))
            return
        if client.dispatching:  # an earlier dispatch still runs: keep the order
            client.dispatching += 1
            tasks.create_task(self._guarded(self._on_dispatch, client, request, rid))
            return
        steps = self.walker.dispatcher.dispatch(client.session, request.zKey)
        try:
            waiting = run_until_wait(steps, client, rid)
        except RequestError as exc:
            client.send(error_reply(rid, exc.code, exc.message))
            return
        if isinstance(waiting, Outcome):
            client.send(result_reply(rid, waiting.result))
            return
        client.dispatching += 1
        tasks.create_task(self._guarded(self._on_dispatch, client, request, rid, steps, waiting))

    def _constant_reply(
        self, location: Location, key: str, table: dict[str, str | None]
    ) -> str | None:
        """The reply up to its ``_requestId`` for a key that only says a message (what
        ``dispatch`` would answer, with nothing built per request), else None; kept in
        ``table``, the location's. Only keys that exist are remembered, so a client's
        made-up keys cannot grow the table."""
        if key == "zBack":
            return None
        entry = self.walker.dispatcher.block_at(location).resolve(key)
        if entry is None:
            return None  # dispatch answers the error
        reply = None
        if not entry.spec.menu and isinstance(entry.action, Message):
            # written as the client type writes every reply (json, or orjson in fast mode)
            result = self._client_type.encode(result_reply(0, {"message": entry.action.text}))
            reply = result[: -len("0}")]
        table[key] = reply
        return reply

    async def _on_dispatch(
        self,
        client: Client,
        request: Request,
        rid: Any,
        steps: Steps | None = None,
        waiting: Effect | None = None,
    ) -> None:
        """Finish a dispatch started inline (``steps`` and the effect it is ``waiting``
        on), or run one that arrived while another of the same client was running."""
        assert isinstance(request, DispatchRequest)
        try:
            async with client.lock:
                if steps is None:  # its turn has come: start it on the session as it is now
                    steps = self.walker.dispatcher.dispatch(_session(client), request.zKey)
                outcome = await drive(steps, client, rid, self.zcli, waiting)
        finally:
            client.dispatching -= 1
        client.send(result_reply(rid, outcome.result))

    def _on_input_response(self, client: Client, request: Request, rid: Any) -> None:
        assert isinstance(request, InputResponse)
        future = client.inputs.pop(request.input_id, None)
        if future is None or future.done():
            raise RequestError(
                f"No input request {request.input_id!r} is waiting.", "invalid_message"
            )
        future.set_result(request.value)

    async def _on_login(self, client: Client, request: Request, rid: Any) -> None:
        assert isinstance(request, LoginRequest)
        client.identity = await self.zcli.auth.login_async(
            request.username, request.password, _address(client.ws)
        )
        self._track_presence(client)
        client.send(
            result_reply(
                rid,
                {
                    "token": client.identity.token,
                    "user": client.identity.user,
                    "role": client.identity.role,
                },
            )
        )
        await self._signed_in(client, rid)

    async def _signed_in(self, client: Client, rid: Any) -> None:
        try:
            await self._extensions.run_hooks("sign_in", EventContext(self, client, rid))
        except RequestError as exc:
            await self._turn_away(client, exc)

    async def _turn_away(self, client: Client, exc: RequestError) -> None:
        """A plugin's connect or sign_in hook refused the connection: the error, then
        close 1008 (1013, try again later, for a StorageError)."""
        client.send(error_reply(None, exc.code, exc.message))
        await client.wait_sent()
        reason = exc.message.encode()[:123].decode(errors="ignore")  # a close frame's room
        await client.ws.close(1013 if isinstance(exc, StorageError) else 1008, reason)

    async def _on_auth(self, client: Client, request: Request, rid: Any) -> None:
        assert isinstance(request, AuthRequest)
        client.identity = self._verify(request.token)
        self._track_presence(client)
        client.send(result_reply(rid, {"auth": client.identity.to_json()}))
        await self._signed_in(client, rid)

    async def _on_logout(self, client: Client, request: Request, rid: Any) -> None:
        if not client.identity.authenticated:
            raise RequestError("This connection is not signed in.", "unauthorized")
        self.zcli.auth.revoke(client.identity)
        client.identity = ANONYMOUS
        self._track_presence(client)
        client.send(result_reply(rid, {"message": "Signed out."}))
        await self._extensions.run_hooks("sign_out", EventContext(self, client, rid))
        if self.config.require_auth:
            await client.wait_sent()
            await client.ws.close(1008, "Signed out.")

    def _plugin_handler(self, handler: Callable[..., Any]) -> Handler:
        """The handler awaited to the end (public events before sign-in)."""

        async def run(client: Client, request: Request, rid: Any) -> None:
            result = self._call_plugin(handler, client, request, rid)
            if inspect.isawaitable(result):
                result = await self._plugin_result(request.event, result)
            client.send(result_reply(rid, result))

        return run

    def _start_plugin_event(
        self, client: Client, request: Request, rid: Any, tasks: asyncio.TaskGroup
    ) -> None:
        """A plain function runs here in the reader and is answered before the next
        frame is read. An ``asyncio.Future`` it returns is answered when it is done
        (no task); any other awaitable (every ``async def`` handler's coroutine) is
        awaited in a task of its own. Either way the reader goes on meanwhile."""
        handler = self.zcli.plugins.events[request.event][1]
        try:
            result = self._call_plugin(handler, client, request, rid)
        except RequestError as exc:
            client.send(error_reply(rid, exc.code, exc.message))
            return
        if isinstance(result, asyncio.Future):
            result.add_done_callback(
                lambda done: self._answer_future(client, request.event, rid, done)
            )
        elif inspect.isawaitable(result):
            tasks.create_task(self._finish_plugin_event(client, request, rid, result))
        else:
            client.send(result_reply(rid, result))

    @staticmethod
    def _answer_future(client: Client, event: str, rid: Any, done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is None:
            client.send(result_reply(rid, done.result()))
            return
        if not isinstance(error, RequestError):
            error = _internal(event, error)
        client.send(error_reply(rid, error.code, error.message))

    async def _finish_plugin_event(
        self, client: Client, request: Request, rid: Any, pending: Awaitable[Any]
    ) -> None:
        try:
            result = await self._plugin_result(request.event, pending)
        except RequestError as exc:
            client.send(error_reply(rid, exc.code, exc.message))
            return
        client.send(result_reply(rid, result))

    def _call_plugin(
        self, handler: Callable[..., Any], client: Client, request: Request, rid: Any
    ) -> Any:
        try:
            return handler(EventContext(self, client, rid), request.body.get("data", {}))
        except zCLIError:
            raise
        except Exception:
            raise _internal(request.event) from None

    @staticmethod
    async def _plugin_result(event: str, pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except zCLIError:
            raise
        except Exception:
            raise _internal(event) from None

    # --- revocations ------------------------------------------------------------------

    def _token_revoked(self, jti: str) -> None:
        """zAuth's listener, called in whichever thread revoked (zServer's or ours)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._revoked_here, jti)

    def _revoked_here(self, jti: str) -> None:
        """Close this process's connections with the token, and tell the other processes
        (they refuse it until it would have expired; ``token_ttl`` bounds that)."""
        self._close_token(jti)
        expires = time.time() + self.zcli.config.auth.token_ttl
        self.broker.publish(Revoke(self.broker.node, jti, expires))

    def _verify(self, token: str) -> Identity:
        """zAuth's check, and the revocations the other processes announced."""
        identity = self.zcli.auth.verify(token)
        if identity.jti is not None and self.broker.revoked(identity.jti):
            raise AuthError("The token has been revoked.")
        return identity

    def _close_token(self, jti: str) -> None:
        for client in list(self.clients):
            if client.identity.jti == jti:
                client.close_soon(1008, "The token has been revoked.")

    # --- the other processes ------------------------------------------------------------

    def _from_broker(self, message: BrokerMessage) -> None:
        """A message from another process (parsed and checked by the broker)."""
        if isinstance(message, Deliver):
            text = json.dumps(message.payload)
            self._send_text(self._local_audience(message.audience), text)
        elif isinstance(message, PeerMessage):
            listener = self._peer_listeners.get(message.plugin)
            if listener is not None:  # a plugin this process does not run: not for it
                listener(message.origin, message.data)
        else:
            self._close_token(message.jti)

    def _track_presence(self, client: Client) -> None:
        """Call after a connection's identity or membership changes."""
        signed_in = client.identity.authenticated and client in self.clients
        left, came = self._presence.set(client, client.identity.user if signed_in else None)
        if left is not None:
            self.broker.user_offline(left)
        if came is not None:
            self.broker.user_online(came)

    def _local_audience(self, to: User | Room | None) -> list[Client]:
        if to is None:
            return list(self.clients)
        if isinstance(to, User):
            return self.clients_of(to.name)
        return self.rooms.members(to.name)

    @staticmethod
    def _send_text(targets: Iterable[Client], text: str) -> int:
        """``text`` to each of ``targets``, written at once as websockets.broadcast does,
        but framed once for all the clients without an extension."""
        encoded = text.encode()
        frame: bytes | None = None
        count = 0
        for client in targets:
            if frame is None:
                frame = Frame(Opcode.TEXT, encoded).serialize(mask=False)
            if not client.write_frame(frame):
                client.send_text(text, encoded=encoded, at_once=True)
            count += 1
        return count

    # --- for plugins ----------------------------------------------------------------

    def clients_of(self, user: str) -> list[Client]:
        """The open connections signed in as ``user`` (a user may have several), from
        the presence index: no look at anyone else's connections."""
        return self._presence.members_of(user)

    def send_to(self, user: str, payload: dict[str, Any]) -> Delivery:
        """Send one event to every connection of ``user``, in every process."""
        return self.broadcast(payload, to=User(user))

    def broadcast(
        self,
        payload: dict[str, Any],
        to: User | Room | Iterable[Client] | Callable[[Client], bool] | None = None,
    ) -> Delivery:
        """Send one event to everyone (``to=None``), a ``User`` or a ``Room``, in every
        process; or to some of this process's clients (a list, or a filter). The
        ``Delivery`` says how many connections here got it at once, and whether the
        other processes were reached (``failed``, ``wait_shared()``)."""
        text = json.dumps(payload)
        if to is None or isinstance(to, User | Room):
            # published first: a payload the broker cannot carry (NaN) raises before
            # anyone gets it; without other processes, no message is even built
            shared = (
                self.broker.publish(Deliver(self.broker.node, to, payload))
                if self.broker.shares
                else None
            )
            return Delivery(self._send_text(self._local_audience(to), text), shared)
        if callable(to):
            return Delivery(self._send_text([c for c in list(self.clients) if to(c)], text))
        return Delivery(self._send_text(to, text))

    def on_peer_message(self, plugin: str, listener: PeerListener) -> None:
        """``listener(origin, data)`` hears what ``plugin`` sends with ``to_peers`` in
        every other process (``origin`` names the process); one listener per plugin,
        called in the event loop. ValueError for a name that is not a plugin's."""
        if not PLUGIN_NAME.fullmatch(plugin):
            raise ValueError(f"{plugin!r} is not a plugin's name.")
        self._peer_listeners[plugin] = listener

    def to_peers(self, plugin: str, data: dict[str, Any]) -> Delivery:
        """Send ``data`` (a JSON object) to ``plugin``'s listener in every other process;
        no client gets it. The ``Delivery`` (``local`` 0) says whether the broker took
        it; without a broker there is nobody to tell (``shared`` None). ValueError for
        data that is not strict JSON."""
        if not self.broker.shares:
            return Delivery(0)
        return Delivery(0, self.broker.publish(PeerMessage(self.broker.node, plugin, data)))

    @property
    def node(self) -> str:
        """This process's id among the service's processes (the ``origin`` its peers see)."""
        return self.broker.node

    def join(self, client: Client, room: str) -> bool:
        """Put ``client`` in ``room`` (a name of 1 to 256 characters) until it leaves or
        disconnects; False if it was in it already. ValueError for a bad name."""
        return self.rooms.join(client, room)

    def leave(self, client: Client, room: str) -> bool:
        """Take ``client`` out of ``room``; False if it was not in it."""
        return self.rooms.leave(client, room)

    def local_users(self) -> frozenset[str]:
        """The users signed in to this process."""
        return self._presence.users()

    async def online_users(self) -> frozenset[str]:
        """The users signed in to any process of the service (this one's without a
        broker). BrokerUnavailable while the broker is away."""
        return await self.broker.online_users()


def _json_scalar(value: Any, encode: Callable[[Any], str]) -> str:
    """A ``_requestId`` (checked: a string, a finite number or None) as JSON."""
    return str(value) if type(value) is int else encode(value)


def _session(client: Client) -> Session:
    if client.session is None:
        raise RequestError(NO_ZUI, "no_zui")
    return client.session


def _address(ws: BridgeConnection) -> str | None:
    """The peer's IP address (the sign-in throttle counts failures per address)."""
    peer = ws.remote_address
    return str(peer[0]) if peer else None


async def _all_within(waits: list[Any], seconds: float) -> None:
    """Run ``waits`` concurrently; cancel (and reap) those still running after ``seconds``."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    if not tasks:
        return
    _done, pending = await asyncio.wait(tasks, timeout=max(seconds, 0.0))
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _internal(event: str, error: BaseException | None = None) -> RequestError:
    """A plugin handler's bug, ``error`` or the one being handled: logged with its
    traceback; the client's sentence names only the event."""
    log.error("plugin event %s failed", event, exc_info=error or True)
    return RequestError(f"The {event} handler failed with an internal error.", "internal")
