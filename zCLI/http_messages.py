"""zServer's requests and replies as data: parsed at the edge, rendered in one place.

Nothing here touches a socket. The handler hands over headers and bytes and gets back
numbers, dataclasses or an ``HttpError``; every reply head is rendered by
``render_head``, so every reply (a file, a JSON answer, an error found by the standard
library's parser, or the 503 sent to a connection over the cap) carries the same
``Server`` (no Python version), ``Date`` and ``X-Content-Type-Options: nosniff``.

Every error a client gets is JSON, ``{"error": "<a sentence>", "code": "<machine code>"}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

from . import strict_json
from .version import __version__

__all__ = [
    "JSON_TYPE",
    "MAX_JSON_DEPTH",
    "MAX_REQUEST_LINE",
    "SERVER",
    "HttpError",
    "LoginRequest",
    "body_length",
    "error_body",
    "json_headers",
    "page_headers",
    "parse_json_object",
    "render_head",
    "status_for",
]

SERVER = f"zServer/{__version__}"
JSON_TYPE = "application/json; charset=utf-8"
MAX_REQUEST_LINE = 8192  # bytes, CRLF included; longer is 414
MAX_JSON_DEPTH = 32  # a sign-in body needs 1

# Errors the handler and the standard library's parser raise by status alone.
STATUS_ERRORS: dict[int, tuple[str, str]] = {
    400: ("bad_request", "The request is malformed."),
    404: ("not_found", "There is no such file."),
    414: ("uri_too_long", f"The request line is longer than {MAX_REQUEST_LINE} bytes."),
    431: ("headers_too_large", "The request head is too large."),
    500: ("internal", "The server failed to answer; the fault is ours."),
    503: ("busy", "The server is busy; try again in a moment."),
    505: ("http_version", "zServer speaks HTTP/1.0 and HTTP/1.1 only."),
}
# A RequestError's code (zAuth's and others') -> the status it is answered with.
CODE_STATUS: dict[str, HTTPStatus] = {
    "unauthorized": HTTPStatus.UNAUTHORIZED,
    "rate_limited": HTTPStatus.TOO_MANY_REQUESTS,
    "storage_error": HTTPStatus.SERVICE_UNAVAILABLE,
}
_LENGTH = re.compile(r"[0-9]+")
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class HttpError(Exception):
    """A request zServer refuses: status, machine code, sentence, extra headers."""

    def __init__(
        self,
        status: HTTPStatus | int,
        code: str | None = None,
        message: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.status = HTTPStatus(status)
        default_code, default_message = STATUS_ERRORS.get(
            self.status.value, ("bad_request", "The request is malformed.")
        )
        self.code = code or default_code
        self.message = message or default_message
        self.headers = tuple(headers)
        super().__init__(f"{self.status.value} {self.code}: {self.message}")


def status_for(code: str) -> HTTPStatus:
    """The status a RequestError with ``code`` is answered with: 400 unless listed."""
    return CODE_STATUS.get(code, HTTPStatus.BAD_REQUEST)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": message, "code": code}).encode()


def render_head(
    status: HTTPStatus, headers: Sequence[tuple[str, str]], now: float | None = None
) -> bytes:
    """The status line and headers of a reply, with the ones every reply carries."""
    lines = [
        f"HTTP/1.0 {status.value} {status.phrase}",
        f"Server: {SERVER}",
        f"Date: {formatdate(now, usegmt=True)}",
        "X-Content-Type-Options: nosniff",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def json_headers(body: bytes, *extra: tuple[str, str]) -> list[tuple[str, str]]:
    """Headers of an API answer or an error: never cached."""
    return [
        ("Content-Type", JSON_TYPE),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        *extra,
    ]


_BRIDGE_URL = re.compile(r"wss?://[A-Za-z0-9.\-\[\]:]+")


def page_headers(bridge_url: str) -> list[tuple[str, str]]:
    """Headers of an HTML or SVG document: scripts only from files of this origin, the
    bridge (another port) allowed as a WebSocket, no plugins, no framing."""
    bridge = f" {bridge_url}" if _BRIDGE_URL.fullmatch(bridge_url) else ""
    policy = (
        f"default-src 'self'; connect-src 'self'{bridge}; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    )
    return [("Content-Security-Policy", policy), ("X-Frame-Options", "DENY")]


def body_length(headers: Message, max_body: int) -> int | None:
    """The body's length by the request's framing headers, None when there is no body.

    A body is framed by one Content-Length of plain digits, or not at all: chunked
    bodies, negative or repeated lengths are how requests are smuggled or a thread
    is kept reading, so they are refused before a byte of body is read.
    """
    if headers.get_all("Transfer-Encoding"):
        raise HttpError(
            400, message="zServer does not accept Transfer-Encoding; send a Content-Length."
        )
    values = headers.get_all("Content-Length") or []
    if not values:
        return None
    if len(values) > 1:
        raise HttpError(400, message=f"The request has {len(values)} Content-Length headers.")
    value = values[0].strip(" \t")
    if not _LENGTH.fullmatch(value):
        raise HttpError(400, message="The Content-Length header must be a whole number of bytes.")
    digits = value.lstrip("0") or "0"  # int() refuses over 4,300 digits: zeros do not count
    if len(digits) > len(str(max_body)) or int(digits) > max_body:
        raise HttpError(413, "too_large", f"The body is larger than {max_body} bytes.")
    return int(digits)


def _json_depth_exceeds(data: bytes, limit: int) -> bool:
    """True if the JSON nests deeper than ``limit``; strings are skipped whole.

    Checked before parsing so that a body of 60,000 ``[`` is refused in linear time
    instead of recursing in the parser.
    """
    depth = 0
    for token in _JSON_TOKENS.finditer(data):
        mark = token.group()
        if mark in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif mark in (b"]", b"}"):
            depth -= 1
    return False


def parse_json_object(data: bytes) -> dict[str, Any]:
    """A JSON object from UTF-8 bytes; HttpError 400 invalid_json otherwise.

    NaN and infinities are refused (they are not JSON and no other parser reads them),
    as are numbers too large for a float and integers over Python's digit limit.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpError(400, "invalid_json", "The body is not UTF-8 text.") from None
    if _json_depth_exceeds(data, MAX_JSON_DEPTH):
        raise HttpError(400, "invalid_json", f"The body nests deeper than {MAX_JSON_DEPTH} levels.")
    try:
        body = strict_json.loads(text)
    except ValueError:  # JSONDecodeError, and strict_json's NotJson
        raise HttpError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise HttpError(400, "invalid_json", "The body must be a JSON object.")
    return body


@dataclass(frozen=True)
class LoginRequest:
    """``POST /api/login``: a user name and a password, both strings as sent."""

    username: str
    password: str

    @classmethod
    def parse(cls, data: bytes) -> LoginRequest:
        body = parse_json_object(data)
        fields = []
        for name in ("username", "password"):
            if name not in body:
                raise HttpError(400, "invalid_message", f"The body lacks {name!r}.")
            if not isinstance(body[name], str):
                raise HttpError(400, "invalid_message", f"The field {name!r} must be a string.")
            fields.append(body[name])
        return cls(*fields)
