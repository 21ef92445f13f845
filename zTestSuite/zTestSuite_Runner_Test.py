"""The runner, run as a user runs it: which suites, counting, filters, targets, reports."""

from __future__ import annotations

import inspect
import json
import os
import shutil
import unittest
import xml.etree.ElementTree as ET
from unittest import mock

from zTestSuite import REPO_ROOT, requires_browser, requires_network, requires_source_tree
from zTestSuite._runner_fixtures import RunnerCase
from zTestSuite.browser import BrowserTestCase, browser_unavailable
from zTestSuite.network import network_unavailable


class TestCounting(RunnerCase):
    @requires_network
    def test_counts_and_last_line(self) -> None:
        """Errors and failed subtests count as failed; the last line is the summary."""
        done = self.runner("--suite", "sample", "--suite", "net", "--suite", "broken")
        self.assertEqual(done.returncode, 1)
        # sample: pass, samples, fail, error, subtests (failed), skip; net: 2; broken: 1
        self.assertEqual(self.last_line(done), "4 passed, 4 failed, 1 skipped")

    def test_a_suite_named_twice_runs_once(self) -> None:
        """An installed plugin also named with --plugin lists (and runs) its suites once."""
        done = self.runner("--builtin", "--plugin", "zCLI.apps.chat", "--suite", "chat_core",
                           "--list")  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stderr)
        listed = [line for line in done.stdout.splitlines() if not line.startswith(" ")]
        self.assertEqual(listed, ["chat_core (zCLI.apps.chat.tests.chat_core_Test, from chat)"])

    def test_import_failure_is_an_error(self) -> None:
        """A suite that cannot import is one failed test with its traceback."""
        done = self.runner("--suite", "broken")
        self.assertEqual(done.returncode, 1)
        self.assertIn(
            "ImportError: suite broken_Test failed to import: "
            "ModuleNotFoundError: No module named 'not_a_module_zz'\n",
            done.stdout,
        )
        self.assertIn('  File "' + str(self.workspace / "broken_Test.py"), done.stdout)
        self.assertEqual(self.last_line(done), "0 passed, 1 failed, 0 skipped")

    def test_suite_that_skips_on_import(self) -> None:
        """A suite raising SkipTest while importing is one skip with its reason."""
        done = self.runner("--suite", "needs", "-v")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn(
            "skipped    0.000s needs_Test.SuiteSkipped.test_import: requires zz: pip install zz\n",
            done.stdout,
        )
        self.assertEqual(self.last_line(done), "0 passed, 0 failed, 1 skipped")

    def test_filter_by_pattern(self) -> None:
        """-k runs only matching tests."""
        done = self.runner("--suite", "sample", "-k", "test_pass")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(self.last_line(done), "1 passed, 0 failed, 0 skipped")

    def test_failfast(self) -> None:
        """--failfast stops at the first failure (tests run in name order)."""
        done = self.runner("--suite", "sample", "--failfast")
        self.assertEqual(done.returncode, 1)
        self.assertEqual(self.last_line(done), "0 passed, 1 failed, 0 skipped")

    def test_unknown_suite(self) -> None:
        """An unknown --suite is a usage error naming the known suites."""
        done = self.runner("--suite", "nope")
        self.assertEqual(done.returncode, 2)
        self.assertIn("no suite named nope; try --list", done.stderr)

    def test_bad_numbers_are_usage_errors(self) -> None:
        """-j 0 and a --timeout that is not positive exit 2 with a sentence."""
        for args, sentence in (
            (("-j", "0"), "-j needs at least 1 process"),
            (("--timeout", "0"), "--timeout needs a positive number of seconds"),
        ):
            with self.subTest(args=args):
                done = self.runner("--suite", "sample", *args)
                self.assertEqual(done.returncode, 2)
                self.assertIn(f"error: {sentence}\n", done.stderr)


class TestList(RunnerCase):
    def test_list(self) -> None:
        """--list names each suite, why it is serial, its targets and tests; runs none."""
        done = self.runner("--suite", "targeted", "--suite", "serial", "--suite", "net", "--list")
        self.assertEqual(done.returncode, 0)
        self.assertEqual(
            done.stdout.splitlines(),
            [
                "net (net_Test, from sample)",
                "  net_Test.Network.test_async_round_trip",
                "  net_Test.Network.test_sync_round_trip",
                "targeted (targeted_Test, from sample)",
                "  target ECHO (ZTEST_TARGET_ECHO, not given): host:port of an echo server; "
                "unset: the suite starts its own",
                "  targeted_Test.Echo.test_target",
                "serial (serial_Test, from sample)",
                "  serial: binds a fixed port",
                "  serial_Test.Alone.test_alone",
            ],
        )

    def test_list_shows_a_given_target(self) -> None:
        """A target given in the environment shows in --list."""
        done = self.runner(
            "--suite", "targeted", "--list", env={"ZTEST_TARGET_ECHO": "127.0.0.1:7"}
        )
        self.assertIn(
            "  target ECHO (ZTEST_TARGET_ECHO, given: 127.0.0.1:7): host:port", done.stdout
        )


class TestTargets(RunnerCase):
    def test_no_target_means_our_own(self) -> None:
        """Without --target the suite gets None and starts its own implementation."""
        done = self.runner("--suite", "targeted", "--xml", "reports")
        self.assertEqual(done.returncode, 0, done.stdout)
        report = (self.workspace / "reports" / "TEST-targeted_Test.Echo.xml").read_text()
        self.assertIn("target: (none: starting our own)", report)

    def test_target_option_and_environment(self) -> None:
        """--target NAME=VALUE and ZTEST_TARGET_NAME reach the suite; the option wins."""
        for args, env in (
            (("--target", "echo=10.0.0.1:7"), {}),
            ((), {"ZTEST_TARGET_ECHO": "10.0.0.1:7"}),
            (("--target", "ECHO=10.0.0.1:7"), {"ZTEST_TARGET_ECHO": "10.9.9.9:7"}),
        ):
            with self.subTest(args=args, env=env):
                done = self.runner("--suite", "targeted", "--xml", "reports", *args, env=env)
                self.assertEqual(done.returncode, 0, done.stdout)
                report = (self.workspace / "reports" / "TEST-targeted_Test.Echo.xml").read_text()
                self.assertIn("target: 10.0.0.1:7", report)

    def test_unknown_or_malformed_target(self) -> None:
        """A target no selected suite declares, or one without =, is a usage error."""
        for given, sentence in (
            ("NOPE=1", "no selected suite declares target NOPE (declared: ECHO); --list shows"),
            ("ECHO", "--target 'ECHO' is not NAME=VALUE (for example CHAT=ws://host:port)"),
            ("9X=1", "--target '9X=1' is not NAME=VALUE"),
        ):
            with self.subTest(given=given):
                done = self.runner("--suite", "targeted", "--target", given)
                self.assertEqual(done.returncode, 2)
                self.assertIn(sentence, done.stderr)


APP_PLUGIN = """
from zCLI import Plugin
PLUGIN = Plugin("shop", suites=["shop_checks_Test"])
"""
APP_SUITE = """
import unittest


class {name}(unittest.TestCase):
    def test_{name}(self):
        pass
"""


class TestWorkspace(RunnerCase):
    def make_app(self) -> None:
        self.write("shop/zcli.yaml", "websocket:\n  require_auth: false\n")
        self.write("shop/plugins/shop.py", APP_PLUGIN)
        self.write("shop/tests/shop_checks_Test.py", APP_SUITE.format(name="Checks"))
        self.write("shop/tests/orders_Test.py", APP_SUITE.format(name="Orders"))

    def test_workspace_runs_the_apps_suites(self) -> None:
        """--workspace APP runs the suites its plugins list and its tests/*_Test.py only,
        each once (the plugin lists shop_checks, which tests/ holds too)."""
        self.make_app()
        done = self.runner("--workspace", "shop", "-v", plugin=False)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        lines = [line.split("s ", 1)[1] for line in done.stdout.splitlines()[:2]]
        self.assertEqual(
            lines, ["shop_checks_Test.Checks.test_Checks", "orders_Test.Orders.test_Orders"]
        )
        self.assertEqual(self.last_line(done), "2 passed, 0 failed, 0 skipped")

    def test_inside_an_app_folder(self) -> None:
        """Plain python -m zTestSuite inside an app folder runs that app's suites."""
        self.make_app()
        done = self.runner("--list", cwd=self.workspace / "shop", plugin=False)
        self.assertEqual(
            [line for line in done.stdout.splitlines() if not line.startswith(" ")],
            ["shop_checks (shop_checks_Test, from shop)", "orders (orders_Test, from shop)"],
        )

    def test_builtin_adds_zclis_suites(self) -> None:
        """--builtin runs zCLI's built-in suites next to the app's."""
        self.make_app()
        done = self.runner("--workspace", "shop", "--builtin", "--list", plugin=False)
        names = [line.split(" ")[0] for line in done.stdout.splitlines() if line[:1] != " "]
        self.assertIn("zTestSuite_Runner", names)
        self.assertEqual(names[-2:], ["shop_checks", "orders"])

    def test_outside_any_app_runs_the_builtin_suites(self) -> None:
        """In a folder that is no app, the run is zCLI's self-test: its own suites, then
        those of the installed plugins (entry points), such as zChat's."""
        from importlib.metadata import entry_points

        done = self.runner("--list", plugin=False)
        suites = [line for line in done.stdout.splitlines() if line[:1] != " "]
        tests = sorted((REPO_ROOT / "zTestSuite").glob("*_Test.py"))
        builtin = [f"{p.stem[:-5]} (zTestSuite.{p.stem}, from zTestSuite)" for p in tests]
        self.assertEqual(suites[: len(builtin)], builtin)
        installed = {point.name for point in entry_points(group="zcli.plugins")}
        origins = {line.rsplit("from ", 1)[1].rstrip(")") for line in suites[len(builtin) :]}
        self.assertLessEqual(origins, installed)

    def test_not_an_app(self) -> None:
        """--workspace on a missing folder or one that is no app is a usage error."""
        self.write("empty/readme.txt", "nothing here")
        for folder, sentence in (
            ("nowhere", "--workspace nowhere: no such folder"),
            ("empty", "--workspace empty: not a zCLI app (no zcli.yaml, zUI file, plugins/"),
        ):
            with self.subTest(folder=folder):
                done = self.runner("--workspace", folder, plugin=False)
                self.assertEqual(done.returncode, 2)
                self.assertIn(sentence, done.stderr)

    def test_broken_app_plugin_is_a_usage_error(self) -> None:
        """A plugin of the app that fails to import stops the run with its message."""
        self.make_app()
        self.write("shop/plugins/broken.py", "import not_a_module_zz\n")
        done = self.runner("--workspace", "shop", plugin=False)
        self.assertEqual(done.returncode, 2)
        self.assertIn("failed to import: No module named 'not_a_module_zz'", done.stderr)

    @requires_source_tree
    def test_demo_app_suite(self) -> None:
        """The Level 1 demo carries its own suite, which --workspace finds."""
        done = self.runner(
            "--workspace", str(REPO_ROOT / "demos" / "Level_1_Menu"), "--list", plugin=False
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertEqual(done.stdout.splitlines()[0], "Level1 (Level1_Test, from Level_1_Menu)")


class TestReports(RunnerCase):
    def test_summary_table_and_metrics(self) -> None:
        """The summary has a row per suite, each test's metrics and the run's figures."""
        done = self.runner("--suite", "sample", "--suite", "needs")
        lines = done.stdout.splitlines()
        start = lines.index("suite   tests  passed  failed  skipped  success  duration  origin")
        self.assertRegex(lines[start + 1], r"^sample      6       2       3        1    40\.0%  ")
        self.assertRegex(lines[start + 2], r"^needs       1       0       0        1      n/a  ")
        self.assertRegex(
            done.stdout,
            r"\nMetrics per test:\n"
            r"  sample Sample\.test_pass \(\d\.\d{3}s\): throughput=1500 msg/s, bytes=42\n"
            r"  sample Sample\.test_samples \(\d\.\d{3}s\)\n"
            r"    latency: n=5 p50=3 p90=100 p99=100 max=100 ms\n\n"
            r"Run: 7 tests in \d+\.\d{3}s with 1 worker, pass ratio 40\.0%\n"
            r"  throughput throughput: median 1500 msg/s \(min 1500, max 1500, n=1\)\n"
            r"  latency latency: median 3 ms \(min 1, max 100, n=5\)\n"
            r"2 passed, 3 failed, 2 skipped\n$",
        )

    def test_xml_report_with_metrics(self) -> None:
        """--xml writes JUnit XML with each test's metrics and samples as properties."""
        done = self.runner("--suite", "sample", "-k", "*test_[ps]a*", "--xml", "reports")
        self.assertEqual(done.returncode, 0, done.stdout)
        reports = list((self.workspace / "reports").glob("TEST-*.xml"))
        self.assertEqual([p.name for p in reports], ["TEST-sample_Test.Sample.xml"])
        cases = {c.get("name"): c for c in ET.parse(reports[0]).getroot().iter("testcase")}
        self.assertEqual(sorted(cases), ["test_pass", "test_samples"])
        properties = {p.get("name"): p.get("value") for p in cases["test_pass"].iter("property")}
        self.assertEqual(properties, {"throughput": "1500 msg/s", "bytes": "42"})
        properties = {p.get("name"): p.get("value") for p in cases["test_samples"].iter("property")}
        self.assertEqual(properties, {"latency": "latency: n=5 p50=3 p90=100 p99=100 max=100 ms"})

    def test_json_report(self) -> None:
        """--json writes the whole run: counts, suites, tests, metrics and summaries."""
        done = self.runner("--suite", "sample", "--json", "out/run.json")
        self.assertEqual(done.returncode, 1)
        data = json.loads((self.workspace / "out" / "run.json").read_text())
        self.assertEqual(
            {k: data[k] for k in ("format", "passed", "failed", "skipped", "interrupted")},
            {
                "format": "zTestSuite-report/1",
                "passed": 2,
                "failed": 3,
                "skipped": 1,
                "interrupted": False,
            },
        )
        self.assertEqual(data["pass_ratio"], 0.4)
        self.assertEqual(data["argv"][-2:], ["--json", "out/run.json"])
        suite = data["suites"][0]
        self.assertEqual(
            {k: suite[k] for k in ("name", "module", "origin", "passed", "failed", "skipped")},
            {
                "name": "sample",
                "module": "sample_Test",
                "origin": "sample",
                "passed": 2,
                "failed": 3,
                "skipped": 1,
            },
        )
        tests = {t["name"]: t for t in data["tests"]}
        self.assertEqual(tests["Sample.test_fail"]["message"], "AssertionError: 1 != 2")
        self.assertEqual(tests["Sample.test_skip"]["message"], "not today")
        self.assertEqual(
            tests["Sample.test_pass"]["metrics"],
            [
                {"name": "throughput", "value": 1500.0, "unit": "msg/s"},
                {"name": "bytes", "value": 42.0, "unit": ""},
            ],
        )
        self.assertEqual(
            tests["Sample.test_samples"]["samples"][0]["summary"],
            {
                "count": 5,
                "min": 1.0,
                "p50": 3.0,
                "p90": 100.0,
                "p99": 100.0,
                "max": 100.0,
                "mean": 22.0,
            },
        )
        self.assertEqual(
            data["metrics"]["latency"],
            [
                {
                    "name": "latency",
                    "unit": "ms",
                    "count": 5,
                    "min": 1.0,
                    "median": 3.0,
                    "max": 100.0,
                }
            ],
        )

    def test_html_report(self) -> None:
        """--html writes one self-contained page with the closing line and no scripts."""
        done = self.runner("--suite", "sample", "--html", "report.html")
        page = (self.workspace / "report.html").read_text()
        self.assertIn("2 passed, 3 failed, 1 skipped", page)
        self.assertNotIn("<script", page)
        self.assertNotIn("http://", page.replace("http://www.w3.org/2000/svg", ""))
        self.assertEqual(self.last_line(done), "2 passed, 3 failed, 1 skipped")

    def test_artifacts_folder(self) -> None:
        """Tests keep files in --artifacts DIR, or in artifacts/ beside the --xml reports."""
        self.runner("--suite", "artifact", "--artifacts", "kept")
        self.assertEqual((self.workspace / "kept" / "note.txt").read_text(), "kept")
        self.runner("--suite", "artifact", "--xml", "reports")
        self.assertEqual((self.workspace / "reports/artifacts/note.txt").read_text(), "kept")


class TestNetworkSkips(RunnerCase):
    def test_offline_skips_network_tests(self) -> None:
        """--offline skips every requires_network test with the reason."""
        done = self.runner("--suite", "net", "--offline", "-v")
        self.assertEqual(done.returncode, 0, done.stdout)
        self.assertIn(
            ": requires network: offline mode (ZTEST_OFFLINE=1 or --offline)\n", done.stdout
        )
        self.assertEqual(self.last_line(done), "0 passed, 0 failed, 2 skipped")

    def test_loopback_down_skips_network_tests(self) -> None:
        """In a namespace with loopback down, network tests skip and the run exits 0."""
        unshare = shutil.which("unshare")
        if unshare is None or os.geteuid() != 0:
            self.skipTest("needs root and unshare(1) to make a network namespace")
        done = self.runner("--suite", "net", "-v", prefix=(unshare, "-n"))
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn(
            ": requires network: no loopback round trip ([Errno 101] Network is unreachable)\n",
            done.stdout,
        )
        self.assertEqual(self.last_line(done), "0 passed, 0 failed, 2 skipped")


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
        self.assertIn(f": requires a browser: {self.reason()}\n", done.stdout)
        self.assertEqual(self.last_line(done), "0 passed, 0 failed, 1 skipped")

    def test_strict_turns_the_skip_into_a_failure(self) -> None:
        """With ZTEST_STRICT=1 (as CI runs) a missing browser fails the run."""
        done = self.runner("--suite", "page", env={**self.NO_CHROMIUM, "ZTEST_STRICT": "1"})
        self.assertEqual(done.returncode, 1, done.stdout)
        self.assertIn(
            f"AssertionError: requires a browser: {self.reason()} "
            "(ZTEST_STRICT=1 forbids skipping)",
            done.stdout,
        )
        self.assertEqual(self.last_line(done), "0 passed, 1 failed, 0 skipped")

    def test_inherited_set_up_class_is_guarded(self) -> None:
        """A suite whose setUpClass comes from BrowserTestCase skips before it starts
        Playwright or Chromium."""

        @requires_browser
        class Page(BrowserTestCase):
            def test_page(self) -> None:
                return None

        with mock.patch.dict(os.environ, {**self.NO_CHROMIUM, "ZTEST_STRICT": "0"}):
            with self.assertRaises(unittest.SkipTest) as caught:
                Page.setUpClass()
        self.assertEqual(str(caught.exception), f"requires a browser: {self.reason()}")

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
        self.assertEqual(self.last_line(done), "1 passed, 0 failed, 0 skipped")


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
        with mock.patch.dict(os.environ, {"ZTEST_OFFLINE": "1"}):
            self.assertEqual(network_unavailable(), "offline mode (ZTEST_OFFLINE=1 or --offline)")
