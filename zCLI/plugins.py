"""Plugins: the one way an app adds functions, bridge events, zUI files, CLI commands
and test suites to zCLI.

A plugin is a module with a ``PLUGIN = Plugin(...)`` attribute. The registry checks
every entry when the plugin registers and raises ``PluginError`` naming the plugin and
the bad entry, so a broken plugin stops start-up instead of failing on first use.
Plugins come from the zSpark ``plugins`` list (module names or ``.py`` paths), from
the workspace ``plugins/`` folder, and from the ``zcli.plugins`` entry-point group.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import re
import sys
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from .exceptions import PluginError

__all__ = [
    "ENTRY_POINT_GROUP",
    "HOOKS",
    "RESERVED_COMMANDS",
    "RESERVED_EVENTS",
    "Command",
    "FunctionInfo",
    "Plugin",
    "Registry",
]

log = logging.getLogger("zCLI.plugins")

ENTRY_POINT_GROUP = "zcli.plugins"
# Bridge events zBifrost answers itself; a plugin may not take these names.
RESERVED_EVENTS = frozenset(
    {
        "connection_info",
        "dispatch",
        "menu",
        "ping",
        "pong",
        "login",
        "logout",
        "auth",
        "input_response",
        "input_request",
        "display",
        "server_shutdown",
        "back",
    }
)
RESERVED_COMMANDS = frozenset({"run", "serve", "user"})
# When the bridge calls a plugin's hooks: a connection was admitted, signed in (login
# or auth event), signed out, or ended.
HOOKS = ("connect", "sign_in", "sign_out", "disconnect")
_IDENT = re.compile(r"[A-Za-z_]\w*")
_EVENT = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*")
_COMMAND = re.compile(r"[a-z][a-z0-9\-]*")


@dataclass(frozen=True)
class Command:
    """A ``zcli`` subcommand: ``configure`` adds arguments, ``run`` returns the exit code."""

    name: str
    help: str
    run: Callable[[argparse.Namespace], int]
    configure: Callable[[argparse.ArgumentParser], None] | None = None


@dataclass(frozen=True)
class Plugin:
    """Everything one plugin contributes; every field is optional but the name."""

    name: str
    functions: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    events: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    zui: Mapping[str, str | Path] = field(default_factory=dict)
    commands: Sequence[Command] = ()
    suites: Sequence[str] = ()
    hooks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    services: Sequence[Callable[..., Any]] = ()
    # Events of ``events`` a connection may send before it signs in when the bridge
    # requires sign-in (creating an account, say); everything else waits for sign-in.
    public_events: Collection[str] = ()

    @property
    def serves_clients(self) -> bool:
        """Whether a bridge client can reach anything of it (zBifrost lists it in its
        features); a plugin of only commands and suites is not listed."""
        return bool(self.functions or self.events or self.zui or self.hooks or self.services)


@dataclass(frozen=True)
class FunctionInfo:
    """A registered zFunc target and whether it takes the ``ctx`` keyword."""

    qualname: str
    target: Callable[..., Any]
    wants_ctx: bool
    is_async: bool


class Registry:
    """Every registered plugin and the flat tables built from them."""

    def __init__(self) -> None:
        self.plugins: dict[str, Plugin] = {}
        self.functions: dict[tuple[str, str], FunctionInfo] = {}
        self.events: dict[str, tuple[str, Callable[..., Any]]] = {}
        self.zui_files: dict[str, Path] = {}
        self.commands: dict[str, tuple[str, Command]] = {}
        self.suites: list[tuple[str, str]] = []
        self.hooks: dict[str, list[tuple[str, Callable[..., Any]]]] = {h: [] for h in HOOKS}
        self.services: list[tuple[str, Callable[..., Any]]] = []
        self.public_events: set[str] = set()
        self._bases: dict[str, Path] = {}

    # --- registration --------------------------------------------------------

    def register(self, plugin: Plugin, base: Path | None = None) -> None:
        """Check every entry of ``plugin`` and add it; nothing is added if one is bad."""
        if not isinstance(plugin, Plugin):
            raise PluginError(f"expected a zCLI Plugin, got {type(plugin).__name__}")
        name = plugin.name
        if not isinstance(name, str) or not _IDENT.fullmatch(name):
            raise PluginError(f"plugin name {name!r} must be a Python identifier")
        if name in self.plugins:
            if self.plugins[name] is plugin:
                return
            raise PluginError(f"plugin {name!r} is registered twice by different modules")

        def bad(kind: str, entry: object, why: str) -> PluginError:
            return PluginError(f"plugin {name!r}: {kind} {entry!r} {why}")

        functions = {}
        for fn_name, target in plugin.functions.items():
            if not isinstance(fn_name, str) or not _IDENT.fullmatch(fn_name):
                raise bad("function", fn_name, "is not a Python identifier")
            if not callable(target):
                raise bad("function", fn_name, "is not callable")
            params = inspect.signature(target).parameters
            functions[(name, fn_name)] = FunctionInfo(
                f"{name}.{fn_name}",
                target,
                "ctx" in params,
                inspect.iscoroutinefunction(target),
            )
        for event, handler in plugin.events.items():
            if not isinstance(event, str) or not _EVENT.fullmatch(event):
                raise bad("event", event, "must be lower-case words joined by . or _")
            if event in RESERVED_EVENTS:
                raise bad("event", event, "is a built-in zBifrost event")
            if event in self.events:
                raise bad("event", event, f"is already handled by plugin {self.events[event][0]!r}")
            if not callable(handler):
                raise bad("event", event, "has a handler that is not callable")
        zui = {}
        for zui_name, raw_path in plugin.zui.items():
            path = Path(raw_path)
            if not path.is_absolute() and base is not None:
                path = base / path
            if not path.is_file():
                raise bad("zUI file", zui_name, f"points to {path}, which does not exist")
            if zui_name in self.zui_files:
                raise bad("zUI file", zui_name, "is already provided by another plugin")
            zui[zui_name] = path
        for command in plugin.commands:
            if not isinstance(command, Command):
                raise bad("command", command, "is not a zCLI Command")
            if not _COMMAND.fullmatch(command.name) or command.name in RESERVED_COMMANDS:
                raise bad("command", command.name, "is not an allowed subcommand name")
            if command.name in self.commands:
                raise bad("command", command.name, "is already provided by another plugin")
        for suite in plugin.suites:
            if not isinstance(suite, str) or not all(
                _IDENT.fullmatch(part) for part in suite.split(".")
            ):
                raise bad("test suite", suite, "is not a dotted module name")
        for hook, target in plugin.hooks.items():
            if hook not in HOOKS:
                raise bad("hook", hook, f"is not one of {', '.join(HOOKS)}")
            if not callable(target):
                raise bad("hook", hook, "is not callable")
        for service in plugin.services:
            if not inspect.iscoroutinefunction(service):
                raise bad("service", service, "is not an async function taking the bridge")
        if isinstance(plugin.public_events, str):
            raise bad("public_events", plugin.public_events, "must be a collection of names")
        for event in plugin.public_events:
            if event not in plugin.events:
                raise bad("public event", event, "is not one of the plugin's events")

        self.plugins[name] = plugin
        self.functions.update(functions)
        self.events.update({event: (name, h) for event, h in plugin.events.items()})
        self.zui_files.update(zui)
        self.commands.update({c.name: (name, c) for c in plugin.commands})
        self.suites.extend((name, suite) for suite in plugin.suites)
        for hook, target in plugin.hooks.items():
            self.hooks[hook].append((name, target))
        self.services.extend((name, service) for service in plugin.services)
        self.public_events.update(plugin.public_events)
        log.debug("registered plugin %s", name)

    def load(self, ref: str | Path) -> Plugin:
        """Import a module by name or ``.py`` path and register its ``PLUGIN``."""
        module = _import(ref)
        plugin = getattr(module, "PLUGIN", None)
        if plugin is None:
            raise PluginError(f"plugin module {ref!s} has no PLUGIN attribute")
        file = getattr(module, "__file__", None)
        base = Path(file).parent if file else None
        self.register(plugin, base)
        return plugin

    def discover(
        self, refs: Iterable[str], workspace: Path, with_entry_points: bool = True
    ) -> None:
        """Load the zSpark list, the workspace ``plugins/`` folder and (unless
        ``with_entry_points`` is False: only what the app itself brings) entry points."""
        for ref in refs:
            if ref.endswith(".py"):
                path = Path(ref)
                self.load(path if path.is_absolute() else workspace / path)
            else:
                self.load(ref)
        folder = workspace / "plugins"
        if folder.is_dir():
            for path in sorted(folder.glob("*.py")):
                if not path.name.startswith("_"):
                    self.load(path)
        if with_entry_points:
            self.load_entry_points()

    def load_entry_points(self) -> None:
        for point in entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = point.load()
            except Exception as exc:
                raise PluginError(
                    f"entry point {point.name!r} ({point.value}) failed to import: {exc}"
                ) from exc
            if isinstance(loaded, ModuleType):
                plugin = getattr(loaded, "PLUGIN", None)
                if plugin is None:
                    raise PluginError(f"entry point {point.name!r}: module has no PLUGIN")
                loaded = plugin
            self.register(loaded)

    # --- lookups used by the loader, the dispatcher and the bridge -------------

    def has_function(self, plugin: str, function: str) -> bool:
        return (plugin, function) in self.functions

    def function(self, plugin: str, function: str) -> FunctionInfo:
        return self.functions[(plugin, function)]

    def zui_file(self, name: str) -> Path | None:
        return self.zui_files.get(name)


def _import(ref: str | Path) -> ModuleType:
    try:
        if isinstance(ref, Path) or str(ref).endswith(".py"):
            path = Path(ref).resolve()
            name = f"zcli_plugin_{path.stem}"
            if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(path):
                return sys.modules[name]
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"plugin file {path} cannot be imported")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            return module
        return importlib.import_module(str(ref))
    except PluginError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {ref!s} failed to import: {exc}") from exc
