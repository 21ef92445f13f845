"""zUI key names and their modifiers, parsed once when a file loads.

``^Key`` bounce, ``~Key*`` anchored menu, ``Key*`` menu, ``Key!`` required. A prefix
and a suffix may combine (``^Save!``); two prefixes or two suffixes may not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["RESERVED_CHOICES", "KeySpec"]

RESERVED_CHOICES = ("zBack", "stop")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ \-]*")


@dataclass(frozen=True)
class KeySpec:
    """A key as written (``raw``) and what its modifiers mean."""

    raw: str
    name: str
    bounce: bool = False
    anchor: bool = False
    menu: bool = False
    required: bool = False

    @classmethod
    def parse(cls, raw: object) -> KeySpec:
        """Split modifiers from the name; raise ValueError naming what is wrong."""
        if not isinstance(raw, str):
            raise ValueError(f"a key must be a string, got {raw!r}")
        body = raw
        bounce = anchor = menu = required = False
        if body[:1] in ("^", "~"):
            bounce, anchor = body[0] == "^", body[0] == "~"
            body = body[1:]
        if body[:1] in ("^", "~"):
            raise ValueError(f"key {raw!r} has two prefix modifiers; use one of ^ or ~")
        if body[-1:] in ("*", "!"):
            menu, required = body[-1] == "*", body[-1] == "!"
            body = body[:-1]
        if body[-1:] in ("*", "!"):
            raise ValueError(f"key {raw!r} has two suffix modifiers; use one of * or !")
        if not _NAME.fullmatch(body) or body != body.strip():
            raise ValueError(
                f"key {raw!r} is not a valid name: start with a letter or _, then letters, "
                "digits, _, - or spaces"
            )
        if body in RESERVED_CHOICES:
            raise ValueError(f"key {raw!r} uses the reserved name {body!r}")
        if anchor and not menu:
            raise ValueError(f"key {raw!r}: the anchor ~ applies to menu keys (Key*) only")
        if bounce and menu:
            raise ValueError(f"key {raw!r}: a menu key cannot bounce (^)")
        return cls(raw, body, bounce, anchor, menu, required)
