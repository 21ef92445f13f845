"""Load and validate zUI files before anything runs.

``yaml.safe_load`` gives the data; ``yaml.compose`` with the safe loader gives the line
of every key, so each error names the file, block, key and line. Validation is
complete when ``load`` returns: modifiers, constructs, display events, dialog fields,
zFunc arguments, plugin functions, menu choices, and links to other blocks and files.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from ..display import DisplayEvent
from ..exceptions import zUIError
from .funcs import FuncCall, Ref
from .keys import RESERVED_CHOICES, KeySpec
from .model import (
    Action,
    Block,
    Dialog,
    DialogField,
    Entry,
    Link,
    Menu,
    Message,
    Show,
    Wizard,
    WizardStep,
    ZuiFile,
)

__all__ = ["CONSTRUCTS", "FunctionTable", "ZuiLoader", "ref_path"]

CONSTRUCTS = ("zDisplay", "zFunc", "zLink", "zDialog", "zWizard")
_LINK = re.compile(r"@\.(zUI\.[A-Za-z0-9_\-]+)((?:\.[A-Za-z_][A-Za-z0-9_ \-]*)*)")
_FIELD = re.compile(r"[A-Za-z_]\w*")


class FunctionTable(Protocol):
    """What the loader asks the plugin registry."""

    def has_function(self, plugin: str, function: str) -> bool: ...

    def zui_file(self, name: str) -> Path | None: ...


def ref_path(workspace: Path, ref: str) -> Path:
    """``@.zUI.name`` -> ``<workspace>/zUI.name.yaml``; anything else is a plain path."""
    if ref.startswith("@."):
        return workspace / f"{ref[2:]}.yaml"
    return Path(ref)


def _line_index(text: str, file: str) -> dict[tuple[Any, ...], int]:
    """Map each key path to its 1-based line; refuse duplicate keys (safe_load hides them)."""
    lines: dict[tuple[Any, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[Any, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                key = key_node.value
                line = key_node.start_mark.line + 1
                if key in seen:
                    block = path[0] if path else key
                    raise zUIError("duplicate key", file=file, block=block, key=key, line=line)
                seen.add(key)
                lines[path + (key,)] = line
                walk(value_node, path + (key,))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[path + (index,)] = item.start_mark.line + 1
                walk(item, path + (index,))

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


@dataclass
class _Where:
    """Where in the file the parser is, for error messages."""

    file: str
    lines: dict[tuple[Any, ...], int]
    block: str
    path: tuple[Any, ...]
    key: str

    def fail(self, reason: str, extra: tuple[Any, ...] = ()) -> zUIError:
        line = None
        probe = self.path + extra
        while probe and line is None:
            line = self.lines.get(probe)
            probe = probe[:-1]
        return zUIError(reason, file=self.file, block=self.block, key=self.key, line=line)

    def deeper(self, *extra: Any) -> _Where:
        """The same block and key, further inside its value."""
        return dataclasses.replace(self, path=self.path + extra)


class ZuiLoader:
    """Loads zUI files once, validated, and caches them by resolved path."""

    def __init__(self, workspace: Path, functions: FunctionTable) -> None:
        self.workspace = workspace
        self.functions = functions
        self._cache: dict[Path, ZuiFile] = {}

    def path_for(self, ref: str) -> Path:
        """Where a zVaFile or zLink file reference points (workspace, then plugins)."""
        path = ref_path(self.workspace, ref)
        if ref.startswith("@.") and not path.is_file():
            name = ref[len("@.zUI.") :] if ref.startswith("@.zUI.") else ref[2:]
            plugin_path = self.functions.zui_file(name)
            if plugin_path is not None:
                return plugin_path
        return path

    def load(self, ref: str | Path) -> ZuiFile:
        if isinstance(ref, Path):  # sessions hold resolved paths: no file system call
            cached = self._cache.get(ref)
            if cached is not None:
                return cached
        path = (self.path_for(ref) if isinstance(ref, str) else ref).resolve()
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise zUIError(f"cannot read the file ({exc.strerror})", file=str(path)) from None
        zui = self._parse(path, text)
        self._cache[path] = zui  # before the link check, so cycles between files end
        try:
            self._check_links(zui)
        except zUIError:
            del self._cache[path]
            raise
        return zui

    # --- parsing ---------------------------------------------------------------

    def _parse(self, path: Path, text: str) -> ZuiFile:
        file = str(path)
        try:
            lines = _line_index(text, file)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            raise zUIError(
                f"not valid YAML ({getattr(exc, 'problem', exc)})", file=file, line=line
            ) from None
        if not isinstance(data, dict) or not data:
            raise zUIError("a zUI file is a mapping of blocks and has none", file=file)
        blocks: dict[str, Block] = {}
        for name, body in data.items():
            where = _Where(file, lines, str(name), (name,), str(name))
            if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_\-]*", name):
                raise where.fail("a block name must be a word of letters, digits, _ or -")
            if not isinstance(body, dict) or not body:
                raise where.fail("a block is a mapping of keys and this one is not")
            self._block(path, name, body, (name,), where, blocks)
        return ZuiFile(path, blocks, tuple(data))

    def _block(
        self,
        path: Path,
        name: str,
        body: dict[Any, Any],
        key_path: tuple[Any, ...],
        where: _Where,
        blocks: dict[str, Block],
    ) -> Block:
        entries: list[Entry] = []
        for raw, value in body.items():
            here = _Where(where.file, where.lines, name, key_path + (raw,), str(raw))
            try:
                spec = KeySpec.parse(raw)
            except ValueError as exc:
                raise here.fail(str(exc)) from None
            if spec.menu:
                action: Action | Menu = self._menu(value, here)
            else:
                action = self._action(value, here, f"{name}.{spec.name}", blocks)
            entries.append(Entry(spec, action, where.lines.get(key_path + (raw,), 0)))
        block = Block(name, path, tuple(entries), where.lines.get(key_path, 0))
        self._check_block(block, where)
        blocks[name] = block
        return block

    def _menu(self, value: Any, where: _Where) -> Menu:
        if not isinstance(value, list) or not value:
            raise where.fail("a menu key (Key*) needs a non-empty list of choices")
        for index, choice in enumerate(value):
            if not isinstance(choice, str):
                raise where.fail(f"menu choice {choice!r} is not a key name", (index,))
        return Menu(tuple(value))

    def _action(
        self, value: Any, where: _Where, nested_name: str, blocks: dict[str, Block]
    ) -> Action:
        if value is None:
            raise where.fail("the key has no value")
        if isinstance(value, bool | int | float | str):
            return Message(str(value))
        if isinstance(value, list):
            raise where.fail("a list is only valid as a menu (Key*) or a zWizard")
        assert isinstance(value, dict)
        constructs = [k for k in value if k in CONSTRUCTS]
        if not constructs:
            return self._nested(value, where, nested_name, blocks)
        if len(value) != 1:
            others = ", ".join(repr(k) for k in value if k != constructs[0])
            raise where.fail(f"{constructs[0]} cannot be combined with {others}")
        construct = constructs[0]
        inner = value[construct]
        sub = where.deeper(construct)
        parser: Callable[[Any, _Where, str, dict[str, Block]], Action] = getattr(
            self, f"_{construct}"
        )
        return parser(inner, sub, nested_name, blocks)

    def _nested(
        self, value: dict[Any, Any], where: _Where, name: str, blocks: dict[str, Block]
    ) -> Block:
        unknown = [
            k
            for k in value
            if isinstance(k, str) and k.startswith("z") and k not in CONSTRUCTS and k[1:2].isupper()
        ]
        if unknown:
            raise where.fail(
                f"unknown construct {unknown[0]!r}; expected one of {', '.join(CONSTRUCTS)}"
            )
        return self._block(Path(where.file), name, value, where.path, where, blocks)

    def _zDisplay(self, value: Any, where: _Where, *_: Any) -> Show:
        if not isinstance(value, dict):
            raise where.fail("zDisplay needs a mapping like {event: text, content: ...}")
        try:
            return Show(DisplayEvent.parse(value))
        except ValueError as exc:
            raise where.fail(str(exc)) from None

    def _zFunc(self, value: Any, where: _Where, *_: Any) -> FuncCall:
        try:
            call = FuncCall.parse(value)
        except ValueError as exc:
            raise where.fail(str(exc)) from None
        if not self.functions.has_function(call.plugin, call.function):
            raise where.fail(
                f"zFunc {call.source!r} names {call.qualname}, which no registered plugin provides"
            )
        return call

    def _zLink(self, value: Any, where: _Where, *_: Any) -> Link:
        if not isinstance(value, str):
            raise where.fail("zLink needs a string like '@.zUI.other.Block' or 'Block'")
        match = _LINK.fullmatch(value)
        if match:
            rest = match.group(2)[1:]
            return Link(value, f"@.{match.group(1)}", rest or None)
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ \-]*(\.[A-Za-z_][A-Za-z0-9_ \-]*)*", value):
            return Link(value, None, value)
        raise where.fail(f"zLink {value!r} is not '@.zUI.<file>[.<Block>]' or a block name")

    def _zDialog(self, value: Any, where: _Where, name: str, blocks: dict[str, Block]) -> Dialog:
        if not isinstance(value, dict) or "fields" not in value:
            raise where.fail("zDialog needs a mapping with 'fields' (and optionally 'onSubmit')")
        extra = sorted(set(value) - {"fields", "onSubmit"})
        if extra:
            raise where.fail(f"zDialog does not take {', '.join(map(repr, extra))}")
        raw_fields = value["fields"]
        if not isinstance(raw_fields, list) or not raw_fields:
            raise where.fail("zDialog 'fields' needs a non-empty list")
        fields = []
        for index, raw in enumerate(raw_fields):
            fields.append(self._dialog_field(raw, where, index))
        names = [f.name for f in fields]
        if len(set(names)) != len(names):
            raise where.fail("zDialog has two fields with the same name", ("fields",))
        on_submit = None
        if "onSubmit" in value:
            sub = where.deeper("onSubmit")
            on_submit = self._action(value["onSubmit"], sub, name, blocks)
            self._check_zconv(on_submit, set(names), sub)
        return Dialog(tuple(fields), on_submit)

    def _dialog_field(self, raw: Any, where: _Where, index: int) -> DialogField:
        at = ("fields", index)
        if isinstance(raw, str):
            raw = {"name": raw}
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise where.fail("a dialog field is a name or a mapping with 'name'", at)
        if not _FIELD.fullmatch(raw["name"]):
            raise where.fail(f"dialog field name {raw['name']!r} is not a word", at)
        extra = sorted(set(raw) - {"name", "prompt", "type"})
        if extra:
            raise where.fail(f"a dialog field does not take {', '.join(map(repr, extra))}", at)
        kind = raw.get("type", "string")
        if kind not in ("string", "password"):
            raise where.fail(f"dialog field type {kind!r} is not 'string' or 'password'", at)
        return DialogField(raw["name"], str(raw.get("prompt", raw["name"])), kind)

    def _check_zconv(self, action: Action, names: set[str], where: _Where) -> None:
        if isinstance(action, FuncCall):
            values = list(action.args) + list(action.kwargs.values())
            while values:
                item = values.pop()
                if isinstance(item, list):
                    values.extend(item)
                elif isinstance(item, dict):
                    values.extend(item.values())
                elif isinstance(item, Ref) and item.source == "zConv" and item.key not in names:
                    raise where.fail(
                        f"zFunc {action.source!r} reads zConv.{item.key}, "
                        "which is not a field of this dialog"
                    )

    def _zWizard(self, value: Any, where: _Where, name: str, blocks: dict[str, Block]) -> Wizard:
        if not isinstance(value, list) or not value:
            raise where.fail("zWizard needs a non-empty list of steps")
        steps = []
        for index, raw in enumerate(value):
            sub = where.deeper(index)
            step_name = None
            if isinstance(raw, dict) and len(raw) == 1:
                (only,) = raw
                if only not in CONSTRUCTS:
                    step_name = str(only)
                    sub = where.deeper(index, only)
                    raw = raw[only]
            action = self._action(raw, sub, f"{name}.step{index}", blocks)
            steps.append(WizardStep(step_name, action))
        return Wizard(tuple(steps))

    # --- whole-block and whole-file checks --------------------------------------

    def _check_block(self, block: Block, where: _Where) -> None:
        menus = [e for e in block.entries if e.spec.menu]
        if len(menus) > 1:
            raise zUIError(
                "a block can have one menu key; this one has "
                f"{', '.join(e.spec.raw for e in menus)}",
                file=where.file,
                block=block.name,
                key=menus[1].spec.raw,
                line=menus[1].line,
            )
        if not menus:
            return
        menu = menus[0]
        assert isinstance(menu.action, Menu)
        chosen: set[str] = set()
        for choice in menu.action.choices:
            if choice in RESERVED_CHOICES:
                continue
            entry = block.resolve(choice)
            if entry is None or entry.spec.menu:
                raise zUIError(
                    f"menu choice {choice!r} is not a key of this block",
                    file=where.file,
                    block=block.name,
                    key=menu.spec.raw,
                    line=menu.line,
                )
            chosen.add(entry.spec.raw)
        after = False
        for entry in block.entries:
            if entry is menu:
                after = True
            elif after and entry.spec.raw not in chosen:
                raise zUIError(
                    f"the key comes after menu {menu.spec.raw!r} and is not one of its "
                    "choices, so it would never run",
                    file=where.file,
                    block=block.name,
                    key=entry.spec.raw,
                    line=entry.line,
                )

    def _check_links(self, zui: ZuiFile) -> None:
        for block in zui.blocks.values():
            for entry in block.entries:
                for link in _links(entry.action):
                    self._check_link(zui, block, entry, link)

    def _check_link(self, zui: ZuiFile, block: Block, entry: Entry, link: Link) -> None:
        def fail(reason: str) -> zUIError:
            return zUIError(
                reason, file=str(zui.path), block=block.name, key=entry.spec.raw, line=entry.line
            )

        target = zui
        if link.file is not None:
            path = self.path_for(link.file)
            if not path.is_file():
                raise fail(f"zLink {link.target!r} points to {path}, which does not exist")
            target = self.load(path)
        if link.block is not None and link.block not in target.blocks:
            raise fail(
                f"zLink {link.target!r} names block {link.block!r}, "
                f"which {target.path.name} does not have"
            )


def _links(action: Any) -> list[Link]:
    if isinstance(action, Link):
        return [action]
    if isinstance(action, Dialog) and action.on_submit is not None:
        return _links(action.on_submit)
    if isinstance(action, Wizard):
        return [link for step in action.steps for link in _links(step.action)]
    return []
