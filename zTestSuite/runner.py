"""``python -m zTestSuite``: find the project's and the plugins' suites and run them.

A suite is a module: ``zTestSuite/<Name>_Test.py`` in this package, or a module a
plugin lists in ``Plugin.suites``. A suite that fails to import becomes one erroring
test, never a silent gap; one that raises ``unittest.SkipTest`` while importing (it
needs a package that is not installed) becomes one skipped test with that reason.
The last line printed is ``N passed, N failed, N skipped`` (errors count as failed)
and the exit status is 1 when anything failed.
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time
import traceback
import unittest
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from .metrics import STORE, Metric
from .network import OFFLINE_ENV

__all__ = ["Suite", "discover_suites", "main", "run"]

PACKAGE_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Suite:
    name: str  # "zBifrost_Integration"
    module: str  # "zTestSuite.zBifrost_Integration_Test"
    origin: str  # "zTestSuite" or the plugin's name


def _suite_name(module: str) -> str:
    last = module.rsplit(".", 1)[-1]
    return last[: -len("_Test")] if last.endswith("_Test") else last


def discover_suites(plugins: Sequence[str] = ()) -> list[Suite]:
    """The project's suites, then those of entry-point plugins and ``plugins``."""
    suites = [
        Suite(_suite_name(path.stem), f"zTestSuite.{path.stem}", "zTestSuite")
        for path in sorted(PACKAGE_DIR.glob("*_Test.py"))
    ]
    from zCLI.plugins import Registry

    registry = Registry()
    registry.load_entry_points()
    for ref in plugins:
        registry.load(Path(ref) if ref.endswith(".py") else ref)
    suites += [Suite(_suite_name(mod), mod, plugin) for plugin, mod in registry.suites]
    return suites


def _failed_import(suite: Suite, error: str) -> unittest.TestSuite:
    def test_import(self: unittest.TestCase) -> None:
        raise ImportError(f"suite {suite.module} failed to import:\n{error}")

    case = type("SuiteImportError", (unittest.TestCase,), {"test_import": test_import})
    case.__module__ = suite.module
    return unittest.TestSuite([case("test_import")])


def _skipped_import(suite: Suite, reason: str) -> unittest.TestSuite:
    @unittest.skip(reason)
    def test_import(self: unittest.TestCase) -> None:
        """The whole suite is skipped: it raised SkipTest while importing."""

    case = type("SuiteSkipped", (unittest.TestCase,), {"test_import": test_import})
    case.__module__ = suite.module
    return unittest.TestSuite([case("test_import")])


def load(suites: Sequence[Suite], pattern: str | None) -> unittest.TestSuite:
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = [pattern if "*" in pattern else f"*{pattern}*"]
    combined = unittest.TestSuite()
    for suite in suites:
        try:
            module = importlib.import_module(suite.module)
        except unittest.SkipTest as skip:  # the suite says why it cannot run here
            combined.addTest(_skipped_import(suite, str(skip)))
            continue
        except Exception:
            combined.addTest(_failed_import(suite, traceback.format_exc()))
            continue
        combined.addTest(loader.loadTestsFromModule(module))
    return combined


class _Tracking:
    """Mixed into a unittest result: outcome, duration and metrics per test id."""

    def _track_init(self) -> None:
        self.outcomes: dict[str, str] = {}
        self.durations: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def _mark(self, test: unittest.TestCase, outcome: str) -> None:
        key = test.id()
        if self.outcomes.get(key) != "failed":
            self.outcomes[key] = outcome

    def startTest(self, test: unittest.TestCase) -> None:
        self._started[test.id()] = time.perf_counter()
        STORE.current = test.id()
        super().startTest(test)  # type: ignore[misc]

    def stopTest(self, test: unittest.TestCase) -> None:
        super().stopTest(test)  # type: ignore[misc]
        started = self._started.pop(test.id(), None)
        if started is not None:
            self.durations[test.id()] = time.perf_counter() - started
        STORE.current = "(no test)"

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)  # type: ignore[misc]
        self._mark(test, "passed")

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)  # type: ignore[misc]
        self._mark(test, "passed")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)  # type: ignore[misc]
        self._mark(test, "skipped")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)  # type: ignore[misc]
        self._mark(test, "failed")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)  # type: ignore[misc]
        self._mark(test, "failed")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)  # type: ignore[misc]
        self._mark(test, "failed")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[misc]
        if err is not None:
            self._mark(test, "failed")


class TextResult(_Tracking, unittest.TextTestResult):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._track_init()


def _xml_result_class() -> type:
    from xmlrunner.result import _XMLTestResult  # the documented resultclass hook's base

    class XMLResult(_Tracking, _XMLTestResult):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._track_init()

    return XMLResult


def _add_xml_metrics(directory: Path) -> None:
    """Put each test's metrics in its <testcase> as <properties> (JUnit's place for them)."""
    for report in directory.glob("TEST-*.xml"):
        tree = ET.parse(report)
        changed = False
        for case in tree.iter("testcase"):
            test_id = f"{case.get('classname')}.{case.get('name')}"
            metrics = STORE.by_test.get(test_id)
            if not metrics:
                continue
            properties = ET.SubElement(case, "properties")
            for metric in metrics:
                ET.SubElement(
                    properties,
                    "property",
                    name=metric.name,
                    value=f"{metric.value:.6g}{' ' + metric.unit if metric.unit else ''}",
                )
            changed = True
        if changed:
            tree.write(report, encoding="utf-8", xml_declaration=True)


def _suite_of(test_id: str, suites: Sequence[Suite]) -> str:
    for suite in suites:
        if test_id.startswith(suite.module + "."):
            return suite.name
    return test_id.rsplit(".", 2)[0]


def _report(result: _Tracking, suites: Sequence[Suite], out: TextIO) -> tuple[int, int, int]:
    by_suite: dict[str, list[str]] = {}
    for test_id in result.outcomes:
        by_suite.setdefault(_suite_of(test_id, suites), []).append(test_id)
    out.write("\nDurations and metrics, per test and per suite:\n")
    for suite_name, test_ids in by_suite.items():
        total = sum(result.durations.get(t, 0.0) for t in test_ids)
        out.write(f"{suite_name}: {len(test_ids)} tests in {total:.3f}s\n")
        for test_id in test_ids:
            metrics = STORE.by_test.get(test_id, [])
            extra = f"  [{', '.join(map(str, metrics))}]" if metrics else ""
            duration = result.durations.get(test_id, 0.0)
            short = test_id.split(".", 2)[-1] if test_id.startswith("zTestSuite.") else test_id
            out.write(f"  {duration:8.3f}s {result.outcomes[test_id]:7} {short}{extra}\n")
        grouped: dict[tuple[str, str], list[float]] = {}
        for test_id in test_ids:
            for metric in STORE.by_test.get(test_id, []):
                grouped.setdefault((metric.name, metric.unit), []).append(metric.value)
        for (name, unit), values in grouped.items():
            median = Metric(name, statistics.median(values), unit)
            out.write(f"  suite metric {median} (median of {len(values)})\n")
    counts = list(result.outcomes.values())
    return counts.count("passed"), counts.count("failed"), counts.count("skipped")


def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    parser = argparse.ArgumentParser(
        prog="python -m zTestSuite", description="Run zCLI's and its plugins' test suites."
    )
    parser.add_argument("-k", dest="pattern", help="only tests whose id matches PATTERN")
    parser.add_argument("--suite", action="append", default=[], help="only this suite")
    parser.add_argument("--list", action="store_true", help="list suites and tests, run none")
    parser.add_argument("--xml", metavar="DIR", help="write JUnit XML reports to DIR")
    parser.add_argument("--offline", action="store_true", help="skip every network test")
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        help="also run the suites of this plugin module or .py file",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per test")
    parser.add_argument("--failfast", action="store_true", help="stop at the first failure")
    args = parser.parse_args(argv)
    if args.offline:
        os.environ[OFFLINE_ENV] = "1"

    suites = discover_suites(args.plugin)
    if args.suite:
        wanted = {_suite_name(name) for name in args.suite}
        unknown = wanted - {s.name for s in suites}
        if unknown:
            parser.error(
                f"no suite named {', '.join(sorted(unknown))}; "
                f"try --list (known: {', '.join(s.name for s in suites)})"
            )
        suites = [s for s in suites if s.name in wanted]
    tests = load(suites, args.pattern)
    if args.list:
        for suite in suites:
            out.write(f"{suite.name} ({suite.module}, from {suite.origin})\n")
        for test in _flatten(tests):
            out.write(f"  {test.id()}\n")
        return 0

    verbosity = 2 if args.verbose else 1
    if args.xml:
        import xmlrunner

        runner: unittest.TextTestRunner = xmlrunner.XMLTestRunner(
            output=args.xml,
            outsuffix="",
            resultclass=_xml_result_class(),
            stream=out,
            verbosity=verbosity,
            failfast=args.failfast,
        )
    else:
        runner = unittest.TextTestRunner(
            stream=out, verbosity=verbosity, failfast=args.failfast, resultclass=TextResult
        )
    result = runner.run(tests)
    if args.xml:
        _add_xml_metrics(Path(args.xml))
    passed, failed, skipped = _report(result, suites, out)  # type: ignore[arg-type]
    out.write(f"{passed} passed, {failed} failed, {skipped} skipped\n")
    out.flush()
    return 1 if failed or not result.wasSuccessful() else 0


def _flatten(suite: unittest.TestSuite) -> list[unittest.TestCase]:
    found: list[unittest.TestCase] = []
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            found.extend(_flatten(item))
        else:
            found.append(item)
    return found


def main() -> int:
    return run()
