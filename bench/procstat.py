"""What the bench scripts read about processes and runs, in one place: CPU time and
resident memory from /proc, the load average, percentiles and medians, a log line, and
stopping a server process. Each script in bench/ imports it as ``procstat`` (the
script's folder is first on ``sys.path`` when it runs as ``python bench/NAME.py``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

__all__ = [
    "TICK",
    "cpu_seconds",
    "load_average",
    "log",
    "median",
    "percentile",
    "rss_bytes",
    "stat_fields",
    "stop",
]

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(text: str) -> None:
    """A progress line, on stderr: stdout carries the results."""
    print(text, file=sys.stderr, flush=True)


def stat_fields(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (field 3 onwards)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of a process (all its threads), in clock ticks' resolution."""
    fields = stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def load_average() -> float:
    """The one-minute load average, recorded with each run."""
    return os.getloadavg()[0]


def percentile(ordered: list[float], q: float, empty: float = float("nan")) -> float:
    """The ``q`` quantile of sorted values (nearest rank); ``empty`` when there are none."""
    if not ordered:
        return empty
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def stop(process: subprocess.Popen[bytes] | subprocess.Popen[str], seconds: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``seconds``."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
