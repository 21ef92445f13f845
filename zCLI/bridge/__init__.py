"""zBifrost: the WebSocket bridge (zComm)."""

from .client import Client
from .protocol import ProtocolError
from .server import BUILTIN_EVENTS, EventContext, PortInUseError, zBifrost

__all__ = [
    "BUILTIN_EVENTS",
    "Client",
    "EventContext",
    "PortInUseError",
    "ProtocolError",
    "zBifrost",
]
