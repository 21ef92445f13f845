"""zTunnel's wire format (docs/tunnel.md, "Wire format"): one frame per binary WebSocket
message, a 5-byte header (type, stream id) and the payload. Pure: bytes in, bytes out.

The link-level payloads (HELLO, WELCOME, ROLE) are small frozen dataclasses with
``parse()`` and ``to_json()``; stream payloads are a 4-byte number and/or UTF-8 text.
"""

from __future__ import annotations

import enum
import json
import struct
from dataclasses import dataclass
from typing import Any

from zCLI import zCLIError

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "LINK",
    "VERSION",
    "Frame",
    "FrameType",
    "Hello",
    "ProtocolViolation",
    "Role",
    "Welcome",
    "encode",
    "encode_number",
    "encode_open",
    "parse",
    "parse_number",
    "parse_open",
]

HEADER = struct.Struct("!BI")
HEADER_SIZE = HEADER.size  # 5
NUMBER = struct.Struct("!I")
LINK = 0  # stream 0 is the link itself
VERSION = 1
MAX_NUMBER = 0xFFFFFFFF


class FrameType(enum.IntEnum):
    OPEN = 0x01
    OPEN_OK = 0x02
    OPEN_FAILED = 0x03
    DATA = 0x04
    CREDIT = 0x05
    FIN = 0x06
    RST = 0x07
    HELLO = 0x10
    WELCOME = 0x11
    ACTIVATE = 0x12
    ROLE = 0x13


_TYPES = {member.value: member for member in FrameType}


class ProtocolViolation(zCLIError):
    """The peer broke the wire format; the link closes with ``code`` (1002, or 1008 for
    a refused HELLO) and the message as the close reason."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    stream_id: int
    payload: bytes | memoryview


def encode(kind: FrameType, stream_id: int, payload: bytes | memoryview = b"") -> bytes:
    """One frame as the bytes of one binary WebSocket message."""
    return HEADER.pack(kind, stream_id) + payload


def parse(message: bytes | memoryview, max_payload: int) -> Frame:
    """The frame in ``message``; ProtocolViolation for a short header, an unknown type or
    a payload over ``max_payload`` bytes. The payload is a view: no copy."""
    if len(message) < HEADER_SIZE:
        raise ProtocolViolation(
            f"A frame of {len(message)} bytes is shorter than the {HEADER_SIZE}-byte header."
        )
    kind, stream_id = HEADER.unpack_from(message)
    known = _TYPES.get(kind)
    if known is None:
        raise ProtocolViolation(f"Frame type 0x{kind:02x} is unknown.")
    size = len(message) - HEADER_SIZE
    if size > max_payload:
        raise ProtocolViolation(
            f"A {known.name} frame of {size} bytes is larger than the chunk size, {max_payload}."
        )
    return Frame(known, stream_id, memoryview(message)[HEADER_SIZE:])


def encode_number(number: int) -> bytes:
    return NUMBER.pack(number)


def parse_number(frame: Frame) -> int:
    """The 4-byte number of an OPEN_OK or CREDIT payload."""
    if len(frame.payload) != NUMBER.size:
        raise ProtocolViolation(
            f"A {frame.type.name} frame for stream {frame.stream_id} carries "
            f"{len(frame.payload)} bytes, not a 4-byte number."
        )
    return int(NUMBER.unpack(frame.payload)[0])


def encode_open(window: int, tunnel: str) -> bytes:
    return NUMBER.pack(window) + tunnel.encode("utf-8")


def parse_open(frame: Frame) -> tuple[int, str]:
    """(window, tunnel name) of an OPEN payload."""
    if len(frame.payload) < NUMBER.size:
        raise ProtocolViolation(
            f"The OPEN frame for stream {frame.stream_id} is shorter than its 4-byte window."
        )
    window = int(NUMBER.unpack_from(frame.payload)[0])
    return window, _text(frame, bytes(frame.payload[NUMBER.size :]))


def parse_text(frame: Frame) -> str:
    """The UTF-8 reason of an OPEN_FAILED or RST payload."""
    return _text(frame, bytes(frame.payload))


def _text(frame: Frame, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(
            f"The {frame.type.name} frame for stream {frame.stream_id} has text that is not UTF-8."
        ) from None


def _object(frame: Frame) -> dict[str, Any]:
    try:
        value = json.loads(bytes(frame.payload))
    except (UnicodeDecodeError, ValueError):
        raise ProtocolViolation(f"The {frame.type.name} frame is not JSON.") from None
    if not isinstance(value, dict):
        raise ProtocolViolation(f"The {frame.type.name} frame is not a JSON object.")
    return value


def _field(frame: Frame, data: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ProtocolViolation(f"The {frame.type.name} frame's {key!r} is missing or wrong.")
    return value


@dataclass(frozen=True, slots=True)
class Hello:
    """The client's first frame: who it is, its secret, its per-stream receive window."""

    client_id: int
    token: str | None = None
    window: int | None = None
    version: int = VERSION

    @classmethod
    def parse(cls, frame: Frame) -> Hello:
        data = _object(frame)
        version = _field(frame, data, "version", int)
        if version != VERSION:
            raise ProtocolViolation(f"HELLO version {version} is not supported (only {VERSION}).")
        client_id = _field(frame, data, "clientId", int)
        if client_id not in (1, 2):
            raise ProtocolViolation(f"HELLO clientId {client_id} is not 1 or 2.", 1008)
        token = data.get("token")
        if token is not None and not isinstance(token, str):
            raise ProtocolViolation("The HELLO frame's 'token' is not a string.")
        window = data.get("window")
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= MAX_NUMBER
        ):
            raise ProtocolViolation("The HELLO frame's 'window' is not a 32-bit count of bytes.")
        return cls(client_id, token, window, version)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"version": self.version, "clientId": self.client_id}
        if self.token is not None:
            data["token"] = self.token
        if self.window is not None:
            data["window"] = self.window
        return json.dumps(data).encode()


@dataclass(frozen=True, slots=True)
class Welcome:
    """The server's answer to HELLO: the client's role and the server's window."""

    active: bool
    window: int | None = None

    @classmethod
    def parse(cls, frame: Frame) -> Welcome:
        data = _object(frame)
        active = _field(frame, data, "active", bool)
        window = data.get("window")
        if window is not None and (
            not isinstance(window, int) or isinstance(window, bool) or not 0 < window <= MAX_NUMBER
        ):
            raise ProtocolViolation("The WELCOME frame's 'window' is not a 32-bit count of bytes.")
        return cls(active, window)

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"active": self.active}
        if self.window is not None:
            data["window"] = self.window
        return json.dumps(data).encode()


@dataclass(frozen=True, slots=True)
class Role:
    """The server tells a client its new role; a demoted client closes its listening
    sockets (and what they accepted) for ``close_secs``."""

    active: bool
    close_secs: float = 0.0

    @classmethod
    def parse(cls, frame: Frame) -> Role:
        data = _object(frame)
        active = _field(frame, data, "active", bool)
        close_secs = data.get("closeSecs", 0)
        if (
            not isinstance(close_secs, int | float)
            or isinstance(close_secs, bool)
            or close_secs < 0
        ):
            raise ProtocolViolation("The ROLE frame's 'closeSecs' is not a number of seconds.")
        return cls(active, float(close_secs))

    def to_json(self) -> bytes:
        data: dict[str, Any] = {"active": self.active}
        if not self.active:
            secs = self.close_secs
            data["closeSecs"] = int(secs) if secs == int(secs) else secs
        return json.dumps(data).encode()
