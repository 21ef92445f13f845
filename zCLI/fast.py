"""zBifrost's fast mode: what ``pip install zCLI[fast]`` brings, and whether it is here.

Fast mode runs the server's event loop on uvloop and has the bridge read and write JSON
through orjson (``strict_json.fast_loads`` and ``fast_dumps``, which keep the strict
rules). ``websocket.fast`` turns it on or off; left unset it is on exactly when both
packages import, so an install without the extra serves as before. ``zcli serve --fast``
without them is an error that names the install command. In fast mode the bridge's
connections run on its sans-I/O adapter unless ``websocket.adapter`` names another
(``zCLI.config.load_config`` settles it; see ``zCLI.bridge.sansio``).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["INSTALL", "PACKAGES", "available", "missing", "run"]

INSTALL = "pip install zCLI[fast]"
PACKAGES = ("uvloop", "orjson")

T = TypeVar("T")


@functools.cache
def missing() -> tuple[str, ...]:
    """The fast extra's packages that do not import here (once per process)."""
    absent = []
    for name in PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return tuple(absent)


def available() -> bool:
    return not missing()


def run(main: Coroutine[Any, Any, T], fast: bool) -> T:
    """``asyncio.run(main)``, on a uvloop event loop when ``fast``."""
    if not fast:
        return asyncio.run(main)
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
