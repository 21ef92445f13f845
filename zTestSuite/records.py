"""What a run produced, as plain data: one record per test, per suite, and the run.

The runner fills these in; the text summary, ``--json``, ``--html`` and JUnit XML are
all written from them, and ``-j`` workers send them to the parent as JSON lines, so
every report of one run says the same thing. Nothing here does I/O.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .metrics import Metric, Samples

__all__ = [
    "FORMAT",
    "OUTCOMES",
    "RunReport",
    "SuiteRecord",
    "TestRecord",
    "metric_summaries",
    "percent",
]

FORMAT = "zTestSuite-report/1"
OUTCOMES = ("passed", "failed", "skipped")


@dataclass
class TestRecord:
    """One test: ``outcome`` is passed, failed or skipped; ``message`` is the one-line
    reason (the exception's last line, or the skip reason) and ``details`` the whole
    failure text, with the output tail of any process the test started."""

    id: str  # "zTestSuite.zAuth_Test.TestSignIn.test_wrong_password"
    suite: str  # "zAuth"
    outcome: str
    duration: float = 0.0
    message: str = ""
    details: str = ""
    metrics: list[Metric] = field(default_factory=list)
    samples: list[Samples] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The id without the module: ``TestSignIn.test_wrong_password``."""
        parts = self.id.split(" ")[0].rsplit(".", 2)
        return ".".join(parts[-2:]) if len(parts) >= 2 else self.id

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "suite": self.suite,
            "name": self.name,
            "outcome": self.outcome,
            "duration": self.duration,
            "message": self.message,
            "details": self.details,
            "metrics": [m.to_json() for m in self.metrics],
            "samples": [s.to_json() for s in self.samples],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestRecord:
        return cls(
            id=str(data["id"]),
            suite=str(data["suite"]),
            outcome=str(data["outcome"]),
            duration=float(data.get("duration", 0.0)),
            message=str(data.get("message", "")),
            details=str(data.get("details", "")),
            metrics=[Metric.from_json(m) for m in data.get("metrics", [])],
            samples=[Samples.from_json(s) for s in data.get("samples", [])],
        )


def _counts(tests: Iterable[TestRecord]) -> dict[str, int]:
    outcomes = [t.outcome for t in tests]
    return {outcome: outcomes.count(outcome) for outcome in OUTCOMES}


def percent(ratio: float | None) -> str:
    """A ratio as reports show it: ``"97.5%"``, or ``"n/a"`` when nothing ran."""
    return "n/a" if ratio is None else f"{ratio * 100:.1f}%"


def _ratio(counts: dict[str, int]) -> float | None:
    """passed / (passed + failed); None when nothing ran (all skipped or empty)."""
    ran = counts["passed"] + counts["failed"]
    return counts["passed"] / ran if ran else None


@dataclass
class SuiteRecord:
    """A suite's wall time covers its class and module fixtures, not only its tests."""

    name: str  # "zAuth"
    module: str  # "zTestSuite.zAuth_Test"
    origin: str  # "zTestSuite", a plugin's name or an app folder's name
    duration: float = 0.0
    tests: list[TestRecord] = field(default_factory=list)
    serial: str = ""  # why it runs alone under -j, or ""

    @property
    def counts(self) -> dict[str, int]:
        return _counts(self.tests)

    @property
    def success_rate(self) -> float | None:
        return _ratio(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "origin": self.origin,
            "duration": self.duration,
            "serial": self.serial,
            **self.counts,
            "success_rate": self.success_rate,
        }


def metric_summaries(tests: Sequence[TestRecord]) -> dict[str, list[dict[str, Any]]]:
    """Throughput and latency across the run: per metric name and unit, the count,
    min, median and max of the values tests recorded (samples count each value)."""
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for test in tests:
        for metric in test.metrics:
            key = (metric.kind, metric.name, metric.unit)
            grouped.setdefault(key, []).append(metric.value)
        for samples in test.samples:
            key = (samples.kind, samples.name, samples.unit)
            grouped.setdefault(key, []).extend(samples.values)
    summaries: dict[str, list[dict[str, Any]]] = {"throughput": [], "latency": []}
    for (kind, name, unit), values in sorted(grouped.items()):
        if kind not in summaries or not values:
            continue
        summaries[kind].append(
            {
                "name": name,
                "unit": unit,
                "count": len(values),
                "min": min(values),
                "median": statistics.median(values),
                "max": max(values),
            }
        )
    return summaries


@dataclass
class RunReport:
    """The whole run. ``interrupted`` is True when Ctrl-C (or SIGTERM) cut it short;
    ``interrupted_tests`` were running then (and are in no count), ``not_run`` names
    the suites that never started."""

    started: str  # ISO 8601, UTC
    duration: float = 0.0
    suites: list[SuiteRecord] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    interrupted: bool = False
    interrupted_tests: list[str] = field(default_factory=list)
    not_run: list[str] = field(default_factory=list)
    workers: int = 1

    @property
    def tests(self) -> list[TestRecord]:
        return [test for suite in self.suites for test in suite.tests]

    @property
    def counts(self) -> dict[str, int]:
        return _counts(self.tests)

    @property
    def pass_ratio(self) -> float | None:
        return _ratio(self.counts)

    def closing_line(self) -> str:
        counts = self.counts
        return f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"

    def to_json(self) -> dict[str, Any]:
        tests = self.tests
        return {
            "format": FORMAT,
            "started": self.started,
            "duration": self.duration,
            "argv": self.argv,
            "workers": self.workers,
            "interrupted": self.interrupted,
            "interrupted_tests": self.interrupted_tests,
            "not_run": self.not_run,
            **self.counts,
            "pass_ratio": self.pass_ratio,
            "metrics": metric_summaries(tests),
            "suites": [suite.to_json() for suite in self.suites],
            "tests": [test.to_json() for test in tests],
        }
