"""zServer: an app's public files and a small JSON API, beside the zBifrost bridge.

It runs in threads of the bridge's process, so it must never starve that process:

- **What is published** is decided by zCLI.http_files: only ``serve_path`` (default
  ``public``), never private files inside it, and an unsafe ``serve_path`` stops the
  app at start with a ConfigError.
- **Connections** are accepted by one thread, which drains a ``SOMAXCONN`` backlog at
  each wake-up. At most ``max_connections`` are served at once, each in a thread of
  its own; one more is answered 503 ``busy`` at once by the accepting thread and
  closed. When ``accept()`` fails for want of descriptors (EMFILE, ENFILE) the thread
  retries every 0.1 s and logs at most one line a second with the count of failures,
  so it neither spins nor floods the log.
- **Every read is timed** (zCLI.http_io): ``idle_timeout`` before the first byte and
  between bytes, ``header_timeout`` in total for request line, headers and body. A
  request cut short is answered 408; an idle connection is closed. Bodies are framed
  by one Content-Length of at most ``max_body`` bytes and nothing else (zCLI.http_messages).
- **Every reply** has ``X-Content-Type-Options: nosniff`` and a ``Server`` without the
  Python version; errors (ours and those the standard library's parser finds) are
  JSON ``{"error", "code"}``; pages get a Content-Security-Policy that allows the
  bridge's ``ws://`` URL; files are ``no-cache``, the API ``no-store``.

``_Handler.handle`` is the one place that catches a connection's exceptions: a
client's fault (reset, timeout, broken pipe) is a debug line naming its address, a bug
of ours is logged with its traceback and answered 500. One request per connection
(HTTP/1.0 replies), so there is no keep-alive state to bound.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import mimetypes
import os
import re
import selectors
import socket
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from .auth import AuthError
from .bridge.server import PortInUseError
from .exceptions import RequestError
from .http_files import StaticFiles, content_type, is_document
from .http_io import DeadlineReader, HeadReader, LogThrottle, ReadTimeout, is_client_fault, linger
from .http_messages import (
    MAX_REQUEST_LINE,
    HttpError,
    LoginRequest,
    body_length,
    error_body,
    json_headers,
    page_headers,
    render_head,
    status_for,
)
from .version import __version__

if TYPE_CHECKING:
    from .core import zCLI

__all__ = ["zServer"]

log = logging.getLogger("zCLI.zServer")
STATIC = Path(__file__).parent / "static"
ACCEPT_RETRY = 0.1  # seconds between accept() attempts while out of descriptors
METHOD = re.compile(r"[A-Z]{1,16}")
KNOWN_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE"))


def _peer(address: Any) -> str:
    return f"{address[0]}:{address[1]}"


class zServer:
    """zServer for one app: built (and its serve_path checked) by ``zcli.server``."""

    reuse_port = False  # zcli serve --workers: the workers' sockets share the port

    def __init__(self, zcli: zCLI) -> None:
        self.zcli = zcli
        self.config = zcli.config.http_server
        self.files = StaticFiles.for_app(
            zcli.workspace, self.config.serve_path, zcli.state_dir, zcli.config.auth
        )
        self.root = self.files.root
        if not mimetypes.inited:  # it reads system files: not while descriptors run out
            mimetypes.init()
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._refusals = LogThrottle()
        self._accept_failures = LogThrottle()

    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("zServer is not listening")
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}/"

    @property
    def active_connections(self) -> int:
        """Connections being served now (at most ``max_connections``)."""
        with self._lock:
            return len(self._connections)

    def start(self) -> None:
        """Listen and accept in a background thread; PortInUseError if the port is taken."""
        if self._listener is not None:
            raise RuntimeError("zServer is already running")
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        try:
            listener = socket.create_server(
                (self.config.host, self.config.port),
                family=family,
                backlog=socket.SOMAXCONN,
                reuse_port=self.reuse_port,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.config.host, self.config.port) from None
            raise
        listener.setblocking(False)
        self._listener, self._wake = listener, socket.socketpair()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, self._wake[0], self._stopping),
            name="zServer",
            daemon=True,
        )
        self._thread.start()
        log.info("zServer listening on %s, serving %s", self.url, self.root)

    def stop(self) -> None:
        """Stop accepting, end the connections being served, and wait for their threads
        (at most ``idle_timeout``; only a sign-in still hashing can take that long)."""
        listener, wake = self._listener, self._wake
        self._listener = self._wake = None
        if listener is None or wake is None:
            return
        self._stopping.set()
        wake[1].send(b"\0")
        if self._thread is not None:
            self._thread.join()
        for sock in (listener, *wake):
            sock.close()
        with self._lock:  # a registered socket is still open (see _serve)
            live = dict(self._connections)
            for sock in live:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # its handler's reads and writes end now
                except OSError:  # the client reset it already
                    pass
        deadline = time.monotonic() + self.config.idle_timeout
        for thread in live.values():
            thread.join(max(0.0, deadline - time.monotonic()))
        still = sum(thread.is_alive() for thread in live.values())
        if still:
            log.warning("zServer stopped with %d connection(s) still finishing", still)
        if refused := self._refusals.pending():
            log.warning("zServer refused %d more connection(s) before it stopped", refused)
        if failed := self._accept_failures.pending():
            log.warning("zServer had %d more failed accept() call(s)", failed)
        log.info("zServer stopped")

    async def __aenter__(self) -> zServer:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    # --- accepting ------------------------------------------------------------------

    def _accept_loop(
        self, listener: socket.socket, wake: socket.socket, stopping: threading.Event
    ) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(listener, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while not stopping.is_set():
                selector.select()
                if not self._accept_waiting(listener, stopping):
                    stopping.wait(ACCEPT_RETRY)

    def _accept_waiting(self, listener: socket.socket, stopping: threading.Event) -> bool:
        """Take every connection waiting; False when the process is out of resources."""
        while not stopping.is_set():
            try:
                sock, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return True  # none left
            except ConnectionAbortedError:
                continue  # that client gave up before we took it
            except OSError as exc:
                if count := self._accept_failures.count():
                    name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
                    log.warning(
                        "zServer cannot accept connections (%s: %s); %d accept() call(s) "
                        "failed since the last report",
                        name,
                        exc.strerror,
                        count,
                    )
                return False
            self._admit(sock, address)
        return True

    def _admit(self, sock: socket.socket, address: Any) -> None:
        peer = _peer(address)
        thread = threading.Thread(
            target=self._serve, args=(sock, address), name=f"zServer {peer}", daemon=True
        )
        with self._lock:
            admitted = len(self._connections) < self.config.max_connections
            if admitted:
                self._connections[sock] = thread
        if not admitted:
            self._refuse(sock, peer, f"over max_connections ({self.config.max_connections})")
            return
        try:
            thread.start()
        except RuntimeError:  # the OS will not give us another thread right now
            with self._lock:
                del self._connections[sock]
            self._refuse(sock, peer, "for want of threads")

    def _refuse(self, sock: socket.socket, peer: str, why: str) -> None:
        """503 busy without a thread and without waiting: the accepting thread must not
        block, so the reply is one non-blocking send (it fits in the socket buffer)."""
        if count := self._refusals.count():  # logged first: the refusal is seen as it happens
            log.warning("zServer refused %d connection(s) %s, the last from %s", count, why, peer)
        body = error_body("busy", "The server is busy; try again in a moment.")
        head = render_head(HTTPStatus.SERVICE_UNAVAILABLE, json_headers(body, ("Retry-After", "1")))
        try:
            sock.setblocking(False)
            sock.send(head + body)
            sock.recv(65536)  # what the client sent already, so closing does not reset
        except OSError:
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

    def _serve(self, sock: socket.socket, address: Any) -> None:
        handler: _Handler | None = None
        try:
            handler = _Handler(sock, address, self)
        except Exception:  # handle() lets out only our own failures (a file that cannot be read)
            log.exception("zServer: %s: the connection failed", _peer(address))
        finally:
            if handler is not None and handler.linger:
                linger(sock, self.config.idle_timeout)  # still counted against the cap
            with self._lock:  # unregistered before closing: stop() never touches a closed fd
                del self._connections[sock]
            sock.close()


@dataclass
class _Answer:
    """A reply to send: a status, headers, and a body or an open file to stream."""

    status: HTTPStatus
    headers: list[tuple[str, str]]
    body: bytes = b""
    file: IO[bytes] | None = None


class _Handler(BaseHTTPRequestHandler):
    """One connection, one request: read under deadlines, route, answer, log."""

    default_request_version = "HTTP/1.0"  # so no reply is ever sent without its headers
    ROUTES: ClassVar[dict[str, dict[str, str]]] = {
        "/health": {"GET": "_health", "HEAD": "_health"},
        "/api/config": {"GET": "_client_config", "HEAD": "_client_config"},
        "/api/login": {"POST": "_login"},
        "/api/logout": {"POST": "_logout"},
    }
    FILE_ROUTE: ClassVar[dict[str, str]] = {"GET": "_file", "HEAD": "_file"}

    def __init__(self, sock: socket.socket, address: Any, zserver: zServer) -> None:
        # socketserver's __init__ wants its own server class; the steps are the same.
        self.request, self.client_address, self.zserver = sock, address, zserver
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self) -> None:
        self.connection: socket.socket = self.request
        config = self.zserver.config
        self.reader = DeadlineReader(self.connection, config.idle_timeout, config.header_timeout)
        self.rfile = io.BufferedReader(self.reader)
        self.peer = _peer(self.client_address)
        self.requestline, self.command = "", ""
        self.read_all = False  # the whole request (head and body) was read
        self.linger = False  # a refusal went out with input unread: close gently
        self._length: int | None = None

    def finish(self) -> None:
        self.rfile.close()  # the socket is zServer's to close

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        """The stdlib's own logging, were any path to reach it: ours, never stderr."""
        log.debug("zServer: %s: %s", self.peer, format % args)

    def handle(self) -> None:
        """The one place that catches this connection's exceptions."""
        try:
            answer = self._answer()
        except ReadTimeout as exc:
            if not exc.started:
                log.debug("zServer: %s: %s Closed.", self.peer, exc.sentence)
                return
            log.info("zServer: %s: %s Answered 408.", self.peer, exc.sentence)
            self._send(self._error(HttpError(408, "timeout", exc.sentence)))
            return  # and close at once: a client this slow gets no more of a thread
        except HttpError as exc:
            answer = self._error(exc)
        except RequestError as exc:  # zAuth's refusals among them
            answer = self._error(HttpError(status_for(exc.code), exc.code, exc.message))
        except OSError as exc:
            if not is_client_fault(exc):
                raise  # a file of ours failed: _serve logs it with its traceback
            log.debug("zServer: %s: the client went away mid-request (%s)", self.peer, exc)
            return
        except Exception:
            log.exception("zServer: %s: %r failed", self.peer, self.requestline)
            answer = self._error(HttpError(500))
        if answer is not None:
            self._send(answer)
            self.linger = not self.read_all

    # --- reading and routing ----------------------------------------------------------

    def _answer(self) -> _Answer | None:
        """Read one request and route it; None when there is nothing to answer."""
        line = self.rfile.readline(MAX_REQUEST_LINE + 1)
        if not line:
            return None  # closed before sending anything
        if len(line) > MAX_REQUEST_LINE:
            raise HttpError(414)
        if not line.endswith(b"\n"):
            raise ConnectionAbortedError("the client closed the connection mid-request")
        self.raw_requestline = line
        rfile = self.rfile
        # parse_request reads the headers through self.rfile, calling only readline
        budget = self.zserver.config.max_header_bytes - len(line)
        self.rfile = HeadReader(rfile, budget, self.zserver.config.max_header_bytes)  # type: ignore[assignment]
        try:
            parsed = self.parse_request()  # errors arrive through send_error below
        finally:
            self.rfile = rfile
        if not parsed:
            return None  # a blank line instead of a request
        if not METHOD.fullmatch(self.command):
            raise HttpError(400)
        if self.command not in KNOWN_METHODS:
            message = f"zServer does not implement the method {self.command!r}."
            raise HttpError(501, "not_implemented", message)
        try:
            path = urlsplit(self.path).path
        except ValueError:
            raise HttpError(400) from None
        if not path.startswith("/"):
            raise HttpError(400)
        methods = self.ROUTES.get(path, self.FILE_ROUTE)
        if self.command not in methods:
            allow = ("Allow", ", ".join(methods))
            message = f"This path does not accept {self.command}."
            raise HttpError(405, "method_not_allowed", message, [allow])
        self._length = body_length(self.headers, self.zserver.config.max_body)
        self.read_all = not self._length
        answer: _Answer = getattr(self, methods[self.command])()
        return answer

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's parser reports a bad request by calling this; raising
        turns it into the same JSON error as ours."""
        if code == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE and message == "Too many headers":
            raise HttpError(code, message="The request has more than 100 headers.")
        raise HttpError(code)

    def _read_body(self, required: bool) -> bytes:
        if self._length is None:
            if required:
                raise HttpError(
                    400, message="This request needs a Content-Length header and a body."
                )
            return b""
        data = self.rfile.read(self._length)
        if len(data) < self._length:
            raise ConnectionAbortedError("the client closed the connection mid-body")
        self.read_all = True
        return data

    # --- routes -------------------------------------------------------------------------

    def _health(self) -> _Answer:
        return self._json({"status": "ok", "version": __version__})

    def _client_config(self) -> _Answer:
        zcli = self.zserver.zcli
        return self._json(
            {"websocket": zcli.bridge_url, "require_auth": zcli.config.websocket.require_auth}
        )

    def _login(self) -> _Answer:
        request = LoginRequest.parse(self._read_body(required=True))
        auth = self.zserver.zcli.auth
        identity = auth.login(request.username, request.password, self.client_address[0])
        return self._json({"token": identity.token, "user": identity.user, "role": identity.role})

    def _logout(self) -> _Answer:
        self._read_body(required=False)
        header = self.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise AuthError("Send the token as 'Authorization: Bearer <token>'.")
        auth = self.zserver.zcli.auth
        auth.revoke(auth.verify(header[len("Bearer ") :].strip()))
        return self._json({"message": "Signed out."})

    def _file(self) -> _Answer:
        path = urlsplit(self.path).path
        found = (
            STATIC / "zbifrost.js" if path == "/zbifrost.js" else self.zserver.files.resolve(path)
        )
        if found is None:
            raise HttpError(404)
        try:
            file = open(found, "rb")  # noqa: SIM115 (closed by _send after streaming)
        except (FileNotFoundError, PermissionError, IsADirectoryError):
            raise HttpError(404) from None
        except OSError as exc:  # out of descriptors, most likely: tell the client to retry
            log.warning("zServer: %s: cannot open a file (%s)", self.peer, exc.strerror)
            raise HttpError(503) from None
        kind = content_type(found)
        headers = [
            ("Content-Type", kind),
            ("Content-Length", str(os.fstat(file.fileno()).st_size)),
            ("Cache-Control", "no-cache"),
        ]
        if is_document(kind):
            headers += page_headers(self.zserver.zcli.bridge_url)
        return _Answer(HTTPStatus.OK, headers, file=file)

    # --- writing ----------------------------------------------------------------------

    def _json(self, payload: Any) -> _Answer:
        body = json.dumps(payload).encode()
        return _Answer(HTTPStatus.OK, json_headers(body), body)

    def _error(self, error: HttpError) -> _Answer:
        body = error_body(error.code, error.message)
        return _Answer(error.status, json_headers(body, *error.headers), body)

    def _send(self, answer: _Answer) -> None:
        with_body = self.command != "HEAD"
        try:
            self.connection.settimeout(self.zserver.config.idle_timeout)
            head = render_head(answer.status, answer.headers)
            if answer.file is None:
                self.connection.sendall(head + answer.body if with_body else head)
            else:
                self.connection.sendall(head)
                if with_body:
                    self.connection.sendfile(answer.file)
        except OSError as exc:
            if not is_client_fault(exc):
                raise
            log.debug("zServer: %s: the client went away mid-reply (%s)", self.peer, exc)
        finally:
            if answer.file is not None:
                answer.file.close()
        log.debug("zServer: %s: %r %d", self.peer, self.requestline, answer.status.value)
