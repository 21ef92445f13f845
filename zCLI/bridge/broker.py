"""The broker: what lets several zBifrost processes serve as one.

A broker carries what reaches clients beyond one process: plugin broadcasts to
everyone, to a user (``send_to``) or to a room; token revocations; and presence (who
is signed in, in any process). ``InProcessBroker`` is the default: there is no other
process, so nothing is sent anywhere and presence is this process's own. With
``websocket.broker: redis://HOST:PORT/DB`` the bridge uses ``RedisBroker``
(``redis_broker``): Redis pub/sub for the messages, Redis keys for presence and
revocations.

What crosses between processes is three messages, ``Deliver``, ``Revoke`` and
``PeerMessage`` (a plugin's word to the same plugin in the other processes): frozen
dataclasses with ``to_json``, parsed at the edge by ``parse_message``, which raises
``BrokerMessageError`` (naming the problem) for anything that is not exactly one of
them. Every message names the process it comes from (``origin``), which ignores its
own. The wire form, one JSON object per pub/sub message::

    {"v": 1, "type": "deliver", "origin": NODE, "to": "all"}              + "payload"
    {"v": 1, "type": "deliver", "origin": NODE, "to": "user", "name": U}  + "payload"
    {"v": 1, "type": "deliver", "origin": NODE, "to": "room", "name": R}  + "payload"
    {"v": 1, "type": "revoke", "origin": NODE, "jti": JTI, "expires": UNIX_TIME}
    {"v": 1, "type": "plugin", "origin": NODE, "plugin": NAME, "data": {...}}

``payload`` is the event object the clients get, as the plugin gave it; ``data`` is
what a plugin told its peers (``zBifrost.to_peers``), which no client ever gets.

A broadcast answers with a ``Delivery``: how many of this process's connections it was
sent to (at once), and whether the other processes were reached (``failed`` now, or
``wait_shared()`` for the broker's answer). Nothing is retried or dropped silently.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import strict_json
from ..exceptions import ConfigError, zCLIError
from .audience import MAX_NAME, Audience, Room, User

__all__ = [
    "PROTOCOL_VERSION",
    "Broker",
    "BrokerMessage",
    "BrokerMessageError",
    "BrokerUnavailable",
    "Deliver",
    "Delivery",
    "InProcessBroker",
    "PLUGIN_NAME",
    "PeerListener",
    "PeerMessage",
    "Receiver",
    "Revoke",
    "make_broker",
    "parse_message",
]

PROTOCOL_VERSION = 1
MAX_ORIGIN = 64  # characters in a node id
MAX_JTI = 128
PLUGIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")  # a plugin's name (an identifier)


class BrokerUnavailable(zCLIError):
    """The broker cannot be reached now, so what needs the other processes (presence
    across them) cannot be answered. Local delivery goes on meanwhile."""


class BrokerMessageError(ValueError):
    """A message on the broker channel that is not one of ours; says what is wrong."""


# --- the messages -------------------------------------------------------------------


def _text(body: dict[str, Any], key: str, limit: int) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise BrokerMessageError(f"{key} must be a string of 1 to {limit} characters.")
    return value


@dataclass(frozen=True)
class Deliver:
    """Send ``payload`` to ``audience`` (a ``User``, a ``Room``, None for everyone)
    in every process but ``origin``."""

    type: ClassVar[str] = "deliver"
    origin: str
    audience: Audience
    payload: dict[str, Any] = field(hash=False)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": self.type, "origin": self.origin}
        if self.audience is None:
            body["to"] = "all"
        elif isinstance(self.audience, User):
            body.update(to="user", name=self.audience.name)
        else:
            body.update(to="room", name=self.audience.name)
        body["payload"] = self.payload
        return body

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Deliver:
        _exact_keys(body, {"to", "payload"}, frozenset({"name"}))
        to = body["to"]
        audience: Audience
        if to == "all":
            if "name" in body:
                raise BrokerMessageError("A delivery to all has no name.")
            audience = None
        elif to in ("user", "room"):
            name = _text(body, "name", MAX_NAME)
            audience = User(name) if to == "user" else Room(name)
        else:
            raise BrokerMessageError(f"to must be all, user or room, not {to!r:.40}.")
        payload = body["payload"]
        if not isinstance(payload, dict):
            raise BrokerMessageError("payload must be a JSON object.")
        return cls(_text(body, "origin", MAX_ORIGIN), audience, payload)


@dataclass(frozen=True)
class Revoke:
    """The token ``jti`` was revoked in ``origin``; it is refused until ``expires``
    (Unix time), when it would have expired anyway."""

    type: ClassVar[str] = "revoke"
    origin: str
    jti: str
    expires: float

    def to_json(self) -> dict[str, Any]:
        return {
            "v": PROTOCOL_VERSION,
            "type": self.type,
            "origin": self.origin,
            "jti": self.jti,
            "expires": self.expires,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Revoke:
        _exact_keys(body, {"jti", "expires"})
        expires = body["expires"]
        if isinstance(expires, bool) or not isinstance(expires, int | float):
            raise BrokerMessageError("expires must be a number (Unix time).")
        return cls(_text(body, "origin", MAX_ORIGIN), _text(body, "jti", MAX_JTI), float(expires))


@dataclass(frozen=True)
class PeerMessage:
    """``data`` from the plugin ``plugin`` in ``origin``, for the same plugin in every
    other process (``zBifrost.on_peer_message``); no client gets it."""

    type: ClassVar[str] = "plugin"
    origin: str
    plugin: str
    data: dict[str, Any] = field(hash=False)

    def to_json(self) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "type": self.type, "origin": self.origin,
                "plugin": self.plugin, "data": self.data}  # fmt: skip

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> PeerMessage:
        _exact_keys(body, {"plugin", "data"})
        plugin = body["plugin"]
        if not isinstance(plugin, str) or not PLUGIN_NAME.fullmatch(plugin):
            raise BrokerMessageError("plugin must be a plugin's name (an identifier of 1 to 64).")
        data = body["data"]
        if not isinstance(data, dict):
            raise BrokerMessageError("data must be a JSON object.")
        return cls(_text(body, "origin", MAX_ORIGIN), plugin, data)


BrokerMessage = Deliver | Revoke | PeerMessage
MESSAGES: dict[str, type[Deliver] | type[Revoke] | type[PeerMessage]] = {
    "deliver": Deliver,
    "revoke": Revoke,
    "plugin": PeerMessage,
}
_HEADER = {"v", "type", "origin"}


def _exact_keys(
    body: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()
) -> None:
    missing = (_HEADER | required) - body.keys()
    if missing:
        raise BrokerMessageError(f"A {body['type']} message needs {', '.join(sorted(missing))}.")
    extra = body.keys() - _HEADER - required - optional
    if extra:
        names = ", ".join(sorted(str(k)[:40] for k in extra))
        raise BrokerMessageError(f"A {body['type']} message has unknown keys: {names}.")


def parse_message(data: bytes | str, max_size: int) -> BrokerMessage:
    """The message ``data`` holds; BrokerMessageError if it is anything else."""
    if len(data) > max_size:
        raise BrokerMessageError(f"The message of {len(data)} bytes exceeds {max_size} bytes.")
    try:
        body = strict_json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BrokerMessageError(f"The message is not JSON ({str(exc)[:80]}).") from None
    if not isinstance(body, dict):
        raise BrokerMessageError("The message is not a JSON object.")
    if body.get("v") != PROTOCOL_VERSION:
        raise BrokerMessageError(f"The message is not of version {PROTOCOL_VERSION}.")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise BrokerMessageError("The message has no type.")
    message_class = MESSAGES.get(kind)
    if message_class is None:
        raise BrokerMessageError(f"There is no broker message type {kind[:40]!r}.")
    return message_class.from_json(body)


def encode_message(message: BrokerMessage) -> str:
    """The wire form; ValueError or TypeError for a payload that is not strict JSON."""
    return strict_json.dumps(message.to_json())


# --- what a broadcast reached ---------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    """What one ``broadcast`` or ``send_to`` reached: ``local`` connections of this
    process (sent at once), and through ``shared`` the other processes: None when there
    is nothing to share (no broker, or the audience was given as this process's
    clients); else a future that is True once the broker took the message, False if it
    could not (the broker is away: the other processes will not get it)."""

    local: int
    shared: asyncio.Future[bool] | None = field(default=None, repr=False, compare=False)

    @property
    def failed(self) -> bool:
        """Known now: the other processes will not get this."""
        shared = self.shared
        return shared is not None and shared.done() and shared.result() is False

    async def wait_shared(self) -> bool:
        """True once every process that should get it has been reached (or there are
        none), False if the broker could not take it."""
        return True if self.shared is None else await asyncio.shield(self.shared)


# --- the interface ------------------------------------------------------------------

Receiver = Callable[[BrokerMessage], None]
# A plugin's listener for its peers: (the origin process, the data it sent).
PeerListener = Callable[[str, dict[str, Any]], None]


class Broker(ABC):
    """One process's link to the others. ``publish`` and the presence calls never
    wait; what they cannot do now is reported (``publish``'s future) or made good when
    the link comes back (presence is written afresh on every reconnection)."""

    url: str | None = None
    shares: ClassVar[bool] = True  # there may be other processes to publish to

    def __init__(self) -> None:
        self.node = uuid.uuid4().hex[:16]  # this process, in every message it sends
        self._revoked: dict[str, float] = {}  # jti -> expires, learnt from the others

    @property
    @abstractmethod
    def available(self) -> bool:
        """The other processes can be reached now."""

    @abstractmethod
    async def start(self, receive: Receiver, local_users: Callable[[], frozenset[str]]) -> None:
        """Connect (or begin trying to); ``receive`` gets each message from another
        process, ``local_users`` says who is signed in here (for presence)."""

    @abstractmethod
    async def stop(self) -> None:
        """Leave: this process's presence goes at once; no task is left running."""

    @abstractmethod
    def publish(self, message: BrokerMessage) -> asyncio.Future[bool] | None:
        """Send ``message`` (a ``Deliver``, ``Revoke`` or ``PeerMessage``) to the other
        processes; None when there are none. A payload (or peer data) that is not
        strict JSON (NaN, Infinity) raises ValueError (TypeError for what JSON has no
        form for) and goes nowhere."""

    @abstractmethod
    def user_online(self, user: str) -> None:
        """``user`` has a first connection in this process."""

    @abstractmethod
    def user_offline(self, user: str) -> None:
        """``user``'s last connection in this process has gone."""

    @abstractmethod
    async def online_users(self) -> frozenset[str]:
        """Who is signed in, in any process; BrokerUnavailable if that cannot be known."""

    def remember_revoked(self, jti: str, expires: float) -> None:
        now = time.time()
        if expires > now:
            self._revoked[jti] = expires
        if len(self._revoked) > 1024:  # now and then, forget those that have expired
            self._revoked = {j: e for j, e in self._revoked.items() if e > now}

    def revoked(self, jti: str) -> bool:
        """Another process revoked this token (and it has not expired yet)."""
        expires = self._revoked.get(jti)
        return expires is not None and expires > time.time()


class InProcessBroker(Broker):
    """No other process: nothing to send, presence is this process's."""

    shares = False

    def __init__(self) -> None:
        super().__init__()
        self._local_users: Callable[[], frozenset[str]] = frozenset

    @property
    def available(self) -> bool:
        return True

    async def start(self, receive: Receiver, local_users: Callable[[], frozenset[str]]) -> None:
        self._local_users = local_users

    async def stop(self) -> None:
        pass

    def publish(self, message: BrokerMessage) -> None:
        return None

    def user_online(self, user: str) -> None:
        pass

    def user_offline(self, user: str) -> None:
        pass

    async def online_users(self) -> frozenset[str]:
        return self._local_users()


def make_broker(url: str | None, presence_ttl: float, max_size: int) -> Broker:
    """The broker ``websocket.broker`` names (None: in-process)."""
    if url is None:
        return InProcessBroker()
    try:
        from .redis_broker import RedisBroker
    except ImportError as exc:  # redis is in the cluster extra
        raise ConfigError(
            [
                f"websocket.broker: the Python package redis is missing ({exc}); "
                "pip install 'zCLI[cluster]'"
            ]
        ) from None

    return RedisBroker(url, presence_ttl, max_size)
