"""Functions for the Level 1 demo, contributed the way every app contributes them."""

from __future__ import annotations

import platform
from typing import Any

from zCLI import ActionFailed, FuncContext, Plugin, __version__


def echo(message: str) -> dict[str, str]:
    return {"echo": message}


def status(*, ctx: FuncContext) -> dict[str, Any]:
    ctx.display.success("All subsystems are ready.")
    return {"version": __version__, "python": platform.python_version()}


def sign(name: str, city: str = "") -> str:
    if not name.strip():
        raise ActionFailed("A guestbook entry needs a name.")
    where = f" from {city}" if city.strip() else ""
    return f"Thank you, {name}{where}!"


PLUGIN = Plugin(name="level1", functions={"echo": echo, "status": status, "sign": sign})
