"""zServer: static files and a small JSON API, on the standard library's HTTP server.

It runs in its own threads beside the asyncio bridge. Files come from ``serve_path``
without changing the working directory; a path that leaves the root (``..``, encoded
or not, or a symlink pointing out) is refused with 404, and folders are never listed.
"""

from __future__ import annotations

import errno
import json
import logging
import mimetypes
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from .auth import AuthError
from .bridge.server import PortInUseError
from .version import __version__

if TYPE_CHECKING:
    from .core import zCLI

__all__ = ["zServer"]

log = logging.getLogger("zCLI.zServer")
STATIC = Path(__file__).parent / "static"
MAX_BODY = 64 * 1024
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".css": "text/css",
    ".html": "text/html",
    ".json": "application/json",
    ".svg": "image/svg+xml",
}


def _content_type(path: Path) -> str:
    kind = TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    kind = kind or "application/octet-stream"
    return f"{kind}; charset=utf-8" if kind.startswith("text/") or kind.endswith("json") else kind


def resolve_static(root: Path, url_path: str) -> Path | None:
    """The file a URL path names inside ``root``, or None if it is outside or absent."""
    decoded = unquote(url_path)
    if "\x00" in decoded or "\\" in decoded:
        return None
    parts = [part for part in decoded.split("/") if part]
    if any(part in (".", "..") for part in parts):
        return None
    candidate = root.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real != root and root not in real.parents:
        return None
    if real.is_dir():
        index = real / "index.html"
        return index if index.is_file() else None
    return real if real.is_file() else None


class zServer:
    def __init__(self, zcli: zCLI) -> None:
        self.zcli = zcli
        self.config = zcli.config.http_server
        self.root = (zcli.workspace / self.config.serve_path).resolve()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("zServer is not listening")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}/"

    def start(self) -> None:
        """Listen and serve in a background thread; PortInUseError if the port is taken."""
        if self._httpd is not None:
            raise RuntimeError("zServer is already running")
        try:
            httpd = ThreadingHTTPServer((self.config.host, self.config.port), self._handler())
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUseError(self.config.host, self.config.port) from None
            raise
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, name="zServer", daemon=True)
        self._thread.start()
        log.info("zServer listening on %s", self.url)

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        log.info("zServer stopped")

    async def __aenter__(self) -> zServer:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            zserver = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    zserver: zServer
    server_version = f"zServer/{__version__}"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s %s", self.address_string(), format % args)

    def _json(self, status: int, payload: Any, head: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: HTTPStatus, code: str, message: str) -> None:
        self._json(status, {"error": message, "code": code})

    def do_HEAD(self) -> None:  # noqa: N802 (stdlib name)
        self._get(head=True)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self._get(head=False)

    def _get(self, head: bool) -> None:
        path = urlsplit(self.path).path
        if path == "/health":
            self._json(HTTPStatus.OK, {"status": "ok", "version": __version__}, head)
            return
        if path == "/api/config":
            self._json(HTTPStatus.OK, self._client_config(), head)
            return
        file = (
            STATIC / "zbifrost.js"
            if path == "/zbifrost.js"
            else resolve_static(self.zserver.root, path)
        )
        if file is None:
            self._error(HTTPStatus.NOT_FOUND, "not_found", "There is no such file.")
            return
        data = file.read_bytes()
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", _content_type(file))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def _client_config(self) -> dict[str, Any]:
        zcli = self.zserver.zcli
        return {"websocket": zcli.bridge_url, "require_auth": zcli.config.websocket.require_auth}

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        path = urlsplit(self.path).path
        if path not in ("/api/login", "/api/logout"):
            self._error(HTTPStatus.NOT_FOUND, "not_found", "There is no such endpoint.")
            return
        auth = self.zserver.zcli.auth
        try:
            if path == "/api/logout":
                header = self.headers.get("Authorization", "")
                if not header.startswith("Bearer "):
                    raise AuthError("Send the token as 'Authorization: Bearer <token>'.")
                auth.revoke(auth.verify(header[len("Bearer ") :].strip()))
                self._json(HTTPStatus.OK, {"message": "Signed out."})
                return
            body = self._body()
            identity = auth.login(str(body.get("username", "")), str(body.get("password", "")))
        except AuthError as exc:
            self._error(HTTPStatus.UNAUTHORIZED, exc.code, exc.message)
            return
        except ValueError as exc:
            self._error(HTTPStatus.BAD_REQUEST, "invalid_json", str(exc))
            return
        self._json(
            HTTPStatus.OK, {"token": identity.token, "user": identity.user, "role": identity.role}
        )

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"The body exceeds {MAX_BODY} bytes.")
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            raise ValueError("The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise ValueError("The body must be a JSON object.")
        return body
