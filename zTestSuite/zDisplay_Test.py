"""zDisplay: events are checked data, drawn exactly for a terminal and shaped for JSON."""

from __future__ import annotations

import io

from zCLI import Display, DisplayEvent
from zCLI.terminal import TerminalRenderer, render
from zTestSuite import zTestCase


class TestEvents(zTestCase):
    def test_terminal_rendering(self) -> None:
        """Every event kind has one exact plain-text rendering."""
        table = [
            (DisplayEvent("text", {"content": "hi", "indent": 2}), "  hi"),
            (DisplayEvent("header", {"label": "Main"}), "== Main =="),
            (DisplayEvent("line", {"width": 5}), "-----"),
            (DisplayEvent("success", {"content": "ok"}), "[ok] ok"),
            (DisplayEvent("info", {"content": "fyi"}), "[info] fyi"),
            (DisplayEvent("warning", {"content": "hm"}), "[warning] hm"),
            (DisplayEvent("error", {"content": "no"}), "[error] no"),
            (DisplayEvent("list", {"items": ["a", 1]}), "  - a\n  - 1"),
            (
                DisplayEvent("json", {"data": {"b": 1, "a": [2]}}),
                '{\n  "a": [\n    2\n  ],\n  "b": 1\n}',
            ),
            (
                DisplayEvent("table", {"columns": ["name", "n"], "rows": [["ab", 1], ["c", 22]]}),
                "name  n\n----  --\nab    1\nc     22",
            ),
            (
                DisplayEvent("progress", {"current": 1, "total": 4, "label": "copy"}),
                "copy [1/4] 25%",
            ),
        ]
        for event, text in table:
            with self.subTest(event=event.name):
                self.assertEqual(render(event), text)

    def test_colour_only_when_asked(self) -> None:
        """Colour codes wrap the text only when colour is on."""
        event = DisplayEvent("error", {"content": "no"})
        self.assertEqual(render(event, colour=True), "\033[31m[error] no\033[0m")

    def test_renderer_writes_plain_text_to_a_pipe(self) -> None:
        """A non-TTY stream gets no colour codes."""
        stream = io.StringIO()
        Display(TerminalRenderer(stream)).warning("careful")
        self.assertEqual(stream.getvalue(), "[warning] careful\n")

    def test_json_shape(self) -> None:
        """An event becomes the bridge's display payload."""
        event = Display(lambda e: None).table(["a"], [[1]])
        self.assertEqual(
            event.to_json(),
            {
                "event": "display",
                "display_event": "table",
                "data": {"columns": ["a"], "rows": [[1]]},
            },
        )

    def test_facade_validates(self) -> None:
        """A wrong call is refused before reaching the sink."""
        seen: list[DisplayEvent] = []
        display = Display(seen.append)
        with self.assertRaises(ValueError) as caught:
            display.emit("text")
        self.assertEqual(str(caught.exception), "display event 'text' needs field(s) content")
        with self.assertRaises(ValueError) as caught:
            display.progress("half", 2)
        self.assertEqual(
            str(caught.exception), "display event 'progress' needs 'current' to be a number"
        )
        self.assertEqual(seen, [])

    def test_parse_from_zui_value(self) -> None:
        """{event: ..., fields} parses; an extra field is refused."""
        self.assertEqual(
            DisplayEvent.parse({"event": "info", "content": "x"}),
            DisplayEvent("info", {"content": "x"}),
        )
        with self.assertRaises(ValueError) as caught:
            DisplayEvent.parse({"event": "info", "content": "x", "colour": "red"})
        self.assertEqual(
            str(caught.exception), "display event 'info' does not take field(s) colour"
        )
