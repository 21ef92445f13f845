"""zBifrost: the WebSocket bridge (zComm)."""

from .client import Client
from .protocol import ProtocolError
from .server import EventContext, PortInUseError, zBifrost

__all__ = [
    "Client",
    "EventContext",
    "PortInUseError",
    "ProtocolError",
    "zBifrost",
]
