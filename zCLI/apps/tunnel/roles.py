"""Which client is active: the server's failover rules (docs/tunnel.md, "Failover").

Pure: the server adapter reports clients connecting, leaving and asking to be
active, and carries out the returned ``Decision`` (a WELCOME, ROLE frames, and whether
the server closes its listening sockets for ``close_secs``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .frames import Role

__all__ = ["Decision", "Roles"]


@dataclass(frozen=True, slots=True)
class Decision:
    roles: dict[int, Role] = field(default_factory=dict)  # client id -> ROLE to send
    close_listeners: bool = False  # a failover: the server closes its own ports too
    welcome_active: bool | None = None  # for a connect: the WELCOME's role


class Roles:
    def __init__(self, close_secs: float) -> None:
        self.close_secs = close_secs
        self.active: int | None = None
        self.connected: set[int] = set()
        self.client1_seen = False  # at start, client 1 takes over from a lone client 2
        self.failovers = 0

    def connect(self, client_id: int) -> Decision:
        """A client said HELLO (a duplicate replaces the older link, which the adapter
        drops without calling ``disconnect``)."""
        self.connected.add(client_id)
        roles: dict[int, Role] = {}
        first_client1 = client_id == 1 and not self.client1_seen
        if client_id == 1:
            self.client1_seen = True
        if self.active is None or self.active == client_id:
            self.active = client_id
        elif first_client1 and self.failovers == 0:
            roles[self.active] = Role(False, 0.0)  # start-up preference, not a failover
            self.active = client_id
        return Decision(roles, False, self.active == client_id)

    def disconnect(self, client_id: int) -> Decision:
        self.connected.discard(client_id)
        if self.active != client_id:
            return Decision()
        others = self.connected - {client_id}
        if not others:
            self.active = None
            return Decision()
        self.active = min(others)
        return Decision({self.active: Role(True)})

    def activate(self, client_id: int) -> Decision:
        """A client saw first data on its standby port: a failover, unless it is
        already the active one."""
        if client_id not in self.connected or self.active == client_id:
            return Decision()
        previous = self.active
        self.active = client_id
        self.failovers += 1
        roles = {client_id: Role(True)}
        if previous is not None:
            roles[previous] = Role(False, self.close_secs)
        return Decision(roles, True)
