"""Our apps (zCLI/apps/<name>/) are plugins a user could have written: they import only
zCLI's public API (``from zCLI import ...``), their own package, and libraries."""

from __future__ import annotations

import ast
from pathlib import Path

from zTestSuite import zTestCase

APPS = Path(__file__).resolve().parent.parent / "zCLI" / "apps"


def private_imports(path: Path, package: str) -> list[str]:
    """Each import in ``path`` (a module of ``package``, e.g. zCLI.apps.chat) that
    reaches into zCLI other than its top-level API or the app's own package."""
    app = ".".join(package.split(".")[:3])  # zCLI.apps.chat
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [base]
        for name in names:
            inside_zcli = name == "zCLI" or name.startswith("zCLI.")
            if inside_zcli and name != "zCLI" and name != app and not name.startswith(app + "."):
                found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


class TestAppsUsePublicAPI(zTestCase):
    def test_no_app_imports_a_private_zcli_module(self) -> None:
        """Every module under zCLI/apps/ imports zCLI only through ``from zCLI import``."""
        problems = []
        for path in sorted(APPS.rglob("*.py")):
            folder = path.parent.relative_to(APPS.parent.parent)  # zCLI/apps/chat/...
            problems += private_imports(path, ".".join(folder.parts))
        self.assertEqual(problems, [])

    def test_the_check_finds_private_imports(self) -> None:
        """The check flags absolute and relative imports of zCLI internals, and allows
        the public API and the app's own modules."""
        module = self.write(
            "core.py",
            """
            import zCLI
            from zCLI import Plugin
            from zCLI.apps.chat.storage import SQLiteStorage
            from .storage import Storage
            from zCLI.bridge.server import zBifrost
            from ...auth import zAuth
            import zCLI.plugins
            """,
        )
        self.assertEqual(
            private_imports(module, "zCLI.apps.chat"),
            [
                "core.py:5 imports zCLI.bridge.server",
                "core.py:6 imports zCLI.auth",
                "core.py:7 imports zCLI.plugins",
            ],
        )
