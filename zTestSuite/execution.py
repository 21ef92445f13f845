"""Loading suites into unittest tests and running them in this process.

A suite that fails to import becomes one erroring test, never a silent gap; one that
raises ``unittest.SkipTest`` while importing (it needs a package that is not
installed) becomes one skipped test with that reason. Both the single-process run and
each ``-j`` worker run suites through ``run_suites``.
"""

from __future__ import annotations

import traceback
import unittest
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .discovery import Suite, import_suite, serial_reason
from .recorder import Observer, make_result, run_suite, write_xml
from .records import SuiteRecord
from .targets import Target, declared_targets

__all__ = ["Loaded", "Outcome", "flatten", "load_suite", "run_suites"]


def _stand_in(suite: Suite, kind: str, detail: str) -> unittest.TestSuite:
    """One test standing for a whole suite that could not be loaded."""
    if kind == "error":
        last = detail.strip().splitlines()[-1] if detail.strip() else "unknown error"

        def test_import(self: unittest.TestCase) -> None:
            raise ImportError(f"suite {suite.module} failed to import: {last}\n{detail}")

        name = "SuiteImportError"
    else:

        @unittest.skip(detail)
        def test_import(self: unittest.TestCase) -> None:
            """The whole suite is skipped: it raised SkipTest while importing."""

        name = "SuiteSkipped"
    case = type(name, (unittest.TestCase,), {"test_import": test_import})
    case.__module__ = suite.module
    return unittest.TestSuite([case("test_import")])


@dataclass
class Loaded:
    suite: Suite
    tests: unittest.TestSuite
    count: int
    serial: str = ""
    targets: list[Target] = field(default_factory=list)


def flatten(tests: unittest.TestSuite) -> list[unittest.TestCase]:
    found: list[unittest.TestCase] = []
    for item in tests:
        if isinstance(item, unittest.TestSuite):
            found.extend(flatten(item))
        else:
            found.append(item)
    return found


def load_suite(suite: Suite, patterns: Sequence[str] = ()) -> Loaded:
    loader = unittest.TestLoader()
    if patterns:
        loader.testNamePatterns = [p if "*" in p else f"*{p}*" for p in patterns]
    try:
        module = import_suite(suite)
    except unittest.SkipTest as skip:  # the suite says why it cannot run here
        return Loaded(suite, _stand_in(suite, "skip", str(skip)), 1)
    except Exception:
        return Loaded(suite, _stand_in(suite, "error", traceback.format_exc()), 1)
    tests = loader.loadTestsFromModule(module)
    return Loaded(
        suite, tests, len(flatten(tests)), serial_reason(module), declared_targets(module)
    )


@dataclass
class Outcome:
    suites: list[SuiteRecord] = field(default_factory=list)
    interrupted: bool = False
    interrupted_tests: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)


def run_suites(
    loaded: Sequence[Loaded],
    observer: Observer,
    *,
    default_timeout: float | None,
    xml_dir: Path | None,
    failfast: bool,
) -> Outcome:
    """Run suites one after another; a Ctrl-C ends the run with what finished."""
    result = make_result(observer, default_timeout, xml=xml_dir is not None)
    result.failfast = failfast
    outcome = Outcome()
    pending = list(loaded)
    result.startTestRun()
    try:
        while pending and not outcome.interrupted:
            item = pending.pop(0)
            record, outcome.interrupted = run_suite(item.suite, item.tests, result, item.serial)
            outcome.suites.append(record)
            if result.shouldStop and not outcome.interrupted:  # --failfast
                break
    except KeyboardInterrupt:  # between two suites
        outcome.interrupted = True
    finally:
        result.stopTestRun()
        outcome.interrupted_tests = list(result.interrupted_tests)  # type: ignore[attr-defined]
        outcome.not_run = [item.suite.name for item in pending]
        if xml_dir is not None:
            write_xml(result, xml_dir, [t for s in outcome.suites for t in s.tests])
    return outcome
