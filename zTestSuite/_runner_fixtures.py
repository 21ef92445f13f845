"""Sample suites and a base class for the runner's own tests (zTestSuite_Runner_Test,
zTestSuite_Runs_Test): each test writes small suites into a workspace and runs
``python -m zTestSuite`` on them as a real process, the way a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .harness import timeout, zTestCase

__all__ = ["SUITES", "RunnerCase"]

SAMPLE = """
import asyncio
import socket
import unittest

from zTestSuite import record_metric, record_samples, requires_network


class Sample(unittest.TestCase):
    def test_pass(self):
        record_metric("throughput", 1500, "msg/s")
        record_metric("bytes", 42)

    def test_fail(self):
        self.assertEqual(1, 2)

    def test_error(self):
        raise RuntimeError("boom")

    @unittest.skip("not today")
    def test_skip(self):
        pass

    def test_subtests(self):
        for n in (1, 2):
            with self.subTest(n=n):
                self.assertEqual(n, 1)

    def test_samples(self):
        record_samples("latency", [1, 2, 3, 4, 100], "ms")
"""

NET = """
import asyncio
import socket
import unittest

from zTestSuite import record_metric, requires_network


class Network(unittest.IsolatedAsyncioTestCase):
    @requires_network
    def test_sync_round_trip(self):
        with socket.create_server(("127.0.0.1", 0)) as server:
            with socket.create_connection(server.getsockname(), timeout=2) as client:
                peer, _ = server.accept()
                client.sendall(b"x")
                self.assertEqual(peer.recv(1), b"x")
                peer.close()

    @requires_network
    async def test_async_round_trip(self):
        async def echo(reader, writer):
            writer.write(await reader.readexactly(2))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        async with server:
            host, port = server.sockets[0].getsockname()[:2]
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(b"hi")
            self.assertEqual(await reader.readexactly(2), b"hi")
            record_metric("latency", 0.5, "ms")
            writer.close()
"""

PAGE = """
import unittest

from zTestSuite import requires_browser


@requires_browser
class Page(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.launched = True  # a real suite starts Chromium here

    def test_page(self):
        self.assertTrue(self.launched)
"""

# A plan-style suite: it tests what --target ECHO names, or starts its own echo server.
TARGETED = """
import os
import sys
import unittest

from zTestSuite import ServerProcess, Target

ECHO = Target("ECHO", "host:port of an echo server; unset: the suite starts its own")


class Echo(unittest.TestCase):
    def test_target(self):
        given = ECHO.value
        print("target:", given if given is not None else "(none: starting our own)")
        self.assertEqual(os.environ.get("ZTEST_TARGET_ECHO"), given)
"""

# A test that starts a real process, which prints and is still running when it fails.
PROCESS = """
import os
import sys
import unittest
from pathlib import Path

from zTestSuite import ServerProcess

SCRIPT = (
    "import os, time\\n"
    "print('server ready', flush=True)\\n"
    "print('pid', os.getpid(), flush=True)\\n"
    "time.sleep(600)\\n"
)


class Proc(unittest.TestCase):
    def test_fails_with_tail(self):
        proc = ServerProcess([sys.executable, "-c", SCRIPT])
        proc.wait_for("^server ready$")
        pid = int(proc.wait_for(r"^pid (\\d+)$").group(1))
        Path(os.environ["PID_FILE"]).write_text(str(pid))
        self.fail("the check after starting the server failed")
"""

# Runs the test in a hang: the first test passes, the second blocks until interrupted.
HANG = """
import os
import socket
import sys
import threading
import unittest

from zTestSuite import ServerProcess

SCRIPT = "import signal\\nprint('up', flush=True)\\nsignal.pause()\\n"


class Hang(unittest.TestCase):
    def test_a_quick(self):
        pass

    def test_b_hangs(self):
        proc = ServerProcess([sys.executable, "-c", SCRIPT])
        proc.wait_for("^up$")
        with socket.socket(socket.AF_UNIX) as tell:  # the test waits for this pid
            tell.connect(os.environ["PID_SOCKET"])
            tell.sendall(str(proc.pid).encode())
        threading.Event().wait()
"""

TIMEOUTS = """
import asyncio
import threading
import unittest

from zTestSuite import time_limit


def block_here():
    threading.Event().wait()


class Slow(unittest.TestCase):
    def test_a_hangs_in_a_lock(self):
        block_here()

    @time_limit(0.5)
    def test_b_own_limit(self):
        threading.Event().wait()

    def test_c_after(self):
        self.assertTrue(True)


class SlowAsync(unittest.IsolatedAsyncioTestCase):
    async def wait_forever(self):
        await asyncio.Event().wait()

    async def test_hangs_awaiting(self):
        await self.wait_forever()
"""

# Two suites that must overlap under -j 2: opening a FIFO blocks until the other end is
# opened, so each waits for the other (bounded by the run's --timeout); and a serial
# suite that must run alone.
PARALLEL = """
import os
import unittest
from pathlib import Path



class Overlap(unittest.TestCase):
    def test_meets_the_other(self):
        HERE = Path(os.environ["MARKS"])
        (HERE / "{me}.running").touch()
        self.assertFalse((HERE / "serial.running").exists())
        with open(HERE / "meet", "{mode}") as fifo:
            {action}
        (HERE / "{me}.running").unlink()
"""
LEFT = PARALLEL.format(me="left", mode="w", action='fifo.write("hello")')
RIGHT = PARALLEL.format(me="right", mode="r", action='self.assertEqual(fifo.read(), "hello")')

SERIAL = """
import os
import unittest
from pathlib import Path

SERIAL = "binds a fixed port"


class Alone(unittest.TestCase):
    def test_alone(self):
        HERE = Path(os.environ["MARKS"])
        (HERE / "serial.running").touch()
        self.assertEqual(sorted(p.name for p in HERE.glob("*.running")), ["serial.running"])
        (HERE / "serial.running").unlink()
"""

CRASH = """
import os
import unittest


class Crash(unittest.TestCase):
    def test_a_passes(self):
        pass

    def test_b_dies(self):
        print("about to die", flush=True)
        os._exit(3)
"""

ARTIFACT = """
import unittest

from zTestSuite import artifact_path


class Keep(unittest.TestCase):
    def test_keeps_a_file(self):
        artifact_path("note.txt").write_text("kept")
"""

# A suite that a -j worker is still importing when the run is interrupted: in the
# worker it tells its pid, then waits (the parent imports it at once).
SLOW_IMPORT = """
import os
import socket
import sys
import threading
import unittest

if "--worker" in sys.argv:
    with socket.socket(socket.AF_UNIX) as tell:
        tell.connect(os.environ["PID_SOCKET"])
        tell.sendall(str(os.getpid()).encode())
    threading.Event().wait()


class SlowImport(unittest.TestCase):
    def test_never_reached(self):
        pass
"""

SUITES = {
    "sample_Test.py": SAMPLE,
    "net_Test.py": NET,
    "page_Test.py": PAGE,
    "broken_Test.py": "import not_a_module_zz\n",
    "needs_Test.py": "import unittest\nraise unittest.SkipTest('requires zz: pip install zz')\n",
    "targeted_Test.py": TARGETED,
    "proc_Test.py": PROCESS,
    "hang_Test.py": HANG,
    "timeouts_Test.py": TIMEOUTS,
    "left_Test.py": LEFT,
    "right_Test.py": RIGHT,
    "serial_Test.py": SERIAL,
    "crash_Test.py": CRASH,
    "slowimport_Test.py": SLOW_IMPORT,
    "artifact_Test.py": ARTIFACT,
}

PLUGIN = f"""
from zCLI import Plugin
PLUGIN = Plugin("sample", suites={[name[:-3] for name in SUITES]!r})
"""


class RunnerCase(zTestCase):
    """A workspace with the sample suites, listed by a plugin file given with --plugin."""

    def setUp(self) -> None:
        super().setUp()
        for name, text in SUITES.items():
            self.write(name, text)
        self.plugin = self.write("sample_plugin.py", PLUGIN)

    def environ(self, env: dict[str, str] | None = None) -> dict[str, str]:
        environ = {**os.environ, "PYTHONPATH": str(self.workspace), **(env or {})}
        for name in ("ZTEST_OFFLINE", "ZTEST_ARTIFACTS", "ZTEST_TARGET_ECHO"):
            if name not in (env or {}):
                environ.pop(name, None)
        return environ

    def command(self, *args: str, plugin: bool = True) -> list[str]:
        extra = ["--plugin", str(self.plugin)] if plugin else []
        return [sys.executable, "-m", "zTestSuite", *extra, *args]

    def runner(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        prefix: tuple[str, ...] = (),
        cwd: Path | None = None,
        plugin: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *self.command(*args, plugin=plugin)],
            capture_output=True,
            text=True,
            timeout=timeout(30),
            cwd=cwd or self.workspace,
            env=self.environ(env),
        )

    def last_line(self, done: subprocess.CompletedProcess[str]) -> str:
        return done.stdout.splitlines()[-1] if done.stdout else f"(no output) {done.stderr}"
