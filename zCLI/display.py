"""zDisplay: display events kept as data, and the facade that raises them.

An event is a name and a small dict. ``EVENT_FIELDS`` says which fields each event
requires and allows; a zUI ``zDisplay`` value and a plugin's ``ctx.display`` call are
checked against it. Rendering is someone else's job: ``terminal.render`` draws an
event for a person, ``to_json`` shapes it for the bridge. Nothing here reads stdin.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVENT_FIELDS", "Display", "DisplayEvent", "Sink"]

# event name -> (required fields, optional fields)
EVENT_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "text": (frozenset({"content"}), frozenset({"indent"})),
    "header": (frozenset({"label"}), frozenset({"style"})),
    "line": (frozenset(), frozenset({"char", "width"})),
    "success": (frozenset({"content"}), frozenset()),
    "info": (frozenset({"content"}), frozenset()),
    "warning": (frozenset({"content"}), frozenset()),
    "error": (frozenset({"content"}), frozenset()),
    "list": (frozenset({"items"}), frozenset({"style"})),
    "json": (frozenset({"data"}), frozenset()),
    "table": (frozenset({"columns", "rows"}), frozenset({"title"})),
    "progress": (frozenset({"current", "total"}), frozenset({"label"})),
}


@dataclass(frozen=True)
class DisplayEvent:
    """One thing to show: ``name`` is a key of EVENT_FIELDS, ``data`` its fields."""

    name: str
    data: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> DisplayEvent:
        """Build an event from ``{"event": name, **fields}``; raise ValueError if wrong."""
        if "event" not in raw:
            raise ValueError("a zDisplay value needs an 'event' field")
        name = raw["event"]
        data = {k: v for k, v in raw.items() if k != "event"}
        return cls.checked(name, data)

    @classmethod
    def checked(cls, name: Any, data: Mapping[str, Any]) -> DisplayEvent:
        if name not in EVENT_FIELDS:
            raise ValueError(
                f"unknown display event {name!r}; expected one of {', '.join(EVENT_FIELDS)}"
            )
        required, optional = EVENT_FIELDS[name]
        missing = sorted(required - data.keys())
        if missing:
            raise ValueError(f"display event {name!r} needs field(s) {', '.join(missing)}")
        extra = sorted(data.keys() - required - optional)
        if extra:
            raise ValueError(f"display event {name!r} does not take field(s) {', '.join(extra)}")
        _check_shapes(name, data)
        return cls(name, dict(data))

    def to_json(self) -> dict[str, Any]:
        """The payload the bridge sends (without the request id)."""
        return {"event": "display", "display_event": self.name, "data": dict(self.data)}


def _check_shapes(name: str, data: Mapping[str, Any]) -> None:
    if name == "list" and not isinstance(data["items"], list):
        raise ValueError("display event 'list' needs 'items' to be a list")
    if name == "table":
        if not isinstance(data["columns"], list) or not isinstance(data["rows"], list):
            raise ValueError("display event 'table' needs 'columns' and 'rows' to be lists")
        width = len(data["columns"])
        for row in data["rows"]:
            if not isinstance(row, list) or len(row) != width:
                raise ValueError(f"display event 'table' needs every row to have {width} cells")
    if name == "progress":
        for key in ("current", "total"):
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"display event 'progress' needs '{key}' to be a number")


Sink = Callable[[DisplayEvent], None]


class Display:
    """What plugins and the dispatcher call to show things; hands events to a sink."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def emit(self, name: str, **fields: Any) -> DisplayEvent:
        event = DisplayEvent.checked(name, fields)
        self._sink(event)
        return event

    def text(self, content: str) -> DisplayEvent:
        return self.emit("text", content=content)

    def header(self, label: str) -> DisplayEvent:
        return self.emit("header", label=label)

    def line(self) -> DisplayEvent:
        return self.emit("line")

    def success(self, content: str) -> DisplayEvent:
        return self.emit("success", content=content)

    def info(self, content: str) -> DisplayEvent:
        return self.emit("info", content=content)

    def warning(self, content: str) -> DisplayEvent:
        return self.emit("warning", content=content)

    def error(self, content: str) -> DisplayEvent:
        return self.emit("error", content=content)

    def list(self, items: builtins.list[Any]) -> DisplayEvent:
        return self.emit("list", items=items)

    def json(self, data: Any) -> DisplayEvent:
        return self.emit("json", data=data)

    def table(
        self, columns: builtins.list[str], rows: builtins.list[builtins.list[Any]]
    ) -> DisplayEvent:
        return self.emit("table", columns=columns, rows=rows)

    def progress(self, current: float, total: float, label: str | None = None) -> DisplayEvent:
        if label is None:
            return self.emit("progress", current=current, total=total)
        return self.emit("progress", current=current, total=total, label=label)
