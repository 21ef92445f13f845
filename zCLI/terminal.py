"""The terminal renderer: the only code in zCLI that writes to a person's screen.

``render`` turns a display event (or a menu) into text; colour codes are added only
when the output stream is a TTY, so piped and tested output is plain and exact.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from .display import DisplayEvent

__all__ = ["TerminalRenderer", "render"]

_COLOURS = {
    "header": "\033[1;36m",
    "success": "\033[32m",
    "info": "\033[34m",
    "warning": "\033[33m",
    "error": "\033[31m",
}
_RESET = "\033[0m"
_PREFIX = {"success": "[ok] ", "info": "[info] ", "warning": "[warning] ", "error": "[error] "}


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _table(columns: list[Any], rows: list[list[Any]]) -> str:
    cells = [[_cell(c) for c in columns]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = [
        "  ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(event: DisplayEvent, colour: bool = False) -> str:
    """The text of one event, without a trailing newline."""
    data = event.data
    name = event.name
    if name == "text":
        text = " " * int(data.get("indent", 0)) + str(data["content"])
    elif name == "header":
        text = f"== {data['label']} =="
    elif name == "line":
        text = str(data.get("char", "-")) * int(data.get("width", 40))
    elif name in _PREFIX:
        text = _PREFIX[name] + str(data["content"])
    elif name == "list":
        text = "\n".join(f"  - {_cell(item)}" for item in data["items"])
    elif name == "json":
        text = json.dumps(data["data"], indent=2, sort_keys=True)
    elif name == "table":
        text = _table(data["columns"], data["rows"])
        if "title" in data:
            text = f"{data['title']}\n{text}"
    elif name == "progress":
        total = data["total"] or 1
        percent = int(100 * data["current"] / total)
        label = f"{data['label']} " if "label" in data else ""
        text = f"{label}[{data['current']}/{data['total']}] {percent}%"
    else:  # EVENT_FIELDS and this function change together; a miss is our bug
        raise AssertionError(f"no terminal rendering for display event {name!r}")
    if colour and name in _COLOURS:
        return f"{_COLOURS[name]}{text}{_RESET}"
    return text


class TerminalRenderer:
    """A display sink that writes each event to a text stream as it arrives."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.colour = bool(isatty and isatty())

    def __call__(self, event: DisplayEvent) -> None:
        self.write(render(event, self.colour))

    def write(self, text: str, end: str = "\n") -> None:
        self.stream.write(text + end)
        self.stream.flush()
