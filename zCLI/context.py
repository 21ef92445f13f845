"""What a plugin function receives, and the one way a function call is performed.

A function that declares a ``ctx`` parameter gets a ``FuncContext``: a ``display``
bound to whoever asked (a terminal, or one WebSocket client), the session and the
zCLI instance. A function raises ``ActionFailed`` to refuse with a sentence for the
user; any other exception is a bug, logged with its traceback and reported as an
``internal`` error that names the function and nothing of its internals.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from .dispatch import Call
from .display import Display
from .exceptions import RequestError, zCLIError
from .session import Session

__all__ = ["FuncContext", "call_error", "call_sync"]

log = logging.getLogger("zCLI.zFunc")


@dataclass
class FuncContext:
    display: Display
    session: Session
    zcli: Any


def call_error(call: Call, exc: Exception) -> Exception:
    """What a failed call becomes: zCLI's own errors stay as they are; anything else is
    a bug in the function, logged with its traceback and reported as ``internal``."""
    if isinstance(exc, zCLIError):
        return exc
    log.error("zFunc %s raised %s", call.function.qualname, type(exc).__name__, exc_info=exc)
    return RequestError(f"{call.function.qualname} failed with an internal error.", "internal")


def call_sync(call: Call, ctx: FuncContext) -> Any:
    """Run a zFunc call to completion in this thread (async functions get their own loop)."""
    kwargs = dict(call.kwargs)
    if call.function.wants_ctx:
        kwargs["ctx"] = ctx
    result = call.function.target(*call.args, **kwargs)
    if call.function.is_async:
        result = asyncio.run(result)
    return result
