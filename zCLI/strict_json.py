"""JSON as RFC 8259 defines it, for what clients send to the bridge and to zServer.

Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, and reads
``1e999`` as infinity; none of them is JSON, and echoing them back produces text no
other parser reads. ``loads`` refuses them with ``NotJson``, which says which token
it was; each caller words the sentence its client gets. ``dumps`` refuses to write
them (ValueError). Both reuse one encoder and one decoder: building them per call
costs more than a small message's encoding.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["NotJson", "dumps", "loads"]


class NotJson(ValueError):
    """A token JSON does not allow: a named constant, or a number too large for one."""

    def __init__(self, token: str, constant: bool) -> None:
        super().__init__(f"{token} is not JSON")
        self.token = token
        self.constant = constant


def _refuse_constant(name: str) -> Any:
    raise NotJson(name, constant=True)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJson(text, constant=False)
    return value


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_ENCODER = json.JSONEncoder(allow_nan=False)


def loads(text: str | bytes) -> Any:
    """``json.loads`` that raises NotJson for NaN, Infinity and overflowing numbers
    (and, like it, ValueError for malformed text, RecursionError for deep nesting)."""
    if isinstance(text, str):
        return _DECODER.decode(text)
    return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)


def dumps(value: Any) -> str:
    """``json.dumps`` that raises ValueError for NaN and infinities (TypeError for what
    JSON has no form for)."""
    return _ENCODER.encode(value)
