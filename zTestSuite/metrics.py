"""Per-test metrics: a test calls ``record_metric`` and the runner reports it.

The runner tells this module which test is running; a metric recorded outside a test
run by the runner (a plain ``python -m unittest``) is kept under ``"(no test)"``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

__all__ = ["Metric", "MetricStore", "STORE", "record_metric"]


@dataclass(frozen=True)
class Metric:
    name: str
    value: float
    unit: str = ""

    def __str__(self) -> str:
        value = f"{self.value:.6g}"
        return f"{self.name}={value}{' ' + self.unit if self.unit else ''}"


class MetricStore:
    def __init__(self) -> None:
        self.by_test: dict[str, list[Metric]] = defaultdict(list)
        self.current = "(no test)"

    def record(self, name: str, value: float, unit: str = "") -> Metric:
        metric = Metric(name, float(value), unit)
        self.by_test[self.current].append(metric)
        return metric


STORE = MetricStore()


def record_metric(name: str, value: float, unit: str = "") -> Metric:
    """Record a number (bytes, msg/s, ms) for the test that is running now."""
    return STORE.record(name, value, unit)
