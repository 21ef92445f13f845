"""The runner itself: discovery, counting, import errors, filters, XML, metrics, offline."""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import sys
import unittest
import xml.etree.ElementTree as ET
from unittest import mock

from zTestSuite import requires_browser, requires_network, timeout, zTestCase
from zTestSuite.browser import browser_unavailable
from zTestSuite.network import network_unavailable

SAMPLE_SUITE = """
import asyncio
import socket
import unittest

from zTestSuite import record_metric, requires_network


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

BROWSER_SUITE = """
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

PLUGIN = """
from zCLI import Plugin
PLUGIN = Plugin(
    "sample", suites=["sample_Test", "broken_Test", "net_Test", "page_Test", "needs_Test"]
)
"""

NET_SUITE = (
    SAMPLE_SUITE.split("class Network")[0].split("class Sample")[0]
    + "class Network"
    + SAMPLE_SUITE.split("class Network")[1]
)


class RunnerCase(zTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.write("sample_Test.py", SAMPLE_SUITE)
        self.write("net_Test.py", NET_SUITE)
        self.write("broken_Test.py", "import not_a_module_zz\n")
        self.write("page_Test.py", BROWSER_SUITE)
        self.write(
            "needs_Test.py",
            "import unittest\nraise unittest.SkipTest('requires zz: pip install zz')\n",
        )
        self.plugin = self.write("sample_plugin.py", PLUGIN)

    def runner(
        self, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
    ) -> subprocess.CompletedProcess[str]:
        environ = {**os.environ, "PYTHONPATH": str(self.workspace), **(env or {})}
        environ.pop("ZTEST_OFFLINE", None) if "ZTEST_OFFLINE" not in (env or {}) else None
        return subprocess.run(
            [*prefix, sys.executable, "-m", "zTestSuite", "--plugin", str(self.plugin), *args],
            capture_output=True,
            text=True,
            timeout=timeout(30),
            cwd=self.workspace,
            env=environ,
        )


class TestRunner(RunnerCase):
    @requires_network
    def test_counts_and_last_line(self) -> None:
        """Errors and failed subtests count as failed; the last line is the summary."""
        done = self.runner("--suite", "sample", "--suite", "broken")
        self.assertEqual(done.returncode, 1)
        lines = done.stdout.splitlines()
        # sample: pass, fail, error, skip, subtests(failed) + 2 network; broken: import error
        self.assertEqual(lines[-1], "3 passed, 4 failed, 1 skipped")

    def test_import_failure_is_an_error(self) -> None:
        """A suite that cannot import is reported with its traceback, not skipped."""
        done = self.runner("--suite", "broken")
        self.assertEqual(done.returncode, 1)
        self.assertIn("ImportError: suite broken_Test failed to import:", done.stdout)
        self.assertIn("ModuleNotFoundError: No module named 'not_a_module_zz'", done.stdout)
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 1 failed, 0 skipped")

    def test_suite_that_skips_on_import(self) -> None:
        """A suite raising SkipTest while importing is one skip with its reason."""
        done = self.runner("--suite", "needs", "-v")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn("skipped 'requires zz: pip install zz'", done.stdout)
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 0 failed, 1 skipped")

    def test_filter_by_pattern(self) -> None:
        """-k runs only matching tests."""
        done = self.runner("--suite", "sample", "-k", "test_pass")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(done.stdout.splitlines()[-1], "1 passed, 0 failed, 0 skipped")

    def test_list(self) -> None:
        """--list names suites and test ids without running them."""
        done = self.runner("--suite", "sample", "--list")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(
            done.stdout.splitlines()[:3],
            [
                "sample (sample_Test, from sample)",
                "  sample_Test.Network.test_async_round_trip",
                "  sample_Test.Network.test_sync_round_trip",
            ],
        )

    def test_unknown_suite(self) -> None:
        """An unknown --suite is a usage error naming the known suites."""
        done = self.runner("--suite", "nope")
        self.assertEqual(done.returncode, 2)
        self.assertIn("no suite named nope; try --list", done.stderr)

    def test_durations_and_metrics_in_summary(self) -> None:
        """Each test's duration is printed, with its metrics, and suite medians."""
        done = self.runner("--suite", "sample", "-k", "test_pass")
        self.assertRegex(
            done.stdout,
            r"\n +\d+\.\d{3}s passed  sample_Test\.Sample\.test_pass"
            r"  \[throughput=1500 msg/s, bytes=42\]\n",
        )
        self.assertIn("  suite metric throughput=1500 msg/s (median of 1)\n", done.stdout)

    def test_xml_report_with_metrics(self) -> None:
        """--xml writes JUnit XML with each test's metrics as properties."""
        done = self.runner("--suite", "sample", "-k", "test_pass", "--xml", "reports")
        self.assertEqual(done.returncode, 0, done.stdout)
        reports = list((self.workspace / "reports").glob("TEST-*.xml"))
        self.assertEqual(len(reports), 1)
        case = ET.parse(reports[0]).getroot().find(".//testcase")
        self.assertEqual(case.get("name"), "test_pass")
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        self.assertEqual(properties, {"throughput": "1500 msg/s", "bytes": "42"})

    def test_offline_skips_network_tests(self) -> None:
        """--offline skips every requires_network test with the reason."""
        done = self.runner("--suite", "net", "--offline", "-v")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn(
            "skipped 'requires network: offline mode (ZTEST_OFFLINE=1 or --offline)'", done.stdout
        )
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 0 failed, 2 skipped")

    def test_loopback_down_skips_network_tests(self) -> None:
        """In a namespace with loopback down, network tests skip and the run exits 0."""
        unshare = shutil.which("unshare")
        if unshare is None or os.geteuid() != 0:
            self.skipTest("needs root and unshare(1) to make a network namespace")
        done = self.runner("--suite", "net", "-v", prefix=(unshare, "-n"))
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(
            "skipped 'requires network: no loopback round trip ([Errno 101] Network "
            "is unreachable)'",
            done.stdout,
        )
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 0 failed, 2 skipped")


class TestRequiresBrowser(RunnerCase):
    NO_CHROMIUM = {"ZTEST_CHROMIUM": "/no/chromium"}

    def reason(self) -> str:
        """What the probe says here with no Chromium (Playwright may be missing too)."""
        with mock.patch.dict(os.environ, self.NO_CHROMIUM):
            reason = browser_unavailable()
        assert reason is not None
        return reason

    def test_missing_browser_skips_with_the_reason(self) -> None:
        """Without Chromium a browser suite skips, before its setUpClass, saying why."""
        done = self.runner("--suite", "page", "-v", env={**self.NO_CHROMIUM, "ZTEST_STRICT": "0"})
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn(f"skipped {'requires a browser: ' + self.reason()!r}", done.stdout)
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 0 failed, 1 skipped")

    def test_strict_turns_the_skip_into_a_failure(self) -> None:
        """With ZTEST_STRICT=1 (as CI runs) a missing browser fails the run."""
        done = self.runner("--suite", "page", env={**self.NO_CHROMIUM, "ZTEST_STRICT": "1"})
        self.assertEqual(done.returncode, 1, done.stdout)
        self.assertIn(
            f"AssertionError: requires a browser: {self.reason()} "
            "(ZTEST_STRICT=1 forbids skipping)",
            done.stdout,
        )
        self.assertEqual(done.stdout.splitlines()[-1], "0 passed, 1 failed, 0 skipped")

    @requires_browser  # Playwright is there, so the reason is about Chromium
    def test_no_chromium_reason(self) -> None:
        """With Playwright installed, the reason names the missing Chromium and the fix."""
        self.assertEqual(
            self.reason(),
            "no Chromium at /no/chromium (apt-get install chromium, or set ZTEST_CHROMIUM)",
        )

    @requires_browser
    def test_present_browser_runs(self) -> None:
        """With Chromium present the suite runs."""
        done = self.runner("--suite", "page", env={"ZTEST_STRICT": "1"})
        self.assertEqual(done.stdout.splitlines()[-1], "1 passed, 0 failed, 0 skipped")


class TestRequiresNetwork(unittest.IsolatedAsyncioTestCase):
    def test_async_stays_a_coroutine_function(self) -> None:
        """Decorating an async test keeps it a coroutine function."""

        async def probe() -> None:
            return None

        self.assertTrue(inspect.iscoroutinefunction(requires_network(probe)))
        self.assertFalse(inspect.iscoroutinefunction(requires_network(lambda: None)))

    async def test_async_body_really_runs(self) -> None:
        """An async decorated test awaits its body."""
        ran: list[bool] = []

        @requires_network
        async def body() -> str:
            ran.append(True)
            return "done"

        if network_unavailable():
            with self.assertRaises(unittest.SkipTest):
                await body()
        else:
            self.assertEqual(await body(), "done")
            self.assertEqual(ran, [True])

    def test_class_decorator_wraps_each_test(self) -> None:
        """On a class, every test method is wrapped and other methods are left alone."""

        @requires_network
        class Sample(unittest.TestCase):
            def helper(self) -> int:
                return 1

            def test_one(self) -> None:
                return None

        self.assertTrue(hasattr(Sample.test_one, "__wrapped__"))
        self.assertFalse(hasattr(Sample.helper, "__wrapped__"))

    def test_offline_env_wins(self) -> None:
        """ZTEST_OFFLINE=1 makes the network unavailable with that reason."""
        old = os.environ.get("ZTEST_OFFLINE")
        os.environ["ZTEST_OFFLINE"] = "1"
        try:
            self.assertEqual(network_unavailable(), "offline mode (ZTEST_OFFLINE=1 or --offline)")
        finally:
            if old is None:
                del os.environ["ZTEST_OFFLINE"]
            else:
                os.environ["ZTEST_OFFLINE"] = old
