"""Per-test metrics: a test records numbers and the runner reports them.

``record_metric(name, value, unit)`` records one number (bytes sent, msg/s, ms);
``record_samples(name, values, unit)`` records a distribution (every request's
latency), reported as percentiles and drawn as a histogram in the HTML report.

The kind of a metric follows from its unit: a rate (``"/s"`` at the end: ``msg/s``,
``MB/s``) is a throughput, a time (``ns``, ``us``, ``ms``, ``s``) is a latency. The run's
summary groups metrics of those two kinds.

The runner tells this module which test is running; a metric recorded outside a test
run by the runner (a plain ``python -m unittest``) is kept under ``"(no test)"``.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Metric",
    "MetricStore",
    "STORE",
    "Samples",
    "metric_kind",
    "record_metric",
    "record_samples",
]

TIME_UNITS = ("ns", "us", "µs", "ms", "s")


def metric_kind(unit: str) -> str:
    """``"throughput"``, ``"latency"`` or ``"other"``, from the unit alone."""
    if unit.endswith("/s") and len(unit) > 2:
        return "throughput"
    if unit in TIME_UNITS:
        return "latency"
    return "other"


def _finite(name: str, value: float) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {name!r} must be a finite number, not {value!r}")
    return number


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str = ""

    @property
    def kind(self) -> str:
        return metric_kind(self.unit)

    def __str__(self) -> str:
        return f"{self.name}={self.value:.6g}{' ' + self.unit if self.unit else ''}"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "unit": self.unit}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Metric:
        return cls(str(data["name"]), float(data["value"]), str(data.get("unit", "")))


def percentile(ordered: list[float], fraction: float) -> float:
    """The nearest-rank percentile of an ascending, non-empty list."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Samples:
    """Many measurements of one thing (each request's latency), kept whole."""

    name: str
    values: tuple[float, ...]
    unit: str = ""

    @property
    def kind(self) -> str:
        return metric_kind(self.unit)

    def summary(self) -> dict[str, float]:
        ordered = sorted(self.values)
        if not ordered:
            return {"count": 0}
        return {
            "count": len(ordered),
            "min": ordered[0],
            "p50": percentile(ordered, 0.50),
            "p90": percentile(ordered, 0.90),
            "p99": percentile(ordered, 0.99),
            "max": ordered[-1],
            "mean": statistics.fmean(ordered),
        }

    def __str__(self) -> str:
        found = self.summary()
        if not found["count"]:
            return f"{self.name}: no samples"
        unit = f" {self.unit}" if self.unit else ""
        return (
            f"{self.name}: n={found['count']:.0f} p50={found['p50']:.6g} "
            f"p90={found['p90']:.6g} p99={found['p99']:.6g} max={found['max']:.6g}{unit}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "values": list(self.values),
            "summary": self.summary(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Samples:
        values = tuple(float(v) for v in data["values"])
        return cls(str(data["name"]), values, str(data.get("unit", "")))


class MetricStore:
    def __init__(self) -> None:
        self.by_test: dict[str, list[Metric]] = defaultdict(list)
        self.samples_by_test: dict[str, list[Samples]] = defaultdict(list)
        self.current = "(no test)"

    def record(self, name: str, value: float, unit: str = "") -> Metric:
        metric = Metric(name, _finite(name, value), unit)
        self.by_test[self.current].append(metric)
        return metric

    def record_samples(self, name: str, values: Iterable[float], unit: str = "") -> Samples:
        samples = Samples(name, tuple(_finite(name, v) for v in values), unit)
        self.samples_by_test[self.current].append(samples)
        return samples


STORE = MetricStore()


def record_metric(name: str, value: float, unit: str = "") -> Metric:
    """Record a number (bytes, msg/s, ms) for the test that is running now."""
    return STORE.record(name, value, unit)


def record_samples(name: str, values: Iterable[float], unit: str = "") -> Samples:
    """Record a distribution (say each request's latency in ms) for the running test."""
    return STORE.record_samples(name, values, unit)
