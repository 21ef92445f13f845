"""Which suites a run has: zCLI's own, the installed plugins', and an app's.

A suite is a module. zCLI's built-in suites are ``zTestSuite/<Name>_Test.py``; an
installed plugin (the ``zcli.plugins`` entry point) lists its suites as module names in
``Plugin.suites``. An app (a folder with ``zcli.yaml``, zUI files or ``plugins/``)
brings the suites its own plugins list (its ``plugins/`` folder and the ``plugins`` of
its ``zcli.yaml``) and every ``tests/*_Test.py``, imported with ``tests/`` on sys.path.

Which of these a run has is decided by ``select_sources``: an app when one is named
with ``--workspace`` or the run starts inside one; zCLI's built-in suites in zCLI's own
source tree, in a folder that is no app (a self-test of the installation), or with
``--builtin``.

A suite module may say ``SERIAL = "why"`` to run alone under ``-j`` (fixed ports, heavy
load) and may declare black-box targets (see ``targets``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

__all__ = [
    "PACKAGE_DIR",
    "Sources",
    "Suite",
    "app_suites",
    "builtin_suites",
    "import_suite",
    "is_app",
    "plugin_suites",
    "select_sources",
    "serial_reason",
    "suite_name",
]

PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Suite:
    name: str  # "zBifrost_Integration"
    module: str  # "zTestSuite.zBifrost_Integration_Test"
    origin: str  # "zTestSuite", a plugin's name, or an app folder's name
    search_path: str = ""  # a folder to put on sys.path before importing, or ""


def suite_name(module: str) -> str:
    last = module.rsplit(".", 1)[-1]
    return last[: -len("_Test")] if last.endswith("_Test") else last


def builtin_suites() -> list[Suite]:
    """zCLI's own suites, in name order."""
    return [
        Suite(suite_name(path.stem), f"zTestSuite.{path.stem}", "zTestSuite")
        for path in sorted(PACKAGE_DIR.glob("*_Test.py"))
    ]


def plugin_suites(refs: Sequence[str] = (), entry_points: bool = True) -> list[Suite]:
    """The suites of the installed plugins (entry points) and of ``refs`` (plugin
    module names or ``.py`` files)."""
    from zCLI import Registry

    registry = Registry()
    if entry_points:
        registry.load_entry_points()
    for ref in refs:
        registry.load(Path(ref) if ref.endswith(".py") else ref)
    return [Suite(suite_name(mod), mod, plugin) for plugin, mod in registry.suites]


def is_app(folder: Path) -> bool:
    """A zCLI app folder: it has zcli.yaml, a zUI file or a plugins/ folder."""
    return (
        (folder / "zcli.yaml").is_file()
        or any(folder.glob("zUI.*.yaml"))
        or (folder / "plugins").is_dir()
    )


def _is_source_tree(folder: Path) -> bool:
    """zCLI's own checkout (this package lives in it), which is not an app."""
    return folder.resolve() == PACKAGE_DIR.parent and (folder / "setup.py").is_file()


def app_suites(folder: Path) -> list[Suite]:
    """An app's suites: those its own plugins list, then its ``tests/*_Test.py``."""
    from zCLI import Registry, load_config

    app = folder.resolve()
    config = load_config({"zWorkspace": str(app)})
    registry = Registry()
    registry.discover(config.plugins, app, with_entry_points=False)
    tests = app / "tests"
    suites = [Suite(suite_name(mod), mod, plugin, str(tests)) for plugin, mod in registry.suites]
    suites += [
        Suite(suite_name(path.stem), path.stem, app.name, str(tests))
        for path in sorted(tests.glob("*_Test.py"))
    ]
    return suites


@dataclass(frozen=True)
class Sources:
    """What a run draws its suites from."""

    builtin: bool
    app: Path | None


def select_sources(cwd: Path, workspace: str | None, builtin: bool) -> Sources:
    """``--workspace`` names the app; else the folder the run starts in, if it is an app
    (and not zCLI's own source tree). Built-in suites run when asked for, or when there
    is no app."""
    app: Path | None = None
    if workspace is not None:
        app = Path(workspace).resolve()
        if not app.is_dir():
            raise FileNotFoundError(f"--workspace {workspace}: no such folder")
        if not is_app(app) and not (app / "tests").is_dir():
            raise FileNotFoundError(
                f"--workspace {workspace}: not a zCLI app (no zcli.yaml, zUI file, "
                "plugins/ or tests/ folder)"
            )
    elif is_app(cwd) and not _is_source_tree(cwd):
        app = cwd.resolve()
    return Sources(builtin=builtin or app is None, app=app)


def import_suite(suite: Suite) -> ModuleType:
    if suite.search_path and suite.search_path not in sys.path:
        sys.path.insert(0, suite.search_path)
    return importlib.import_module(suite.module)


def serial_reason(module: ModuleType) -> str:
    """Why the suite must run alone under -j (its ``SERIAL``), or ""."""
    reason = getattr(module, "SERIAL", "")
    if reason is True:
        return "marked serial"
    return reason if isinstance(reason, str) else ""
