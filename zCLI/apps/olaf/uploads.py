"""Optional file transfer (the spec's HTTP API): ``POST /api/upload`` stores the body
and answers ``{"file_url": URL}``; ``GET`` of that URL returns the bytes; a body over
``max_upload`` bytes is refused with 413 before it is read, and one that would take the
folder past ``max_total`` bytes with 507 (before it is read when its length says so).
Beyond ``max_connections`` requests at once, a connection gets 503 at once, so memory
holds at most about ``max_connections`` x ``max_upload`` bytes of bodies.

It listens on its own port (``--http-port``): the WebSocket endpoint accepts GET
upgrades only. The body is either the raw file or ``multipart/form-data`` (the first
part that has a filename, or the first part). ``UploadStore`` is the rule (no I/O but
the folder it writes); ``serve_uploads`` the asyncio adapter: HTTP/1.1, one request per
connection, Content-Length required (411 otherwise).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

__all__ = ["Reply", "UploadStore", "serve_uploads"]

log = logging.getLogger("zCLI.apps.olaf")
HEAD_LIMIT = 16 * 1024
STATUS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Content Too Large",
    503: "Service Unavailable",
    507: "Insufficient Storage",
}


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"

    @classmethod
    def error(cls, status: int, sentence: str) -> Reply:
        return cls(status, json.dumps({"error": sentence}).encode())

    def to_bytes(self) -> bytes:
        head = (
            f"HTTP/1.1 {self.status} {STATUS[self.status]}\r\n"
            f"Content-Type: {self.content_type}\r\nContent-Length: {len(self.body)}\r\n"
            "Access-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n"
        )
        return head.encode("ascii") + self.body


class UploadStore:
    """Files kept in a folder under random names; URLs built on ``base_url``."""

    def __init__(
        self, folder: Path, base_url: str, max_upload: int, max_total: int = 1 << 30
    ) -> None:
        self.folder = folder
        self.base_url = base_url.rstrip("/")
        self.max_upload = max_upload
        self.max_total = max_total
        folder.mkdir(parents=True, exist_ok=True)
        # what the folder holds already (uploads of earlier runs count too)
        self.held = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())

    def _full(self, size: int) -> Reply | None:
        if self.held + size <= self.max_total:
            return None
        return Reply.error(
            507,
            f"the upload store holds {self.held} of its {self.max_total} bytes; "
            f"a file of {size} bytes does not fit.",
        )

    def check_length(self, method: str, path: str, length: int | None) -> Reply | None:
        """A refusal before the body is read, or None to read it."""
        if method == "POST" and path.split("?")[0] == "/api/upload":
            if length is None:
                return Reply.error(411, "POST /api/upload needs a Content-Length.")
            if length > self.max_upload:
                return Reply.error(
                    413, f"the file is {length} bytes, over the limit of {self.max_upload}."
                )
            return self._full(length)
        return None

    def handle(self, method: str, path: str, content_type: str, body: bytes) -> Reply:
        path = path.split("?")[0]
        if method == "POST" and path == "/api/upload":
            data = _file_of(content_type, body)
            if data is None:
                return Reply.error(400, "the multipart body holds no file.")
            full = self._full(len(data))
            if full is not None:
                return full
            name = secrets.token_urlsafe(16)
            (self.folder / name).write_bytes(data)
            self.held += len(data)
            log.info("upload: %d bytes stored as %s", len(data), name)
            return Reply(200, json.dumps({"file_url": f"{self.base_url}/files/{name}"}).encode())
        if method == "GET" and path.startswith("/files/"):
            name = path[len("/files/") :]
            file = self.folder / name
            if not name or "/" in name or name.startswith(".") or not file.is_file():
                return Reply.error(404, f"no file {name!r}.")
            return Reply(200, file.read_bytes(), "application/octet-stream")
        if path == "/api/upload" or path.startswith("/files/"):
            return Reply.error(405, f"{method} is not allowed on {path}.")
        return Reply.error(404, f"nothing at {path}.")


def _file_of(content_type: str, body: bytes) -> bytes | None:
    if not content_type.lower().startswith("multipart/form-data"):
        return body
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    parts = [part for part in message.iter_parts()] if message.is_multipart() else []
    chosen = next((p for p in parts if p.get_filename()), parts[0] if parts else None)
    if chosen is None:
        return None
    payload = chosen.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else None


async def _serve_one(
    store: UploadStore, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers["content-length"]) if "content-length" in headers else None
        reply = store.check_length(method, path, length)
        if reply is None:
            body = await asyncio.wait_for(reader.readexactly(length or 0), 60)
            reply = store.handle(method, path, headers.get("content-type", ""), body)
    except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, ValueError, TimeoutError):
        reply = Reply.error(400, "the request is not HTTP/1.1 this server reads.")
    try:
        writer.write(reply.to_bytes())
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


BUSY = Reply.error(503, "the upload server is busy; try again in a moment.")


async def serve_uploads(
    store: UploadStore, host: str, port: int, max_connections: int = 16
) -> asyncio.Server:
    """Listen for the HTTP API; the caller reads the port from the server's sockets.
    Past ``max_connections`` at once a connection gets 503 and is closed (logged at
    most once a second, with the count)."""
    active = 0
    refused = 0
    last_line = 0.0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active, refused, last_line
        if active >= max_connections:
            refused += 1
            now = asyncio.get_running_loop().time()
            if now - last_line >= 1.0:
                log.warning("uploads: %d connection(s) refused: %d at once", refused, active)
                refused, last_line = 0, now
            writer.write(BUSY.to_bytes())
            writer.close()
            return
        active += 1
        try:
            await _serve_one(store, reader, writer)
        finally:
            active -= 1

    return await asyncio.start_server(serve, host, port, limit=HEAD_LIMIT)
