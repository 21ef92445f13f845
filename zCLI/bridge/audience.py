"""Who an event goes to, as data: one user, one room or everyone, and the bookkeeping
of one process's side of it (its rooms, its signed-in users). Nothing here does I/O.

``User`` and ``Room`` are what a plugin passes as ``to=`` to ``zBifrost.broadcast``;
with a broker, the same audience is reached in every process (see ``broker``).
``Rooms`` keeps which of this process's connections joined which room; ``LocalPresence``
counts this process's connections per signed-in user and says when a user comes online
here or leaves, which is what the broker's presence is built from.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["MAX_NAME", "Audience", "LocalPresence", "Room", "Rooms", "User"]

MAX_NAME = 256  # characters in a user or room name carried by the broker
M = TypeVar("M", bound=Hashable)  # a member: zBifrost's rooms hold Clients


@dataclass(frozen=True, slots=True)
class User:
    """Every connection signed in as ``name``, wherever it is connected."""

    name: str


@dataclass(frozen=True, slots=True)
class Room:
    """Every connection that joined ``name`` (``zBifrost.join``), wherever it is."""

    name: str


Audience = User | Room | None  # None: every connection


def _check_name(kind: str, name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise ValueError(f"A {kind} name is a string of 1 to {MAX_NAME} characters, not {name!r}.")
    return name


class Rooms(Generic[M]):
    """Which connections of this process are in which room. A connection leaves every
    room when it ends (``discard``); an empty room is forgotten."""

    def __init__(self) -> None:
        self._members: dict[str, set[M]] = {}
        self._rooms_of: dict[M, set[str]] = {}

    def join(self, member: M, room: str) -> bool:
        """Add ``member`` to ``room``; False if it was in it already."""
        members = self._members.setdefault(_check_name("room", room), set())
        if member in members:
            return False
        members.add(member)
        self._rooms_of.setdefault(member, set()).add(room)
        return True

    def leave(self, member: M, room: str) -> bool:
        """Take ``member`` out of ``room``; False if it was not in it."""
        members = self._members.get(room)
        if members is None or member not in members:
            return False
        members.discard(member)
        if not members:
            del self._members[room]
        rooms = self._rooms_of[member]
        rooms.discard(room)
        if not rooms:
            del self._rooms_of[member]
        return True

    def discard(self, member: M) -> None:
        """``member`` is gone: it leaves every room."""
        for room in list(self._rooms_of.get(member, ())):
            self.leave(member, room)

    def members(self, room: str) -> list[M]:
        return list(self._members.get(room, ()))

    def rooms_of(self, member: M) -> frozenset[str]:
        return frozenset(self._rooms_of.get(member, ()))


class LocalPresence(Generic[M]):
    """This process's signed-in users and their connections. ``set`` records which
    user a connection is signed in as now (None: none, or gone) and returns the user
    who left this process and the one who came to it with that change, if any;
    ``members_of`` answers a user's connections without looking at anyone else's."""

    def __init__(self) -> None:
        self._members: dict[str, dict[M, None]] = {}  # in the order they came
        self._user_of: dict[M, str] = {}

    def set(self, member: M, user: str | None) -> tuple[str | None, str | None]:
        before = self._user_of.get(member)
        if before == user:
            return None, None
        left = came = None
        if before is not None:
            del self._user_of[member]
            members = self._members[before]
            del members[member]
            if not members:
                del self._members[before]
                left = before
        if user is not None:
            self._user_of[member] = user
            members = self._members.setdefault(user, {})
            members[member] = None
            if len(members) == 1:
                came = user
        return left, came

    def members_of(self, user: str) -> list[M]:
        return list(self._members.get(user, ()))

    def users(self) -> frozenset[str]:
        return frozenset(self._members)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._members))
