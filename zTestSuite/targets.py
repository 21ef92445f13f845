"""Black-box targets: what a plan suite tests, given from outside or started by itself.

A suite declares its targets at module level::

    CHAT = Target("CHAT", "ws:// URL of a chat server; unset: the suite starts zCLI's chat app")

and asks ``CHAT.value`` when it sets up: the text given with ``--target CHAT=ws://...``
or ``ZTEST_TARGET_CHAT`` in the environment, or None, in which case it starts our own
implementation itself. ``--list`` prints every declared target with its meaning. The
runner passes ``--target`` on through the environment, so worker processes and any
process a test starts see the same targets.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType

__all__ = ["ENV_PREFIX", "Target", "TargetError", "apply_targets", "declared_targets"]

ENV_PREFIX = "ZTEST_TARGET_"
_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


class TargetError(ValueError):
    """A ``--target`` that is malformed or names no declared target."""


@dataclass(frozen=True)
class Target:
    name: str  # upper case: "CHAT"
    meaning: str  # one sentence: what VALUE is, and what happens without it

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise TargetError(
                f"target name {self.name!r} must be upper case letters, digits and _, "
                "starting with a letter"
            )

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name

    @property
    def value(self) -> str | None:
        """What the run was given for this target, or None (start our own)."""
        return os.environ.get(self.env) or None

    def describe(self) -> str:
        given = self.value
        state = f"given: {given}" if given is not None else "not given"
        return f"target {self.name} ({self.env}, {state}): {self.meaning}"


def declared_targets(module: ModuleType) -> list[Target]:
    """The Target objects a suite module defines at its top level, by name."""
    found = {v.name: v for v in vars(module).values() if isinstance(v, Target)}
    return [found[name] for name in sorted(found)]


def parse_target(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` -> (NAME upper-cased, VALUE); TargetError when malformed."""
    name, sep, value = text.partition("=")
    name = name.strip().upper()
    if not sep or not _NAME.fullmatch(name) or not value:
        raise TargetError(f"--target {text!r} is not NAME=VALUE (for example CHAT=ws://host:port)")
    return name, value


def apply_targets(given: Iterable[str], declared: Iterable[Target]) -> dict[str, str]:
    """Check each ``--target`` against the declared names and export it to the
    environment (``ZTEST_TARGET_<NAME>``); returns what was set."""
    known = {target.name for target in declared}
    pairs = dict(parse_target(text) for text in given)
    unknown = sorted(set(pairs) - known)
    if unknown:
        listing = ", ".join(sorted(known)) or "none"
        raise TargetError(
            f"no selected suite declares target {', '.join(unknown)} "
            f"(declared: {listing}); --list shows each suite's targets"
        )
    exported = {ENV_PREFIX + name: value for name, value in pairs.items()}
    os.environ.update(exported)
    return exported
