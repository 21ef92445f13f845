"""zBifrost: the WebSocket bridge that serves a zUI app to browsers and Python clients.

The connection task (``_serve_connection``) is the one place that catches exceptions
for a connection: a request error becomes an error reply to the sender, anything else
is our bug, logged with its traceback and closed with 1011. Requests are routed
through one table, ``self._handlers``; plugin events extend it when the bridge starts.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as HttpRequest
from websockets.http11 import Response

from ..auth import ANONYMOUS, AuthError, Identity
from ..dispatch import Effect, Outcome, Steps
from ..exceptions import RequestError, zCLIError
from ..plugins import RESERVED_EVENTS
from ..version import __version__
from .client import Client
from .driver import drive, run_until_wait
from .limits import TokenBucket
from .protocol import (
    AuthRequest,
    DispatchRequest,
    InputResponse,
    LoginRequest,
    ProtocolError,
    Request,
    error_reply,
    parse,
    result_reply,
)

if TYPE_CHECKING:
    from ..core import zCLI
    from ..walker import zWalker

__all__ = ["EventContext", "PortInUseError", "zBifrost"]

log = logging.getLogger("zCLI.zBifrost")
AUTH_TIMEOUT = 10.0


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
        self._server: Server | None = None
        self._stopped = asyncio.Event()
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
        plugins = [f"plugin:{name}" for name in sorted(self.zcli.plugins.plugins)]
        return sorted(self._handlers) + plugins

    async def start(self, walker: zWalker | None = None) -> None:
        """Listen; return once the socket accepts. Raises PortInUseError if taken."""
        if self._server is not None:
            raise RuntimeError("zBifrost is already running")
        if walker is not None:
            self.walker = walker
        if self.zcli.config.zVaFile is None:
            raise RequestError("zBifrost needs a zVaFile to serve.", "missing_field")
        for event, (_plugin, handler) in self.zcli.plugins.events.items():
            self._handlers[event] = self._plugin_handler(handler)
        self._stopped.clear()
        try:
            self._server = await serve(
                self._serve_connection,
                self.config.host,
                self.config.port,
                process_request=self._check_request,
                max_size=2 * self.config.max_size,  # our own check answers up to here
                ping_interval=self.config.ping_interval,
                ping_timeout=self.config.ping_timeout,
                close_timeout=self.config.ping_timeout,  # a silent peer is not waited on
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.config.host, self.config.port) from None
            raise
        log.info("zBifrost listening on %s", self.url)

    async def stop(self, message: str = "The server is shutting down.") -> None:
        """Tell every client, let their queues drain, then close them with 1001."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        shutdown = json.dumps({"event": "server_shutdown", "message": message})
        for client in list(self.clients):
            client.send_text(shutdown)
        drains = [client.wait_sent() for client in list(self.clients)]
        if drains:
            await asyncio.wait(
                [asyncio.ensure_future(d) for d in drains], timeout=self.config.ping_timeout
            )
        for client in list(self.clients):
            await client.ws.close(1001, "Server shutdown.")
        await server.wait_closed()
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

    def _check_request(self, ws: ServerConnection, request: HttpRequest) -> Response | None:
        origin = request.headers.get("Origin")
        if origin is not None and not self._origin_allowed(origin, request):
            log.warning("refused origin %s", origin)
            return ws.respond(HTTPStatus.FORBIDDEN, "Origin not allowed.\n")
        if len(self.clients) >= self.config.max_connections:
            log.warning("refused a connection: %d clients, the limit", len(self.clients))
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections.\n")
        return None

    def _origin_allowed(self, origin: str, request: HttpRequest) -> bool:
        if self.config.allowed_origins:
            return origin in self.config.allowed_origins
        # Same host: the page's host name is the one this socket was reached by, on
        # any port (zServer serves pages from its own port).
        host = urlsplit(f"//{request.headers.get('Host', '')}").hostname
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and host is not None and parts.hostname == host

    async def _authenticate(self, ws: ServerConnection) -> Identity | None:
        """The connection's identity, or None after closing it with 1008."""
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query, keep_blank_values=True)
        token = query.get("token", [None])[0]
        header = ws.request.headers.get("Authorization", "")
        if token is None and header.startswith("Bearer "):
            token = header[len("Bearer ") :].strip()
        if token is None and not self.config.require_auth:
            return ANONYMOUS
        try:
            if token is not None:
                return self.zcli.auth.verify(token)
            return await self._sign_in_by_first_message(ws)
        except AuthError as exc:
            await ws.close(1008, exc.message)
            return None

    async def _sign_in_by_first_message(self, ws: ServerConnection) -> Identity:
        """An ``auth`` or ``login`` message must come first; AuthError otherwise."""
        required = AuthError("Authentication required: send a token or log in first.")
        try:
            request = parse(await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT))
        except (TimeoutError, ProtocolError):
            raise required from None
        if isinstance(request, AuthRequest):
            return self.zcli.auth.verify(request.token)
        if not isinstance(request, LoginRequest):
            raise required
        identity = self.zcli.auth.login(request.username, request.password)
        login = {
            "event": "login",
            "token": identity.token,
            "user": identity.user,
            "role": identity.role,
        }
        await ws.send(json.dumps(login))
        return identity

    # --- one connection -----------------------------------------------------------

    async def _serve_connection(self, ws: ServerConnection) -> None:
        client: Client | None = None
        try:
            identity = await self._authenticate(ws)
            if identity is None:
                return
            session = self.walker.start(
                self.zcli.config.zVaFile or "",  # checked in start
                self.zcli.config.zBlock,
            )
            bucket = TokenBucket(self.config.rate_limit, self.config.rate_burst, time.monotonic())
            client = Client(ws, session, identity, self.config.queue_size, bucket)
            self.clients.add(client)
            client.send(self._connection_info(client))
            async with asyncio.TaskGroup() as tasks:
                await self._read_loop(client, tasks)
                client.finish()  # requests still waiting for input end now
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("internal error on a connection; closing it with 1011")
            await ws.close(1011, "Internal server error.")
        finally:
            if client is not None:
                client.finish()
                self.clients.discard(client)

    async def _read_loop(self, client: Client, tasks: asyncio.TaskGroup) -> None:
        try:
            await self._read_frames(client, tasks)
        except ConnectionClosed:
            return

    async def _read_frames(self, client: Client, tasks: asyncio.TaskGroup) -> None:
        async for frame in client.ws:
            if len(frame) > self.config.max_size:
                client.send(
                    error_reply(
                        client.request_id(False, None),
                        "too_large",
                        f"The message of {len(frame)} bytes exceeds the "
                        f"{self.config.max_size}-byte limit.",
                    )
                )
                await client.wait_sent()
                await client.ws.close(1009, "Message too large.")
                return
            try:
                request = parse(frame)
            except ProtocolError as exc:
                client.send(error_reply(client.request_id(False, None), exc.code, exc.message))
                continue
            request_id = client.request_id(request.has_id, request.request_id)
            if not client.bucket.take(time.monotonic()):
                client.send(
                    error_reply(
                        request_id,
                        "rate_limited",
                        f"Too many messages: the limit is {self.config.rate_limit:g} a second.",
                    )
                )
                continue
            handler = self._handlers.get(request.event)
            if handler is None:
                client.send(
                    error_reply(
                        request_id, "unknown_event", f"There is no event named {request.event!r}."
                    )
                )
                continue
            if request.event == "dispatch":
                self._start_dispatch(client, request, request_id, tasks)
            elif request.event in self.zcli.plugins.events:
                # a plugin's handler may wait; the reader must go on
                tasks.create_task(self._guarded(handler, client, request, request_id))
            else:
                await self._guarded(handler, client, request, request_id)

    async def _guarded(
        self,
        handler: Callable[..., Any],
        client: Client,
        request: Request,
        request_id: Any,
        *more: Any,
    ) -> None:
        try:
            await handler(client, request, request_id, *more)
        except RequestError as exc:
            client.send(error_reply(request_id, exc.code, exc.message))

    # --- built-in events --------------------------------------------------------------

    def _connection_info(self, client: Client) -> dict[str, Any]:
        return {
            "event": "connection_info",
            "data": {
                "server_version": __version__,
                "features": self.features,
                "auth": client.identity.to_json(),
                "session": {
                    "id": client.id,
                    "block": client.session.location.block,
                    "zVaFile": client.session.location.file.name,
                },
            },
        }

    @staticmethod
    def _with_id(payload: dict[str, Any], request: Request, request_id: Any) -> dict[str, Any]:
        return {**payload, "_requestId": request_id} if request.has_id else payload

    async def _on_connection_info(self, client: Client, request: Request, rid: Any) -> None:
        client.send(self._with_id(self._connection_info(client), request, rid))

    async def _on_ping(self, client: Client, request: Request, rid: Any) -> None:
        client.send(self._with_id({"event": "pong"}, request, rid))

    async def _on_menu(self, client: Client, request: Request, rid: Any) -> None:
        view = self.walker.dispatcher.menu(client.session)
        client.send(
            result_reply(
                rid,
                {"block": client.session.location.block, "menu": view.to_json() if view else None},
            )
        )

    def _start_dispatch(
        self, client: Client, request: Request, rid: Any, tasks: asyncio.TaskGroup
    ) -> None:
        """Run a dispatch right here up to its first effect that must wait (a prompt or
        a plugin call); a task finishes it. Most keys never wait, so need no task."""
        assert isinstance(request, DispatchRequest)
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
                    steps = self.walker.dispatcher.dispatch(client.session, request.zKey)
                outcome = await drive(steps, client, rid, self.zcli, waiting)
        finally:
            client.dispatching -= 1
        client.send(result_reply(rid, outcome.result))

    async def _on_input_response(self, client: Client, request: Request, rid: Any) -> None:
        assert isinstance(request, InputResponse)
        future = client.inputs.pop(request.input_id, None)
        if future is None or future.done():
            raise RequestError(
                f"No input request {request.input_id!r} is waiting.", "invalid_message"
            )
        future.set_result(request.value)

    async def _on_login(self, client: Client, request: Request, rid: Any) -> None:
        assert isinstance(request, LoginRequest)
        client.identity = self.zcli.auth.login(request.username, request.password)
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

    async def _on_auth(self, client: Client, request: Request, rid: Any) -> None:
        assert isinstance(request, AuthRequest)
        client.identity = self.zcli.auth.verify(request.token)
        client.send(result_reply(rid, {"auth": client.identity.to_json()}))

    async def _on_logout(self, client: Client, request: Request, rid: Any) -> None:
        if not client.identity.authenticated:
            raise RequestError("This connection is not signed in.", "unauthorized")
        self.zcli.auth.revoke(client.identity)
        client.identity = ANONYMOUS
        client.send(result_reply(rid, {"message": "Signed out."}))
        if self.config.require_auth:
            await client.wait_sent()
            await client.ws.close(1008, "Signed out.")

    def _plugin_handler(self, handler: Callable[..., Any]) -> Handler:
        async def run(client: Client, request: Request, rid: Any) -> None:
            context = EventContext(self, client, rid)
            data = request.body.get("data", {})
            try:
                result = handler(context, data)
                if asyncio.iscoroutine(result):
                    result = await result
            except zCLIError:
                raise
            except Exception:
                log.exception("plugin event %s failed", request.event)
                raise RequestError(
                    f"The {request.event} handler failed with an internal error.", "internal"
                ) from None
            client.send(result_reply(rid, result))

        return run

    # --- for plugins ----------------------------------------------------------------

    def broadcast(
        self, payload: dict[str, Any], to: Iterable[Client] | Callable[[Client], bool] | None = None
    ) -> int:
        """Send one event to many clients (all by default); returns how many."""
        text = json.dumps(payload)
        if to is None:
            targets: Iterable[Client] = list(self.clients)
        elif callable(to):
            targets = [client for client in list(self.clients) if to(client)]
        else:
            targets = to
        count = 0
        for client in targets:
            client.send_text(text)
            count += 1
        return count
