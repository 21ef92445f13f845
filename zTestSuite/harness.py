"""The test harness every zCLI suite uses, and that plugins use for theirs.

Timeouts are multiples of ``UNIT`` seconds, scaled by ``ZTEST_TIMEOUT_FACTOR`` for
slow machines; nothing here sleeps to synchronise. ``zTestCase`` adds workspace and
walker helpers and exact assertions that speak the domain.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .requirements import requirement

if TYPE_CHECKING:
    from .process import ServerProcess

__all__ = [
    "ARTIFACTS_ENV",
    "UNIT",
    "REPO_ROOT",
    "artifact_path",
    "requires_source_tree",
    "run_zcli",
    "timeout",
    "wait_until",
    "zTestCase",
]

UNIT = 2.0 * float(os.environ.get("ZTEST_TIMEOUT_FACTOR", "1"))
REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_ENV = "ZTEST_ARTIFACTS"


def artifact_path(name: str) -> Path:
    """Where a test keeps a file for people to look at after the run (a screenshot).

    The folder is ``ZTEST_ARTIFACTS``: the runner sets it from ``--artifacts DIR``, or
    to ``artifacts/`` inside the ``--xml`` folder; otherwise a folder in the system's
    temporary directory. It is created on first use.
    """
    folder = Path(os.environ.get(ARTIFACTS_ENV) or Path(tempfile.gettempdir()) / "ztest-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def _source_tree_missing() -> str | None:
    for folder in ("demos", "zUI"):
        if not (REPO_ROOT / folder).is_dir():
            missing = REPO_ROOT / folder
            return f"{missing} is missing: the demo apps ship with the source, not the wheel"
    return None


requires_source_tree = requirement(_source_tree_missing, "zCLI's source tree")


def timeout(units: float = 1.0) -> float:
    """A timeout of ``units`` harness units, in seconds."""
    return UNIT * units


def run_zcli(
    *args: str, stdin: str = "", cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m zCLI ARGS`` as a real process, the way a user does."""
    return subprocess.run(
        [sys.executable, "-m", "zCLI", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout(15),
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


async def wait_until(condition: Callable[[], bool], units: float = 3) -> None:
    """Yield to the event loop until ``condition()`` holds; AssertionError after
    ``units`` timeouts. For state the loop itself changes (no sleeping)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout(units)
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0)


class zTestCase(unittest.TestCase):
    """Adds a temporary workspace, zUI writers and terminal walker runs."""

    def setUp(self) -> None:
        super().setUp()
        self._tmp = tempfile.TemporaryDirectory(prefix="ztest-")
        self.addCleanup(self._tmp.cleanup)
        self.workspace = Path(self._tmp.name)

    def write(self, name: str, text: str) -> Path:
        """Write a file in the workspace (text is dedented) and return its path."""
        path = self.workspace / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def spark(self, **extra: Any) -> dict[str, Any]:
        return {"zWorkspace": str(self.workspace), **extra}

    def walk(self, zui: str | Path, answers: str, **spark: Any) -> tuple[int, str]:
        """Walk a zUI file in-process with ``answers`` as stdin; return (status, stdout)."""
        from zCLI import zCLI

        path = zui if isinstance(zui, Path) else self.write("zUI.test.yaml", zui)
        z = zCLI(self.spark(zVaFile=str(path), **spark))
        out = io.StringIO()
        status = z.run(stdin=io.StringIO(answers), stdout=out)
        return status, out.getvalue()

    def zcli(
        self,
        *args: str,
        stdin: str = "",
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m zCLI ARGS`` in the workspace (see ``run_zcli``)."""
        return run_zcli(*args, stdin=stdin, cwd=cwd or self.workspace, env=env)

    def start_process(
        self, command: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> ServerProcess:
        """Start a system under test as a real process, stopped when the test ends."""
        from .process import ServerProcess

        started = ServerProcess(command, cwd=cwd, env=env)
        self.addCleanup(started.stop)
        return started

    def look_until(self, condition: Callable[[], bool], what: str, units: float = 1) -> None:
        """Look at ``condition`` every 2 ms until it holds; fail after ``timeout(units)``.
        For state another thread or process changes (a server's counters, a port)."""
        deadline = time.monotonic() + timeout(units)
        while not condition():
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {timeout(units)} s")
            threading.Event().wait(0.002)  # a look every 2 ms, not a synchronising sleep

    def assertLinesEqual(self, text: str, expected: str) -> None:
        """Compare text to a dedented block, line by line."""
        self.assertEqual(text.splitlines(), textwrap.dedent(expected).strip("\n").splitlines())
