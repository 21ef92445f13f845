"""The zCLI object: builds the subsystems in order and runs the configured mode."""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from .config import Config, load_config
from .dispatch import Dispatcher
from .display import Display
from .exceptions import ConfigError
from .plugins import Registry
from .terminal import TerminalRenderer
from .walker import zWalker
from .zui import ZuiLoader

__all__ = ["zCLI"]


class zCLI:
    """One app: its configuration, plugins, zUI files, dispatcher and walker.

    Construction order is the dependency order: zConfig, logging, zDisplay, plugins
    (zFunc), the zUI loader and zDispatch, zWalker. Everything that can be checked is
    checked here, so a bad config, plugin or zUI file fails before anything runs.
    """

    def __init__(self, zSpark: Mapping[str, Any] | None = None) -> None:
        self.config: Config = load_config(zSpark)
        self.logger = logging.getLogger("zCLI")
        self.logger.setLevel(self.config.logger)
        self.workspace = self.config.zWorkspace.resolve()
        self.display = Display(TerminalRenderer(sys.stdout))
        self.plugins = Registry()
        self.plugins.discover(self.config.plugins, self.workspace)
        self.loader = ZuiLoader(self.workspace, self.plugins)
        self.dispatch = Dispatcher(self.loader, self.plugins)
        self.walker = zWalker(self.dispatch, self)
        if self.config.zVaFile is not None:
            zui = self.loader.load(self.config.zVaFile)
            if self.config.zBlock is not None and self.config.zBlock not in zui.blocks:
                raise ConfigError([f"zBlock: {zui.path.name} has no block {self.config.zBlock!r}"])

    def run(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
        """Run the configured mode to the end and return the exit status."""
        if self.config.zVaFile is None:
            raise ConfigError(["zVaFile: a zUI file is needed to run"])
        if self.config.zMode == "Terminal":
            session = self.walker.start(self.config.zVaFile, self.config.zBlock)
            return self.walker.run_terminal(session, stdin or sys.stdin, stdout or sys.stdout)
        raise ConfigError([f"zMode: {self.config.zMode} is not available in this build"])
