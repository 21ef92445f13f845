"""OLAF messages as small frozen dataclasses, parsed at the edge.

``parse_frame(text)`` turns one text frame into a ``Signed`` (the ``signed_data``
envelope with its parsed body) or one of the unsigned messages; anything else raises
``MalformedMessage`` with a sentence naming the field. The envelope keeps ``data`` as
it came (an object in v1.1.x, a JSON string in v1.2) because signatures are checked
over it and relays forward the frame unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Union

from .exceptions import MalformedMessage

__all__ = [
    "Body",
    "Chat",
    "ClientList",
    "ClientListRequest",
    "ClientUpdate",
    "ClientUpdateRequest",
    "Frame",
    "Hello",
    "PublicChat",
    "ServerHello",
    "Signed",
    "normalise_address",
    "parse_frame",
]


def _field(obj: dict[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in obj:
        raise MalformedMessage(f"{where} has no {name!r} field.")
    value = obj[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise MalformedMessage(
            f"{where} field {name!r} is {type(value).__name__}, not {kind.__name__}."
        )
    return value


def _strings(obj: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    values = _field(obj, name, list, where)
    if not all(isinstance(v, str) for v in values):
        raise MalformedMessage(f"{where} field {name!r} must be a list of strings.")
    return tuple(values)


def normalise_address(text: str) -> str:
    """``ws://host:port/path`` and ``host:port`` both as ``host:port`` (lower case)."""
    address = text.strip()
    for scheme in ("ws://", "wss://", "http://", "https://"):
        if address.lower().startswith(scheme):
            address = address[len(scheme) :]
            break
    return address.split("/", 1)[0].lower()


@dataclass(frozen=True)
class Hello:
    public_key: str

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Hello:
        return cls(_field(obj, "public_key", str, "hello"))

    def to_json(self) -> dict[str, Any]:
        return {"type": "hello", "public_key": self.public_key}


@dataclass(frozen=True)
class Chat:
    destination_servers: tuple[str, ...]
    iv: str
    symm_keys: tuple[str, ...]
    chat: str

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Chat:
        return cls(
            _strings(obj, "destination_servers", "chat"),
            _field(obj, "iv", str, "chat"),
            _strings(obj, "symm_keys", "chat"),
            _field(obj, "chat", str, "chat"),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "chat",
            "destination_servers": list(self.destination_servers),
            "iv": self.iv,
            "symm_keys": list(self.symm_keys),
            "chat": self.chat,
        }


@dataclass(frozen=True)
class PublicChat:
    sender: str
    message: str

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> PublicChat:
        return cls(
            _field(obj, "sender", str, "public_chat"), _field(obj, "message", str, "public_chat")
        )

    def to_json(self) -> dict[str, Any]:
        return {"type": "public_chat", "sender": self.sender, "message": self.message}


@dataclass(frozen=True)
class ServerHello:
    sender: str

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ServerHello:
        return cls(_field(obj, "sender", str, "server_hello"))

    def to_json(self) -> dict[str, Any]:
        return {"type": "server_hello", "sender": self.sender}


Body = Union[Hello, Chat, PublicChat, ServerHello]  # noqa: UP007 (a runtime alias)
BODIES: dict[str, Callable[[dict[str, Any]], Body]] = {
    "hello": Hello.parse,
    "chat": Chat.parse,
    "public_chat": PublicChat.parse,
    "server_hello": ServerHello.parse,
}


@dataclass(frozen=True)
class Signed:
    """A ``signed_data`` envelope: ``data`` exactly as sent, and its parsed body."""

    data: Any  # dict (v1.1.x) or str (v1.2)
    counter: int
    signature: str
    body: Body

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> Signed:
        data = obj.get("data")
        if isinstance(data, str):
            try:
                inner = json.loads(data)
            except ValueError:
                raise MalformedMessage(
                    "signed_data field 'data' is a string but not JSON."
                ) from None
        elif isinstance(data, dict):
            inner = data
        elif data is None:
            raise MalformedMessage("signed_data has no 'data' field.")
        else:
            raise MalformedMessage(
                f"signed_data field 'data' is {type(data).__name__}, not an object or a string."
            )
        if not isinstance(inner, dict):
            raise MalformedMessage("signed_data field 'data' does not hold a JSON object.")
        counter = _field(obj, "counter", int, "signed_data")
        if counter < 0:
            raise MalformedMessage("signed_data field 'counter' is negative.")
        signature = _field(obj, "signature", str, "signed_data")
        kind = inner.get("type")
        parse = BODIES.get(kind) if isinstance(kind, str) else None
        if parse is None:
            raise MalformedMessage(f"signed_data holds an unknown data type {kind!r}.")
        return cls(data, counter, signature, parse(inner))

    @classmethod
    def build(cls, body: Body, counter: int, signature: str, as_string: bool = False) -> Signed:
        inner = body.to_json()
        return cls(json.dumps(inner) if as_string else inner, counter, signature, body)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "signed_data",
            "data": self.data,
            "counter": self.counter,
            "signature": self.signature,
        }


@dataclass(frozen=True)
class ClientListRequest:
    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ClientListRequest:
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"type": "client_list_request"}


@dataclass(frozen=True)
class ClientUpdateRequest:
    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ClientUpdateRequest:
        return cls()

    def to_json(self) -> dict[str, Any]:
        return {"type": "client_update_request"}


@dataclass(frozen=True)
class ClientUpdate:
    clients: tuple[str, ...]

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ClientUpdate:
        return cls(_strings(obj, "clients", "client_update"))

    def to_json(self) -> dict[str, Any]:
        return {"type": "client_update", "clients": list(self.clients)}


@dataclass(frozen=True)
class ClientList:
    servers: tuple[tuple[str, tuple[str, ...]], ...]  # (address, client PEMs)

    @classmethod
    def parse(cls, obj: dict[str, Any]) -> ClientList:
        servers = []
        for entry in _field(obj, "servers", list, "client_list"):
            if not isinstance(entry, dict):
                raise MalformedMessage("client_list field 'servers' must hold objects.")
            servers.append(
                (
                    _field(entry, "address", str, "client_list server"),
                    _strings(entry, "clients", "client_list server"),
                )
            )
        return cls(tuple(servers))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "client_list",
            "servers": [{"address": a, "clients": list(c)} for a, c in self.servers],
        }


Frame = Union[Signed, ClientListRequest, ClientUpdateRequest, ClientUpdate, ClientList]  # noqa: UP007
FRAMES: dict[str, Callable[[dict[str, Any]], Frame]] = {
    "signed_data": Signed.parse,
    "client_list_request": ClientListRequest.parse,
    "client_update_request": ClientUpdateRequest.parse,
    "client_update": ClientUpdate.parse,
    "client_list": ClientList.parse,
}


UNSIGNED = frozenset(FRAMES) - {"signed_data"}


def parse_frame(text: str | bytes) -> Frame:
    """One WebSocket frame as a message; MalformedMessage naming what is wrong."""
    if isinstance(text, bytes):
        raise MalformedMessage("a binary frame is not an OLAF message (send text frames).")
    try:
        obj = json.loads(text)
    except ValueError as error:
        raise MalformedMessage(f"the frame is not JSON ({error}).") from None
    if not isinstance(obj, dict):
        raise MalformedMessage(f"the frame is a JSON {type(obj).__name__}, not an object.")
    kind = obj.get("type")
    if kind == "signed_data":
        # Some peers wrap the unsigned messages too: take them as if sent plain.
        inner = obj.get("data")
        if isinstance(inner, str) and inner.lstrip().startswith("{"):
            try:
                inner = json.loads(inner)
            except ValueError:
                pass
        plain = inner.get("type") if isinstance(inner, dict) else None
        if plain in UNSIGNED:
            assert isinstance(inner, dict)
            return FRAMES[plain](inner)
    parse = FRAMES.get(kind) if isinstance(kind, str) else None
    if parse is None:
        raise MalformedMessage(f"unknown message type {kind!r}.")
    return parse(obj)
