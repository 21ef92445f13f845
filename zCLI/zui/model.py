"""What a loaded zUI file is: blocks of entries, each entry a key and an action.

These are plain frozen dataclasses built by the loader after validation; the
dispatcher reads them and never sees raw YAML.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

from ..display import DisplayEvent
from .funcs import FuncCall
from .keys import KeySpec

__all__ = [
    "Action",
    "Block",
    "Dialog",
    "DialogField",
    "Entry",
    "Link",
    "Menu",
    "Message",
    "Show",
    "Wizard",
    "WizardStep",
    "ZuiFile",
]


@dataclass(frozen=True)
class Message:
    text: str


@dataclass(frozen=True)
class Show:
    event: DisplayEvent


@dataclass(frozen=True)
class Link:
    """A zLink target; ``file`` is None for a block of the same file."""

    target: str
    file: str | None
    block: str | None  # None: the first block of the file


@dataclass(frozen=True)
class DialogField:
    name: str
    prompt: str
    kind: str = "string"  # "string" or "password"


@dataclass(frozen=True)
class Dialog:
    fields: tuple[DialogField, ...]
    on_submit: Action | None


@dataclass(frozen=True)
class WizardStep:
    name: str | None
    action: Action


@dataclass(frozen=True)
class Wizard:
    steps: tuple[WizardStep, ...]


@dataclass(frozen=True)
class Menu:
    """The value of a ``Key*``: the raw choices, in order, as the block resolves them."""

    choices: tuple[str, ...]


@dataclass(frozen=True)
class Entry:
    spec: KeySpec
    action: Action | Menu
    line: int


@dataclass(frozen=True)
class Block:
    """A named, ordered set of entries; nested blocks are named ``Outer.Inner``."""

    name: str
    file: Path
    entries: tuple[Entry, ...]
    line: int

    def entry(self, raw: str) -> Entry | None:
        for entry in self.entries:
            if entry.spec.raw == raw:
                return entry
        return None

    def named(self, name: str) -> list[Entry]:
        return [entry for entry in self.entries if entry.spec.name == name]

    def resolve(self, key: str) -> Entry | None:
        """The entry a zKey means here: the exact key, else the bare name, else the
        one key of that name with other modifiers (``Ping`` finds ``^Ping``)."""
        exact = self.entry(key)
        if exact is not None:
            return exact
        try:
            name = KeySpec.parse(key).name
        except ValueError:
            return None
        bare = self.entry(name)
        if bare is not None:
            return bare
        named = self.named(name)
        return named[0] if len(named) == 1 else None

    @property
    def menu_entry(self) -> Entry | None:
        for entry in self.entries:
            if entry.spec.menu:
                return entry
        return None

    @property
    def title(self) -> str:
        return self.name.rsplit(".", 1)[-1]


Action = Union[Message, Show, FuncCall, Link, Dialog, Wizard, Block]  # noqa: UP007 (runtime alias)


@dataclass(frozen=True)
class ZuiFile:
    path: Path
    blocks: dict[str, Block]  # every block, nested ones by dotted name
    top: tuple[str, ...]  # the top-level block names, in file order

    @property
    def first_block(self) -> str:
        return self.top[0]
