"""What the server core asks its adapter to do: the effects ``ServerCore`` returns.

``Send`` a text frame on a connection (``latest``: a client list that replaces one not
yet written), ``Close`` a connection, ``Reconnect`` to a neighbour now, ``Log`` a line,
and ``ListChanged`` (push the client list soon, once for any number of changes).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Close", "Effect", "ListChanged", "Log", "Reconnect", "Send"]


@dataclass(frozen=True)
class Send:
    conn: int
    text: str
    latest: bool = False  # a client_list: replaces one not yet written to that connection


@dataclass(frozen=True)
class ListChanged:
    """The client list changed: the adapter calls ``client_list_pushes`` soon, once
    for any number of changes (1,000 clients joining must not push 1,000 lists)."""


@dataclass(frozen=True)
class Close:
    conn: int
    code: int
    reason: str


@dataclass(frozen=True)
class Reconnect:
    address: str  # normalised


@dataclass(frozen=True)
class Log:
    level: int
    text: str


Effect = Send | Close | Reconnect | Log | ListChanged
