"""What a ``core.Link`` asks its adapter to do: small frozen dataclasses, one per kind of
effect, dispatched by type (``Pump._handlers``)."""

from __future__ import annotations

from dataclasses import dataclass

from .frames import Hello, Role, Welcome

__all__ = [
    "Activate",
    "Deliver",
    "Dial",
    "Effect",
    "Ended",
    "HelloReceived",
    "Opened",
    "Refused",
    "Reset",
    "Resume",
    "RoleReceived",
    "Shutdown",
    "Throttled",
    "Welcomed",
]


@dataclass(frozen=True, slots=True)
class Dial:
    """The peer opened a stream: dial the tunnel's backend, then ``dial_succeeded``."""

    stream_id: int
    tunnel: str


@dataclass(frozen=True, slots=True)
class Opened:
    """The peer dialled our stream's backend."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Refused:
    """The peer could not dial: reset the accepted connection."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Write these bytes to the stream's TCP connection, then report ``consumed``."""

    stream_id: int
    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class Resume:
    """Credit arrived for a stream that had run out: read its TCP connection again."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The peer sent FIN: after what is delivered, ``shutdown(SHUT_WR)`` the TCP side."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Ended:
    """Both FINs are through: close the TCP connection once its writes are flushed."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class Reset:
    """The peer reset the stream: abort the TCP connection."""

    stream_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Throttled:
    """The process holds more than the memory cap: this stream's credit waits."""

    stream_id: int
    held: int
    cap: int


@dataclass(frozen=True, slots=True)
class HelloReceived:
    hello: Hello


@dataclass(frozen=True, slots=True)
class Welcomed:
    welcome: Welcome


@dataclass(frozen=True, slots=True)
class Activate:
    """A client saw first data on its standby port."""


@dataclass(frozen=True, slots=True)
class RoleReceived:
    role: Role


Effect = (
    Dial
    | Opened
    | Refused
    | Deliver
    | Resume
    | Shutdown
    | Ended
    | Reset
    | Throttled
    | HelloReceived
    | Welcomed
    | Activate
    | RoleReceived
)
