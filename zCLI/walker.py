"""zWalker: walking a zUI file menu by menu.

``walk`` is the pure loop (enter the block, offer its menu, run the choice, repeat)
written as a generator of the dispatcher's effects plus ``Choose``. ``run_terminal``
drives it against text streams, which is all Terminal mode is; the bridge drives the
dispatcher directly, one request at a time.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .context import FuncContext, call_error, call_sync
from .dispatch import Ask, Call, Dispatcher, Emit, MenuView, Outcome, result_events
from .display import Display, DisplayEvent
from .exceptions import RequestError
from .session import Session
from .terminal import TerminalRenderer

__all__ = ["Choose", "zWalker"]

log = logging.getLogger("zCLI.zWalker")


@dataclass(frozen=True)
class Choose:
    """Ask the user to pick from a menu; answered with the typed line, or None at EOF."""

    menu: MenuView


def _error(text: str) -> Emit:
    return Emit(DisplayEvent("error", {"content": text}))


class zWalker:
    def __init__(self, dispatcher: Dispatcher, zcli: Any = None) -> None:
        self.dispatcher = dispatcher
        self.zcli = zcli

    def start(self, ref: str | Path, block: str | None = None) -> Session:
        return self.dispatcher.start(ref, block)

    def walk(self, session: Session) -> Any:
        """The menu loop; returns the exit status (0 for stop and for end of input)."""
        try:
            yield from self.dispatcher.enter(session)
        except RequestError as exc:
            yield _error(exc.message)
        while True:
            view = self.dispatcher.menu(session)
            if view is None:
                if not session.breadcrumbs:
                    return 0
                yield from self.dispatcher.back(session)
                continue
            answer = yield Choose(view)
            if answer is None:
                return 0
            key = view.pick(answer)
            if key is None:
                yield _error(
                    f"{answer.strip()!r} is not a choice; type a number from 1 to "
                    f"{len(view.options)} or a name."
                )
                continue
            if key == "stop":
                return 0
            try:
                outcome: Outcome = yield from self.dispatcher.dispatch(session, key)
            except RequestError as exc:
                yield _error(exc.message)
                continue
            if not outcome.moved:
                for event in result_events(outcome.result):
                    yield Emit(event)

    def run_terminal(self, session: Session, stdin: TextIO, stdout: TextIO) -> int:
        """Walk ``session`` reading choices from ``stdin`` and drawing on ``stdout``."""
        return _TerminalDriver(self, session, stdin, stdout).run()


class _TerminalDriver:
    def __init__(self, walker: zWalker, session: Session, stdin: TextIO, stdout: TextIO):
        self.walker = walker
        self.session = session
        self.stdin = stdin
        self.renderer = TerminalRenderer(stdout)
        self.interactive = bool(getattr(stdin, "isatty", lambda: False)())
        self.context = FuncContext(Display(self.renderer), session, walker.zcli)

    def run(self) -> int:
        steps = self.walker.walk(self.session)
        reply: Any = None
        error: BaseException | None = None
        while True:
            try:
                effect = steps.throw(error) if error is not None else steps.send(reply)
            except StopIteration as stop:
                return int(stop.value)
            reply, error = None, None
            if isinstance(effect, Emit):
                self.renderer(effect.event)
            elif isinstance(effect, Choose):
                self._menu(effect.menu)
                reply = self._read("> ")
            elif isinstance(effect, Ask):
                reply = self._read(f"{effect.prompt}: ", secret=effect.kind == "password")
            elif isinstance(effect, Call):
                try:
                    reply = call_sync(effect, self.context)
                except Exception as exc:
                    error = call_error(effect, exc)
            else:
                raise AssertionError(f"unknown effect {effect!r}")

    def _menu(self, view: MenuView) -> None:
        self.renderer(DisplayEvent("header", {"label": " > ".join(view.trail)}))
        for number, option in enumerate(view.options, 1):
            self.renderer.write(f"  {number}) {option.label}")

    def _read(self, prompt: str, secret: bool = False) -> str | None:
        if secret and self.interactive:
            try:
                return getpass.getpass(prompt, stream=self.renderer.stream)
            except EOFError:
                return None
        self.renderer.write(prompt, end="")
        line = self.stdin.readline()
        if not line:
            self.renderer.write("")
            return None
        answer = line.rstrip("\r\n")
        if not self.interactive:  # nobody's terminal echoed it: keep the transcript readable
            self.renderer.write("*" * len(answer) if secret else answer)
        return answer
