"""zCLI: apps declared in zUI YAML files, walked in a terminal or served over WebSocket."""

from .config import Config, load_config
from .context import FuncContext
from .core import zCLI
from .dispatch import Dispatcher, MenuView, Outcome
from .display import Display, DisplayEvent
from .exceptions import (
    ActionFailed,
    ConfigError,
    InputClosed,
    KeyNotFound,
    PluginError,
    RequestError,
    StateError,
    StorageError,
    zCLIError,
    zUIError,
)
from .plugins import HOOKS, Command, Plugin, Registry
from .postgres import PostgresDatabase, is_postgres_url, redacted
from .postgres_pool import PostgresPool
from .session import Session
from .version import __version__
from .walker import zWalker

# The bridge and zAuth load on first use, so a terminal app never imports websockets.
_LAZY = {
    "AuthError": "auth",
    "Client": "bridge",
    "EventContext": "bridge",
    "Identity": "auth",
    "zAuth": "auth",
    "zBifrost": "bridge",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'zCLI' has no attribute {name!r}")


__all__ = [
    "HOOKS",
    "ActionFailed",
    "AuthError",
    "Client",
    "EventContext",
    "Identity",
    "Command",
    "Config",
    "ConfigError",
    "Dispatcher",
    "Display",
    "DisplayEvent",
    "FuncContext",
    "InputClosed",
    "KeyNotFound",
    "MenuView",
    "Outcome",
    "Plugin",
    "PluginError",
    "PostgresDatabase",
    "PostgresPool",
    "Registry",
    "RequestError",
    "Session",
    "StateError",
    "StorageError",
    "__version__",
    "zAuth",
    "zBifrost",
    "is_postgres_url",
    "load_config",
    "redacted",
    "zCLI",
    "zCLIError",
    "zUIError",
    "zWalker",
]
