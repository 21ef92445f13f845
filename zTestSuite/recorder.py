"""Running one suite into records: the unittest result that zTestSuite uses.

The result turns unittest's callbacks into ``TestRecord``s (outcome, duration, the
one-line message and whole failure text, metrics, process output tails) and tells an
``Observer`` (the progress printer, or a ``-j`` worker's pipe to its parent) as each
test starts and ends. It arms each test's time limit. With ``--xml`` it is also
unittest-xml-reporting's result, so the JUnit files come from that library, with each
test's metrics added as ``<properties>``.
"""

from __future__ import annotations

import io
import os
import tempfile
import time
import traceback
import unittest
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Protocol

from . import process
from .discovery import Suite
from .interrupts import STOPPING
from .metrics import STORE
from .records import SuiteRecord, TestRecord
from .timeouts import TimeLimit, limit_for

__all__ = [
    "Observer",
    "add_xml_metrics",
    "make_result",
    "run_suite",
    "write_lost_suite_xml",
    "write_xml",
]

ExcInfo = Any  # (type, value, traceback), as unittest passes it


class Observer(Protocol):
    def test_started(self, suite: str, test_id: str) -> None: ...

    def test_finished(self, record: TestRecord) -> None: ...

    def suite_finished(self, record: SuiteRecord) -> None: ...


def _one_line(err: ExcInfo) -> str:
    text = "".join(traceback.format_exception_only(err[0], err[1])).strip()
    return text.splitlines()[0] if text else err[0].__name__


class Recording:
    """Mixed into a unittest result class (see ``make_result``)."""

    observer: Observer
    default_timeout: float | None
    suite: str

    def _recording_init(self, observer: Observer, default_timeout: float | None) -> None:
        self.observer = observer
        self.default_timeout = default_timeout
        self.suite = ""
        self.records: list[TestRecord] = []
        self._open: dict[str, TestRecord] = {}
        self._started: dict[str, float] = {}
        self._limit = TimeLimit()
        self.interrupted_tests: list[str] = []

    # --- helpers -------------------------------------------------------------

    def _record(self, test: Any) -> TestRecord:
        key = test.id()
        record = self._open.get(key)
        if record is None:
            record = TestRecord(id=key, suite=self.suite, outcome="passed")
            self._open[key] = record
        return record

    def _fail(self, test: Any, err: ExcInfo, subtest: str = "") -> None:
        record = self._record(test)
        text = self._exc_info_to_string(err, test)  # type: ignore[attr-defined]
        if record.outcome != "failed":
            record.message = f"{subtest}: {_one_line(err)}" if subtest else _one_line(err)
        record.outcome = "failed"
        record.details += f"subtest {subtest}\n{text}" if subtest else text
        if not isinstance(test, unittest.TestCase):  # a fixture error (setUpClass ...)
            self._close(test)

    def _close(self, test: Any) -> None:
        record = self._open.pop(test.id(), None)
        if record is None:
            return
        if record.outcome == "failed":
            record.details += process.tails_for(record.id)
        record.metrics = list(STORE.by_test.get(record.id, []))
        record.samples = list(STORE.samples_by_test.get(record.id, []))
        self.records.append(record)
        self.observer.test_finished(record)

    # --- unittest's callbacks -----------------------------------------------------

    def startTest(self, test: unittest.TestCase) -> None:
        key = test.id()
        self._started[key] = time.perf_counter()
        STORE.current = key
        self._record(test)
        self.observer.test_started(self.suite, key)
        super().startTest(test)  # type: ignore[misc]
        self._limit.arm(key, limit_for(test, self.default_timeout))

    def stopTest(self, test: unittest.TestCase) -> None:
        self._limit.disarm()
        super().stopTest(test)  # type: ignore[misc]
        key = test.id()
        started = self._started.pop(key, None)
        if started is not None:
            self._record(test).duration = time.perf_counter() - started
        STORE.current = "(no test)"
        if STOPPING.is_set():  # Ctrl-C cut it short: it neither passed nor failed
            self._open.pop(key, None)
            self.interrupted_tests.append(key)
        else:
            self._close(test)
        process.forget(key)

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)  # type: ignore[misc]
        record = self._record(test)
        record.outcome, record.message = "skipped", reason
        if not isinstance(test, unittest.TestCase):  # setUpClass raised SkipTest
            self._close(test)

    def addFailure(self, test: Any, err: ExcInfo) -> None:
        super().addFailure(test, err)  # type: ignore[misc]
        self._fail(test, err)

    def addError(self, test: Any, err: ExcInfo) -> None:
        super().addError(test, err)  # type: ignore[misc]
        self._fail(test, err)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)  # type: ignore[misc]
        record = self._record(test)
        record.outcome, record.message = "failed", "unexpected success (marked expectedFailure)"

    def addSubTest(self, test: Any, subtest: Any, err: ExcInfo | None) -> None:
        super().addSubTest(test, subtest, err)  # type: ignore[misc]
        if err is not None:
            self._fail(test, err, subtest=subtest._subDescription())


def make_result(
    observer: Observer, default_timeout: float | None, xml: bool
) -> unittest.TestResult:
    """A result that records into ``observer``; unittest-xml-reporting's when ``xml``."""
    base: type = unittest.TestResult
    if xml:
        from xmlrunner.result import _XMLTestResult  # the library's documented resultclass base

        base = _XMLTestResult
    cls = type("RecordingResult", (Recording, base), {})
    if xml:
        result = cls(io.StringIO(), True, 0)  # stream, descriptions, verbosity: prints nothing
    else:
        result = cls()
    result._recording_init(observer, default_timeout)
    return result  # type: ignore[no-any-return]


def run_suite(
    suite: Suite, tests: unittest.TestSuite, result: unittest.TestResult, serial: str = ""
) -> tuple[SuiteRecord, bool]:
    """Run one suite's tests (and its class and module fixtures) into ``result``.

    Returns its record and whether a KeyboardInterrupt (Ctrl-C, or SIGTERM turned into
    one by the runner) cut it short; the test running then is left out of the record,
    and every process the suite started is stopped."""
    recording: Recording = result  # type: ignore[assignment]
    recording.suite = suite.name
    first = len(recording.records)
    started = time.perf_counter()
    record = SuiteRecord(suite.name, suite.module, suite.origin, serial=serial)
    interrupted = False
    try:
        tests.run(result)
    except KeyboardInterrupt:
        interrupted = True
        recording._limit.disarm()
        STORE.current = "(no test)"
        process.stop_all()
    record.duration = time.perf_counter() - started
    record.tests = recording.records[first:]
    process.stop_all()  # a process the suite left running (its fixtures stop theirs)
    recording.observer.suite_finished(record)
    return record, interrupted


def write_xml(result: unittest.TestResult, directory: Path, records: list[TestRecord]) -> None:
    """The JUnit XML unittest-xml-reporting writes (one file per test class), with each
    test's metrics and sample summaries as that testcase's ``<properties>``."""
    import xmlrunner

    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory, prefix=".partial-") as fresh:
        runner = xmlrunner.XMLTestRunner(output=fresh, outsuffix="")
        result.generate_reports(runner)  # type: ignore[attr-defined]
        written = sorted(Path(fresh).glob("TEST-*.xml"))
        add_xml_metrics(written, records)
        for path in written:
            os.replace(path, directory / path.name)


def add_xml_metrics(reports: list[Path], records: list[TestRecord]) -> None:
    by_id = {record.id: record for record in records}
    for report in reports:
        tree = ET.parse(report)
        changed = False
        for case in tree.iter("testcase"):
            record = by_id.get(f"{case.get('classname')}.{case.get('name')}")
            if record is None or not (record.metrics or record.samples):
                continue
            properties = ET.SubElement(case, "properties")
            for metric in record.metrics:
                unit = f" {metric.unit}" if metric.unit else ""
                value = f"{metric.value:.6g}{unit}"
                ET.SubElement(properties, "property", name=metric.name, value=value)
            for samples in record.samples:
                ET.SubElement(properties, "property", name=samples.name, value=str(samples))
            changed = True
        if changed:
            tree.write(report, encoding="utf-8", xml_declaration=True)


def write_lost_suite_xml(directory: Path, record: TestRecord, module: str) -> None:
    """A JUnit file for a failure no unittest result saw (a -j worker that died), so
    the XML reports it like the closing line does."""
    suite = ET.Element("testsuite", name=module, tests="1", errors="1", failures="0")
    case = ET.SubElement(suite, "testcase", classname=module, name="(worker)", time="0")
    error = ET.SubElement(case, "error", type="WorkerDied", message=record.message)
    error.text = record.details
    directory.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(
        directory / f"TEST-{module}.worker.xml", encoding="utf-8", xml_declaration=True
    )
