"""zDispatch: run a zKey in a session, as a generator of effects.

The dispatcher does no I/O. Running a key yields effects the caller must perform and
answer: ``Emit`` (show an event; answer None), ``Ask`` (prompt for a value; answer
the text, or None when input ended), ``Call`` (run a plugin function; answer its
return value, or throw its exception into the generator). The generator returns an
``Outcome``. The terminal walker and the WebSocket bridge are two drivers of this
one generator, which is why a key behaves the same in both.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .display import DisplayEvent
from .exceptions import ActionFailed, InputClosed, KeyNotFound, RequestError
from .plugins import FunctionInfo, Registry
from .session import Hat, Location, Session
from .zui import (
    Action,
    Block,
    Dialog,
    Entry,
    FuncCall,
    Link,
    Menu,
    Message,
    Show,
    Wizard,
    ZuiLoader,
)
from .zui.funcs import resolve_refs

__all__ = [
    "Ask",
    "Call",
    "Dispatcher",
    "Effect",
    "Emit",
    "MenuOption",
    "MenuView",
    "Outcome",
    "Steps",
    "result_events",
]


@dataclass(frozen=True)
class Emit:
    event: DisplayEvent


@dataclass(frozen=True)
class Ask:
    field: str
    prompt: str
    kind: str  # "string" or "password"


@dataclass(frozen=True)
class Call:
    function: FunctionInfo
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


Effect = Emit | Ask | Call


@dataclass(frozen=True)
class Outcome:
    """What running a key produced: ``result`` is what the bridge returns."""

    result: Any = None
    moved: bool = False  # the session is now in another block


Steps = Generator[Effect, Any, Outcome]


@dataclass(frozen=True)
class MenuOption:
    key: str  # the raw key to dispatch, or a reserved choice
    label: str


@dataclass(frozen=True)
class MenuView:
    block: str
    trail: tuple[str, ...]
    options: tuple[MenuOption, ...]

    def pick(self, text: str) -> str | None:
        """The key a typed answer means: a 1-based number, a raw key or a label."""
        text = text.strip()
        if text.isdigit():
            index = int(text) - 1
            return self.options[index].key if 0 <= index < len(self.options) else None
        for option in self.options:
            if text in (option.key, option.label):
                return option.key
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "block": self.block,
            "trail": list(self.trail),
            "options": [{"key": o.key, "label": o.label} for o in self.options],
        }


def result_events(result: Any) -> list[DisplayEvent]:
    """How a key's result is shown where there is no reply to carry it (a terminal)."""
    if result is None:
        return []
    if isinstance(result, dict) and set(result) == {"message"}:
        return [DisplayEvent("text", {"content": str(result["message"])})]
    if isinstance(result, str):
        return [DisplayEvent("text", {"content": result})]
    return [DisplayEvent("json", {"data": result})]


class Dispatcher:
    """Resolves keys and runs actions against a session; holds no session state."""

    def __init__(self, loader: ZuiLoader, registry: Registry) -> None:
        self.loader = loader
        self.registry = registry

    # --- pure lookups ----------------------------------------------------------

    def block_at(self, location: Location) -> Block:
        return self.loader.load(location.file).blocks[location.block]

    def resolve(self, location: Location, key: str) -> Entry:
        """The entry ``key`` names in the block at ``location``; depends on nothing else."""
        entry = self.block_at(location).resolve(key)
        if entry is None:
            raise KeyNotFound(key, location.block, location.file.name)
        return entry

    def start(self, ref: str | Path, block: str | None = None) -> Session:
        zui = self.loader.load(ref)
        name = block or zui.first_block
        if name not in zui.blocks:
            raise KeyNotFound(name, "(top level)", zui.path.name)
        return Session(Location(zui.path, name))

    def menu(self, session: Session) -> MenuView | None:
        block = self.block_at(session.location)
        entry = block.menu_entry
        if entry is None:
            return None
        assert isinstance(entry.action, Menu)
        options = []
        for choice in entry.action.choices:
            if choice in ("zBack", "stop"):
                options.append(MenuOption(choice, choice))
                continue
            target = block.resolve(choice)
            assert target is not None  # the loader checked every choice
            options.append(MenuOption(target.spec.raw, target.spec.name))
        keys = {o.key for o in options}
        if session.breadcrumbs and not entry.spec.anchor and "zBack" not in keys:
            options.append(MenuOption("zBack", "zBack"))
        if "stop" not in keys:
            options.append(MenuOption("stop", "stop"))
        return MenuView(block.name, tuple(session.trail()), tuple(options))

    # --- running ---------------------------------------------------------------

    def dispatch(self, session: Session, key: str) -> Steps:
        """Run the key ``key`` of the session's current block."""
        if key == "zBack":
            return (yield from self.back(session))
        entry = self.resolve(session.location, key)
        if entry.spec.menu:
            view = self.menu(session)
            assert view is not None
            return Outcome({"menu": view.to_json()})
        action = entry.action
        assert not isinstance(action, Menu)  # menu keys were answered above
        if not entry.spec.required:
            return (yield from self.run(session, action, entry.spec.bounce))
        while True:
            try:
                return (yield from self.run(session, action, entry.spec.bounce))
            except ActionFailed as failure:
                yield Emit(DisplayEvent("error", {"content": failure.message}))
                answer = yield Ask("retry", "Press Enter to try again, or type stop", "string")
                if answer is None or answer.strip() == "stop":
                    raise InputClosed(
                        f"{entry.spec.name} was stopped before it succeeded."
                    ) from failure

    def enter(self, session: Session) -> Steps:
        """Run, in order, the keys of the current block that its menu does not offer."""
        block = self.block_at(session.location)
        menu = block.menu_entry
        offered: set[str] = set()
        if menu is not None:
            assert isinstance(menu.action, Menu)
            for choice in menu.action.choices:
                target = block.resolve(choice)
                if target is not None:
                    offered.add(target.spec.raw)
        for entry in block.entries:
            if entry is menu:
                break
            if entry.spec.raw in offered:
                continue
            outcome = yield from self.dispatch(session, entry.spec.raw)
            if outcome.moved:
                return outcome
            for event in result_events(outcome.result):
                yield Emit(event)
        return Outcome(self.location_result(session))

    def back(self, session: Session) -> Steps:
        if not session.breadcrumbs:
            raise RequestError("There is no previous block to go back to.", "no_back")
        session.location = session.breadcrumbs.pop()
        return Outcome(self.location_result(session), moved=True)
        yield  # a generator like every other step, though it has nothing to ask

    def location_result(self, session: Session) -> dict[str, Any]:
        view = self.menu(session)
        return {"block": session.location.block, "menu": view.to_json() if view else None}

    def run(self, session: Session, action: Action, bounce: bool = False) -> Steps:
        if isinstance(action, Message):
            return Outcome({"message": action.text})
        if isinstance(action, Show):
            yield Emit(action.event)
            return Outcome()
        if isinstance(action, FuncCall):
            return Outcome((yield from self._call(session, action)))
        if isinstance(action, Link | Block):
            return (yield from self._go(session, action, bounce))
        if isinstance(action, Dialog):
            return (yield from self._dialog(session, action, bounce))
        if isinstance(action, Wizard):
            session.zhat = Hat()
            outcome = Outcome()
            for step in action.steps:
                outcome = yield from self.run(session, step.action, bounce=True)
                session.zhat.add(step.name, outcome.result)
            return outcome
        raise AssertionError(f"the loader produced an unknown action {action!r}")

    def _call(self, session: Session, call: FuncCall) -> Generator[Effect, Any, Any]:
        info = self.registry.function(call.plugin, call.function)
        try:
            args = tuple(resolve_refs(a, session.zconv, session.zhat) for a in call.args)
            kwargs = {
                k: resolve_refs(v, session.zconv, session.zhat) for k, v in call.kwargs.items()
            }
        except LookupError as exc:
            raise ActionFailed(f"{call.qualname} could not get its arguments: {exc}.") from None
        result = yield Call(info, args, kwargs)
        if result is False:
            raise ActionFailed(f"{call.qualname} did not succeed.")
        return result

    def _go(self, session: Session, target: Link | Block, bounce: bool) -> Steps:
        here = session.location
        if isinstance(target, Block):
            there = Location(target.file, target.name)
        else:
            file = here.file if target.file is None else self.loader.load(target.file).path
            name = target.block or self.loader.load(file).first_block
            there = Location(file, name)
        if bounce:  # run the target's keys, then come back here
            session.location = there
            try:
                yield from self.enter(session)
            finally:
                session.location = here
            return Outcome()
        session.breadcrumbs.append(here)
        session.location = there
        outcome = yield from self.enter(session)
        return Outcome(outcome.result, moved=True)

    def _dialog(self, session: Session, dialog: Dialog, bounce: bool) -> Steps:
        values: dict[str, str] = {}
        for field in dialog.fields:
            answer = yield Ask(field.name, field.prompt, field.kind)
            if answer is None or answer.strip() == "stop":
                raise InputClosed("The dialog was cancelled.")
            values[field.name] = answer
        session.zconv = values
        if dialog.on_submit is None:
            return Outcome({"values": values})
        return (yield from self.run(session, dialog.on_submit, bounce))
