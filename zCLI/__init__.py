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
from .plugins import Command, Plugin, Registry
from .session import Session
from .version import __version__
from .walker import zWalker

__all__ = [
    "ActionFailed",
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
    "Registry",
    "RequestError",
    "Session",
    "StateError",
    "StorageError",
    "__version__",
    "load_config",
    "zCLI",
    "zCLIError",
    "zUIError",
    "zWalker",
]
