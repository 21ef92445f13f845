"""The OLAF server's rules with no I/O: events in, effects out.

The adapter (``server.py``) calls ``connected``, ``linked`` (an outbound neighbour link
opened), ``received`` and ``closed``; each returns the effects to carry out: ``Send``
a text frame on a connection, ``Close`` one, ``Reconnect`` a neighbour now, ``Log`` a
line. Time comes in as ``now`` (seconds) so the rate limit is testable without clocks.

Roles live in ``Role``; a connection starts ``PENDING`` and becomes a ``CLIENT`` with a
signed ``hello`` or a ``NEIGHBOUR`` with a signed ``server_hello`` from a configured
neighbour (or when we opened it to one). Relayed chat and public_chat frames are sent on
as the exact text that came in, never re-signed.
"""

from __future__ import annotations

import collections
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from . import crypto
from .effects import Close, Effect, ListChanged, Log, Reconnect, Send
from .exceptions import (
    BadSignature,
    CryptoError,
    DroppedMessage,
    NotAllowed,
    ReplayedCounter,
)
from .messages import (
    Chat,
    ClientList,
    ClientListRequest,
    ClientUpdate,
    ClientUpdateRequest,
    Frame,
    Hello,
    PublicChat,
    ServerHello,
    Signed,
    normalise_address,
    parse_frame,
)

__all__ = [
    "Close",
    "Effect",
    "Limits",
    "ListChanged",
    "Log",
    "Neighbour",
    "Reconnect",
    "Role",
    "Send",
    "ServerCore",
]


class Role(Enum):
    PENDING = "pending"
    CLIENT = "client"
    NEIGHBOUR = "neighbour"


@dataclass(frozen=True)
class Neighbour:
    address: str  # as configured (and shown to clients)
    key: rsa.RSAPublicKey


@dataclass(frozen=True)
class Limits:
    max_frame: int = 256 * 1024  # bytes; a larger frame is dropped, the connection kept
    max_clients: int = 1000
    rate: float = 50.0  # messages per second per client connection (burst: 2 s worth)
    neighbour_rate: float = 0.0  # per neighbour link; 0: unlimited
    seen: int = 65536  # (signature, counter) pairs remembered to drop copies
    max_pending: int = 64  # connections that have not said hello yet
    hello_timeout: float = 30.0  # seconds a connection may stay without hello


@dataclass
class Connection:
    id: int
    role: Role = Role.PENDING
    address: str = ""  # a neighbour's normalised address
    outbound: bool = False
    pem: str = ""  # a client's public key as it sent it
    key: rsa.RSAPublicKey | None = None
    counters: dict[str, int] = field(default_factory=dict)  # signer -> last counter
    tokens: float = 0.0
    refilled: float = 0.0
    opened: float = 0.0
    closing: bool = False  # closed for not saying hello in time; gone once disconnected

    def label(self) -> str:
        if self.role is Role.NEIGHBOUR:
            way = "to" if self.outbound else "from"
            return f"#{self.id} (neighbour {way} {self.address})"
        return f"#{self.id} ({self.role.value})"


class ServerCore:
    """One server's state: its connections, its neighbours' clients, copies seen."""

    def __init__(
        self,
        identity: crypto.Identity,
        address: str,
        neighbours: Iterable[Neighbour] = (),
        limits: Limits | None = None,
        data_as_string: bool = False,
    ) -> None:
        self.identity = identity
        self.address = address  # the form we announce
        self.own = normalise_address(address)
        self.neighbours = {normalise_address(n.address): n for n in neighbours}
        self.limits = limits or Limits()
        self.data_as_string = data_as_string
        self.connections: dict[int, Connection] = {}
        self.remote: dict[str, tuple[str, ...]] = {}  # neighbour -> its clients' PEMs
        self.seen: collections.OrderedDict[tuple[str, int], None] = collections.OrderedDict()
        self.counter = 0
        self.forms: dict[str, frozenset[str]] = {}  # PEM -> its fingerprint forms
        self.handlers: dict[type, Callable[[Connection, Any, str], list[Effect]]] = {
            Signed: self._signed,
            ClientListRequest: self._client_list_request,
            ClientUpdateRequest: self._client_update_request,
            ClientUpdate: self._client_update,
            ClientList: self._client_list,
        }
        self.bodies: dict[type, Callable[[Connection, Signed, str], list[Effect]]] = {
            Hello: self._hello,
            ServerHello: self._server_hello,
            Chat: self._chat,
            PublicChat: self._public_chat,
        }

    # -- events -------------------------------------------------------------------

    def expire_pending(self, now: float) -> list[Effect]:
        """Close the connections that have not said hello within hello_timeout (the
        adapter calls this on a timer, and ``connected`` before counting)."""
        effects: list[Effect] = []
        reason = f"no hello within {self.limits.hello_timeout:g} s"
        for stale in list(self.connections.values()):
            if stale.role is Role.PENDING and not stale.closing:
                if now - stale.opened > self.limits.hello_timeout:
                    stale.closing = True
                    effects += [Log(logging.INFO, f"#{stale.id}: closed: {reason}")]
                    effects += [Close(stale.id, 1008, reason)]
        return effects

    def connected(self, conn: int, now: float) -> list[Effect]:
        """A connection was accepted; it is PENDING until it says hello. Pending ones
        older than hello_timeout are closed now; beyond max_pending, this one is."""
        effects = self.expire_pending(now)
        pending = [c for c in self.connections.values() if c.role is Role.PENDING and not c.closing]
        self.connections[conn] = Connection(conn, tokens=self._burst(), refilled=now, opened=now)
        if len(pending) >= self.limits.max_pending:
            reason = f"{len(pending)} connections are waiting to say hello"
            effects += [Log(logging.WARNING, f"#{conn}: refused: {reason}")]
            effects += [Close(conn, 1013, reason)]
        return effects

    def linked(self, conn: int, address: str, now: float) -> list[Effect]:
        """We opened ``conn`` to the neighbour ``address``: announce ourselves, ask
        for its clients."""
        key = normalise_address(address)
        self.connections[conn] = Connection(
            conn, Role.NEIGHBOUR, key, outbound=True, tokens=self._burst(), refilled=now
        )
        self.counter += 1
        hello = ServerHello(self.address)
        envelope = self._sign(hello)
        return [
            Log(logging.INFO, f"#{conn}: linked to neighbour {key}; sent server_hello"),
            Send(conn, json.dumps(envelope.to_json())),
            Send(conn, json.dumps(ClientUpdateRequest().to_json())),
        ]

    def received(self, conn: int, text: str | bytes, now: float) -> list[Effect]:
        """One frame from a connection; a dropped frame is one Log line."""
        connection = self.connections.get(conn)
        if connection is None:
            return [Log(logging.WARNING, f"#{conn}: a frame on an unknown connection")]
        try:
            self._check_size(text)
            self._check_rate(connection, now)
            frame: Frame = parse_frame(text)
            assert isinstance(text, str)  # parse_frame refuses bytes
            return self.handlers[type(frame)](connection, frame, text)
        except DroppedMessage as reason:
            return [Log(logging.WARNING, f"{connection.label()}: dropped a frame: {reason}")]

    def closed(self, conn: int) -> list[Effect]:
        """A connection ended: a client leaves the list, a neighbour's clients too
        when it was the last link to that neighbour."""
        connection = self.connections.pop(conn, None)
        if connection is None:
            return []
        if connection.role is Role.CLIENT:
            return [
                Log(logging.INFO, f"#{conn}: client {crypto.fingerprint(connection.pem)} left"),
                *self._clients_changed(),
            ]
        if connection.role is Role.NEIGHBOUR:
            effects: list[Effect] = [Log(logging.INFO, f"{connection.label()}: link closed")]
            if not self._links(connection.address) and connection.address in self.remote:
                del self.remote[connection.address]
                effects += self._push_client_list()
            return effects
        return []

    # -- what we say --------------------------------------------------------------

    def local_pems(self) -> list[str]:
        return list(
            dict.fromkeys(c.pem for c in self.connections.values() if c.role is Role.CLIENT)
        )

    def client_list(self) -> ClientList:
        servers = [(self.address, tuple(self.local_pems()))]
        for address, pems in self.remote.items():
            servers.append((self.neighbours[address].address, pems))
        return ClientList(tuple(servers))

    def _sign(self, body: ServerHello) -> Signed:
        data: Any = json.dumps(body.to_json()) if self.data_as_string else body.to_json()
        signature = crypto.sign(self.identity.key, data, self.counter)
        return Signed(data, self.counter, signature, body)

    def _clients(self, but: int | None = None) -> list[int]:
        return [c.id for c in self.connections.values() if c.role is Role.CLIENT and c.id != but]

    def _links(self, address: str) -> list[Connection]:
        """Authenticated links to a neighbour, ours (outbound) first."""
        links = [
            c
            for c in self.connections.values()
            if c.role is Role.NEIGHBOUR and c.address == address
        ]
        return sorted(links, key=lambda c: not c.outbound)

    def _link(self, address: str) -> int | None:
        links = self._links(address)
        return links[0].id if links else None

    def _push_client_list(self) -> list[Effect]:
        return [ListChanged()]

    def client_list_pushes(self) -> list[Send]:
        """The current client_list for every local client (after ListChanged)."""
        text = json.dumps(self.client_list().to_json())
        return [Send(conn, text, latest=True) for conn in self._clients()]

    def _clients_changed(self) -> list[Effect]:
        update = json.dumps(ClientUpdate(tuple(self.local_pems())).to_json())
        effects: list[Effect] = []
        for address in self.neighbours:
            link = self._link(address)
            if link is not None:
                effects.append(Send(link, update))
        return effects + self._push_client_list()

    # -- checks -------------------------------------------------------------------

    def _burst(self) -> float:
        return max(1.0, self.limits.rate * 2)

    def _check_size(self, text: str | bytes) -> None:
        size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "replace"))
        if size > self.limits.max_frame:
            raise NotAllowed(
                f"the frame is {size} bytes, over the limit of {self.limits.max_frame}."
            )

    def _check_rate(self, connection: Connection, now: float) -> None:
        rate = self.limits.neighbour_rate if connection.role is Role.NEIGHBOUR else self.limits.rate
        if rate <= 0:
            return
        burst = max(1.0, rate * 2)
        connection.tokens = min(burst, connection.tokens + (now - connection.refilled) * rate)
        connection.refilled = now
        if connection.tokens < 1:
            raise NotAllowed(f"over the rate of {rate:g} messages per second.")
        connection.tokens -= 1

    def _check_signature(
        self, connection: Connection, key: rsa.RSAPublicKey, envelope: Signed, signer: str
    ) -> str:
        """The matching form; BadSignature or ReplayedCounter otherwise."""
        form = crypto.verify(key, envelope.data, envelope.counter, envelope.signature)
        if form is None:
            kind = type(envelope.body).__name__
            raise BadSignature(f"the {kind} signature verifies under no known form.")
        last = connection.counters.get(signer)
        if last is not None and envelope.counter <= last:
            raise ReplayedCounter(
                f"counter {envelope.counter} is not above {last}, the last one on this connection."
            )
        connection.counters[signer] = envelope.counter
        return form

    def _forms(self, pem: str) -> frozenset[str]:
        """The fingerprints of a PEM in every form peers use, computed once."""
        forms = self.forms.get(pem)
        if forms is None:
            if len(self.forms) > 4 * self.limits.max_clients + 1024:
                self.forms.clear()  # a bound, not an eviction policy: recomputed on use
            forms = self.forms[pem] = frozenset(crypto.fingerprint_forms(pem))
        return forms

    def _check_relayed(self, connection: Connection, envelope: Signed, sender: str) -> list[Effect]:
        """A relayed public_chat from a sender in a neighbour's client list must verify
        with that sender's key; an unknown sender is relayed with a DEBUG line (the
        clients verify it)."""
        pem = next(
            (pem for pems in self.remote.values() for pem in pems if sender in self._forms(pem)),
            None,
        )
        if pem is None:
            note = f"{connection.label()}: relayed a public_chat from unlisted sender {sender!r}"
            return [Log(logging.DEBUG, note)]
        try:
            key = crypto.load_public_key(pem)
        except CryptoError:
            return []
        if crypto.verify(key, envelope.data, envelope.counter, envelope.signature) is None:
            raise BadSignature("a relayed public_chat does not verify with its sender's key.")
        return []

    def _neighbour_by_key(self, envelope: Signed) -> str | None:
        for address, neighbour in self.neighbours.items():
            data, counter, signature = envelope.data, envelope.counter, envelope.signature
            if crypto.verify(neighbour.key, data, counter, signature) is not None:
                return address
        return None

    def _first_copy(self, envelope: Signed) -> bool:
        key = (envelope.signature, envelope.counter)
        if key in self.seen:
            return False
        self.seen[key] = None
        while len(self.seen) > self.limits.seen:
            self.seen.popitem(last=False)
        return True

    # -- handlers -----------------------------------------------------------------

    def _signed(self, connection: Connection, envelope: Signed, text: str) -> list[Effect]:
        return self.bodies[type(envelope.body)](connection, envelope, text)

    def _client_list_request(self, connection: Connection, _: Any, text: str) -> list[Effect]:
        return [Send(connection.id, json.dumps(self.client_list().to_json()))]

    def _client_update_request(self, connection: Connection, _: Any, text: str) -> list[Effect]:
        update = ClientUpdate(tuple(self.local_pems()))
        effects: list[Effect] = [Send(connection.id, json.dumps(update.to_json()))]
        if connection.role is not Role.NEIGHBOUR:
            effects.append(
                Log(
                    logging.INFO,
                    f"{connection.label()}: answered client_update_request "
                    "from a connection that sent no server_hello",
                )
            )
        return effects

    def _client_update(
        self, connection: Connection, update: ClientUpdate, text: str
    ) -> list[Effect]:
        if connection.role is not Role.NEIGHBOUR:
            raise NotAllowed("client_update comes only from a neighbour that sent server_hello.")
        self.remote[connection.address] = tuple(dict.fromkeys(update.clients))
        return [
            Log(logging.INFO, f"{connection.label()}: {len(update.clients)} clients"),
            *self._push_client_list(),
        ]

    def _client_list(self, connection: Connection, _: Any, text: str) -> list[Effect]:
        raise NotAllowed("client_list is a server-to-client message.")

    def _hello(self, connection: Connection, envelope: Signed, text: str) -> list[Effect]:
        hello = envelope.body
        assert isinstance(hello, Hello)
        if connection.role is not Role.PENDING:
            raise NotAllowed(f"hello on a connection that is already a {connection.role.value}.")
        try:
            key = crypto.load_public_key(hello.public_key)
        except CryptoError as error:
            raise BadSignature(f"hello carries no usable key: {error}") from None
        form = self._check_signature(connection, key, envelope, "client")
        if len(self._clients()) >= self.limits.max_clients:
            return [
                Log(logging.WARNING, f"#{connection.id}: refused a client: the server is full"),
                Close(connection.id, 1013, "the server is full"),
            ]
        connection.role, connection.pem, connection.key = Role.CLIENT, hello.public_key, key
        name = crypto.fingerprint(hello.public_key)
        return [
            Log(logging.INFO, f"#{connection.id}: client {name} said hello (signature {form})"),
            *self._clients_changed(),
        ]

    def _server_hello(self, connection: Connection, envelope: Signed, text: str) -> list[Effect]:
        hello = envelope.body
        assert isinstance(hello, ServerHello)
        if connection.role is Role.CLIENT:
            raise NotAllowed("server_hello on a client connection.")
        address = normalise_address(hello.sender)
        if address not in self.neighbours:
            # Peers announce themselves as they like (another host name, no port):
            # the configured neighbour whose key verifies the hello is the one.
            address = self._neighbour_by_key(envelope) or address
        neighbour = self.neighbours.get(address)
        if neighbour is None:
            raise NotAllowed(f"server_hello from {hello.sender!r}, not a configured neighbour.")
        if connection.role is Role.NEIGHBOUR and connection.address != address:
            raise NotAllowed(f"server_hello from {address} on the link of {connection.address}.")
        form = self._check_signature(connection, neighbour.key, envelope, "server")
        if address != normalise_address(hello.sender):
            form += f"; it announced itself as {hello.sender!r}"
        connection.role, connection.address = Role.NEIGHBOUR, address
        effects: list[Effect] = [
            Log(logging.INFO, f"{connection.label()}: server_hello verified (signature {form})")
        ]
        if not any(c.outbound for c in self._links(address)):
            effects.append(Reconnect(address))
        return effects

    def _chat(self, connection: Connection, envelope: Signed, text: str) -> list[Effect]:
        chat = envelope.body
        assert isinstance(chat, Chat)
        targets = list(dict.fromkeys(normalise_address(d) for d in chat.destination_servers))
        if connection.role is Role.CLIENT:
            assert connection.key is not None
            self._check_signature(connection, connection.key, envelope, "client")
            self._first_copy(envelope)
            effects: list[Effect] = []
            for target in targets:
                if target == self.own:
                    effects += [Send(c, text) for c in self._clients(but=connection.id)]
                elif target in self.neighbours and (link := self._link(target)) is not None:
                    effects.append(Send(link, text))
                else:
                    effects.append(
                        Log(
                            logging.WARNING,
                            f"{connection.label()}: chat for {target}, "
                            "which is not linked; not sent there",
                        )
                    )
            return effects
        if connection.role is Role.NEIGHBOUR:
            if not self._first_copy(envelope):
                raise NotAllowed("a copy of a chat already relayed.")
            effects = [Send(c, text) for c in self._clients()]
            if self.own not in targets:
                # A neighbour sends us only what is for us; it may name us otherwise.
                note = f"{connection.label()}: a chat for {targets} (not {self.own}); delivered"
                effects.append(Log(logging.INFO, note))
            return effects
        raise NotAllowed("chat before hello.")

    def _public_chat(self, connection: Connection, envelope: Signed, text: str) -> list[Effect]:
        public = envelope.body
        assert isinstance(public, PublicChat)
        effects: list[Effect] = []
        if connection.role is Role.CLIENT:
            assert connection.key is not None
            self._check_signature(connection, connection.key, envelope, "client")
            if public.sender not in self._forms(connection.pem):
                effects.append(
                    Log(
                        logging.WARNING,
                        f"{connection.label()}: public_chat sender "
                        f"{public.sender!r} is not this client's fingerprint; relayed",
                    )
                )
            self._first_copy(envelope)
            came_from = ""
        elif connection.role is Role.NEIGHBOUR:
            if (envelope.signature, envelope.counter) in self.seen:
                raise NotAllowed("a copy of a public_chat already relayed.")
            effects += self._check_relayed(connection, envelope, public.sender)
            self._first_copy(envelope)
            came_from = connection.address
        else:
            raise NotAllowed("public_chat before hello.")
        effects += [Send(c, text) for c in self._clients(but=connection.id)]
        for address in self.neighbours:
            if address != came_from and (link := self._link(address)) is not None:
                effects.append(Send(link, text))
        return effects
