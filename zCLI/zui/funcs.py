"""zFunc call strings: ``&plugin.fn(arg, key=value)`` parsed into data, never evaluated.

Arguments may be literals (strings, numbers, booleans, None, lists, dicts), dialog
values ``zConv.<field>`` and wizard results ``zHat[0]``, ``zHat["name"]`` or
``zHat.name``. The call is parsed with ``ast`` and every node is checked against that
whitelist; anything else is refused when the zUI file loads.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["FuncCall", "Ref", "resolve_refs"]

_CALL = re.compile(r"&([A-Za-z_]\w*)\.([A-Za-z_]\w*)\((.*)\)", re.DOTALL)


@dataclass(frozen=True)
class Ref:
    """A value taken from the session when the call runs: zConv.<key> or zHat[<key>]."""

    source: str  # "zConv" or "zHat"
    key: str | int


@dataclass(frozen=True, eq=False)
class FuncCall:
    """A parsed ``&plugin.fn(...)``; args and kwargs may hold Ref values."""

    plugin: str
    function: str
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    source: str

    @property
    def qualname(self) -> str:
        return f"{self.plugin}.{self.function}"

    @classmethod
    def parse(cls, source: object) -> FuncCall:
        if not isinstance(source, str):
            raise ValueError(f"zFunc needs a string like '&plugin.fn()', got {source!r}")
        match = _CALL.fullmatch(source.strip())
        if match is None:
            raise ValueError(f"zFunc {source!r} is not of the form '&plugin.fn(args)'")
        plugin, function, arg_text = match.groups()
        try:
            tree = ast.parse(f"_({arg_text})", mode="eval")
        except SyntaxError:
            raise ValueError(f"zFunc {source!r} has arguments that do not parse") from None
        call = tree.body
        assert isinstance(call, ast.Call)  # guaranteed by the wrapper above
        args = tuple(_value(node, source) for node in call.args)
        kwargs = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise ValueError(f"zFunc {source!r}: ** arguments are not allowed")
            kwargs[keyword.arg] = _value(keyword.value, source)
        return cls(plugin, function, args, kwargs, source)


def _value(node: ast.AST, source: str) -> Any:
    if isinstance(node, ast.Constant) and not isinstance(node.value, bytes):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _value(node.operand, source)
        if isinstance(inner, int | float) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.List | ast.Tuple):
        return [_value(item, source) for item in node.elts]
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {
            _value(k, source): _value(v, source)
            for k, v in zip(node.keys, node.values, strict=True)
            if k is not None
        }
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        if node.value.id in ("zConv", "zHat"):
            return Ref(node.value.id, node.attr)
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("zConv", "zHat")
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str | int)
        and not isinstance(node.slice.value, bool)
    ):
        return Ref(node.value.id, node.slice.value)
    raise ValueError(
        f"zFunc {source!r}: argument {ast.unparse(node)!r} is not allowed; use literals, "
        "zConv.<field> or zHat[<index or name>]"
    )


def resolve_refs(value: Any, zconv: Mapping[str, Any], zhat: Any) -> Any:
    """Replace every Ref inside ``value`` by its current session value."""
    if isinstance(value, Ref):
        if value.source == "zConv":
            key = str(value.key)
            if key not in zconv:
                raise LookupError(f"zConv has no field {key!r}")
            return zconv[key]
        return zhat[value.key]
    if isinstance(value, list):
        return [resolve_refs(item, zconv, zhat) for item in value]
    if isinstance(value, dict):
        return {k: resolve_refs(v, zconv, zhat) for k, v in value.items()}
    return value
