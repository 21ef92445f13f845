"""JSON as RFC 8259 defines it, for what clients send to the bridge and to zServer.

Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, and reads
``1e999`` as infinity; none of them is JSON, and echoing them back produces text no
other parser reads. ``loads`` refuses them with ``NotJson``, which says which token
it was; each caller words the sentence its client gets. ``dumps`` refuses to write
them (ValueError). Both reuse one encoder and one decoder: building them per call
costs more than a small message's encoding.

``fast_loads`` and ``fast_dumps`` (zBifrost's fast mode, ``pip install zCLI[fast]``) give
the same results through orjson, which is several times quicker, and hand every case
where orjson and ``json`` differ to ``loads`` and ``dumps``:

- orjson refuses what ``json`` accepts (lone surrogates, nesting past 1,024 levels,
  integers past 64 bits, dict keys that are not strings): ``json`` decides, as before;
- orjson reads an integer past 64 bits as a float: text holding 19 digits or more goes
  to ``loads``, which keeps it exact;
- orjson writes NaN and the infinities as ``null``: output holding ``null`` is written
  again by ``dumps``, which refuses them;
- orjson writes dataclasses, dates and subclasses of str, int, dict and list its own
  way: they go to ``dumps``. The one difference left: orjson writes a ``uuid.UUID`` as
  its string and an ``enum.Enum`` member as its value, where ``dumps`` refuses them.

Written text differs only in form (no spaces after separators, UTF-8 rather than
``\\u`` escapes); every JSON reader reads the same values.
"""

from __future__ import annotations

import json
import math
from typing import Any

try:
    import orjson
except ImportError:  # the fast extra is not installed: fast_loads and fast_dumps refuse
    orjson = None  # type: ignore[assignment]  # (a module or None; checked before use)

__all__ = ["NotJson", "dumps", "fast_dumps", "fast_loads", "loads"]


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


# A run of 19 digits may be an integer past 64 bits, which orjson reads as a float: text
# with that many digits in all is read by ``loads`` (counting them costs less than
# searching for the run).
_DIGITS = b"0123456789"
_LONG_NUMBER = 19
# Types orjson would write and json refuses go to ``dumps`` (which refuses them).
_FAST_OPTIONS = (
    0
    if orjson is None
    else orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def fast_loads(text: str | bytes) -> Any:
    """``loads`` through orjson: the same values, the same errors."""
    if orjson is None:
        raise RuntimeError("fast_loads needs orjson: pip install zCLI[fast]")
    try:
        data = text.encode() if isinstance(text, str) else text
    except UnicodeEncodeError:  # a lone surrogate character, which json reads
        return loads(text)
    if len(data) - len(data.translate(None, _DIGITS)) < _LONG_NUMBER:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # json says why, or reads what orjson refuses
    return loads(text)


def fast_dumps(value: Any) -> str:
    """``dumps`` through orjson: the same values, the same errors (but for UUID and
    Enum, which orjson writes)."""
    if orjson is None:
        raise RuntimeError("fast_dumps needs orjson: pip install zCLI[fast]")
    try:
        data = orjson.dumps(value, option=_FAST_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: json writes or refuses it
        return dumps(value)
    if b"null" in data:  # perhaps a NaN or an infinity, which json refuses
        return dumps(value)
    return data.decode()
