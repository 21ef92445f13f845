"""The text a run ends with: failures in full, the suites, the metrics, the run's
figures, and the closing line ``N passed, N failed, N skipped`` (always the last)."""

from __future__ import annotations

from typing import TextIO

from .progress import format_duration
from .records import RunReport, SuiteRecord, metric_summaries, percent

__all__ = ["write_summary"]

RULE = "=" * 70
THIN = "-" * 70


def _failures(report: RunReport, out: TextIO) -> None:
    for test in report.tests:
        if test.outcome == "failed":
            out.write(f"{RULE}\nFAIL {test.suite}: {test.id}\n{THIN}\n")
            out.write(test.details.rstrip("\n") + "\n")


def _suite_table(suites: list[SuiteRecord], out: TextIO) -> None:
    width = max([len("suite")] + [len(s.name) for s in suites])
    out.write(f"{'suite':<{width}}  tests  passed  failed  skipped  success  duration  origin\n")
    for suite in suites:
        counts = suite.counts
        serial = f"  (serial: {suite.serial})" if suite.serial else ""
        out.write(
            f"{suite.name:<{width}}  {len(suite.tests):5}  {counts['passed']:6}  "
            f"{counts['failed']:6}  {counts['skipped']:7}  {percent(suite.success_rate):>7}  "
            f"{format_duration(suite.duration):>8}  {suite.origin}{serial}\n"
        )


def _metrics(report: RunReport, out: TextIO) -> None:
    measured = [t for t in report.tests if t.metrics or t.samples]
    if not measured:
        return
    out.write("\nMetrics per test:\n")
    for test in measured:
        values = ", ".join(map(str, test.metrics))
        out.write(f"  {test.suite} {test.name} ({format_duration(test.duration)})")
        out.write(f": {values}\n" if values else "\n")
        for samples in test.samples:
            out.write(f"    {samples}\n")


def write_summary(report: RunReport, out: TextIO) -> None:
    _failures(report, out)
    out.write("\n")
    _suite_table(report.suites, out)
    _metrics(report, out)
    counts = report.counts
    total = sum(counts.values())
    workers = f"{report.workers} worker{'s' if report.workers != 1 else ''}"
    out.write(
        f"\nRun: {total} tests in {format_duration(report.duration)} with {workers}, "
        f"pass ratio {percent(report.pass_ratio)}\n"
    )
    for kind, rows in metric_summaries(report.tests).items():
        for row in rows:
            unit = f" {row['unit']}" if row["unit"] else ""
            out.write(
                f"  {kind} {row['name']}: median {row['median']:.6g}{unit} "
                f"(min {row['min']:.6g}, max {row['max']:.6g}, n={row['count']})\n"
            )
    if report.interrupted:
        tests = ", ".join(report.interrupted_tests)
        during = f"during {tests}" if tests else "between tests"
        not_run = ", ".join(report.not_run) or "none"
        out.write(f"Interrupted {during}; suites not run: {not_run}\n")
    out.write(report.closing_line() + "\n")
    out.flush()
