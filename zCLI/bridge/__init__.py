"""zBifrost: the WebSocket bridge (zComm)."""

from .audience import Room, User
from .broker import Broker, BrokerUnavailable, Delivery
from .client import Client
from .protocol import ProtocolError
from .server import EventContext, PortInUseError, zBifrost

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Client",
    "Delivery",
    "EventContext",
    "PortInUseError",
    "ProtocolError",
    "Room",
    "User",
    "zBifrost",
]
