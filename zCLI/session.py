"""Per-user state: where they are in the zUI, where they came from, what they entered.

The terminal has one session; the bridge keeps one per connection. Nothing else in
zCLI holds navigation state, so two sessions never see each other's block or values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Hat", "Location", "Session"]


@dataclass(frozen=True)
class Location:
    file: Path
    block: str


class Hat:
    """zHat: wizard step results, read by position (``zHat[0]``) or name (``zHat["x"]``)."""

    __slots__ = ("_values", "_names")  # one per session, so per bridge connection

    def __init__(self) -> None:
        self._values: list[Any] = []
        self._names: dict[str, int] = {}

    def add(self, name: str | None, value: Any) -> None:
        if name is not None:
            self._names[name] = len(self._values)
        self._values.append(value)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            if key not in self._names:
                raise LookupError(f"zHat has no step named {key!r}")
            return self._values[self._names[key]]
        if not -len(self._values) <= key < len(self._values):
            raise LookupError(f"zHat has no step {key}")
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def to_json(self) -> list[Any]:
        return list(self._values)


@dataclass(slots=True)  # one per bridge connection: no __dict__
class Session:
    location: Location
    breadcrumbs: list[Location] = field(default_factory=list)
    zhat: Hat = field(default_factory=Hat)
    zconv: dict[str, Any] = field(default_factory=dict)

    def trail(self) -> list[str]:
        """Block titles from the first block to here (``Main.Settings`` -> ``Settings``)."""
        crumbs = [*self.breadcrumbs, self.location]
        return [crumb.block.rsplit(".", 1)[-1] for crumb in crumbs]
