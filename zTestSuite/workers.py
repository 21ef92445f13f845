"""``-j N``: suites in N worker processes, merged into one report.

Each suite runs in a fresh worker process (``python -m zTestSuite --worker SPEC``) in
a session of its own. A worker reports on an inherited pipe, one JSON object per line:
``started`` (a test began), ``test`` (a TestRecord), ``suite`` (the suite's wall time)
and ``end``. The parent feeds those to the same Observer a single-process run uses, so
progress, the summary, ``--json``, ``--html`` and the closing line do not depend on
``-j``; workers write their JUnit files into the ``--xml`` folder themselves.

Suites that set ``SERIAL`` run last, one at a time, with no other worker running. A
worker that dies before it reports its suite becomes a failed test naming its exit
status, with the tail of its output. Ctrl-C (or SIGTERM) reaches the parent as one more
event in its queue (``signals_call``), never in the middle of its bookkeeping; it is
passed on to the running workers as SIGINT: each stops its processes and reports what
finished; a worker still running after the deadline is killed.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, Any

from .discovery import Suite
from .execution import Loaded, Outcome, load_suite, run_suites
from .harness import timeout
from .interrupts import signals_call, stop_on_signals
from .recorder import Observer, write_lost_suite_xml
from .records import SuiteRecord, TestRecord

__all__ = ["WorkerSpec", "run_parallel", "worker_main"]


@dataclass(frozen=True)
class WorkerSpec:
    suite: Suite
    patterns: list[str]
    default_timeout: float | None
    xml_dir: str | None
    failfast: bool
    fd: int = -1

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        return cls(**{**data, "suite": Suite(**data["suite"])})


# --- the worker side ------------------------------------------------------------------


class _Pipe:
    """An Observer that reports to the parent, one JSON line per event."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def send(self, kind: str, **data: Any) -> None:
        self.stream.write(json.dumps({"type": kind, **data}) + "\n")
        self.stream.flush()

    def test_started(self, suite: str, test_id: str) -> None:
        self.send("started", suite=suite, test=test_id)

    def test_finished(self, record: TestRecord) -> None:
        self.send("test", record=record.to_json())

    def suite_finished(self, record: SuiteRecord) -> None:
        self.send("suite", duration=record.duration)


def worker_main(spec_text: str) -> int:
    spec = WorkerSpec.from_json(spec_text)
    with os.fdopen(spec.fd, "w", encoding="utf-8") as stream, stop_on_signals():
        pipe = _Pipe(stream)
        loaded = load_suite(spec.suite, spec.patterns)
        outcome = run_suites(
            [loaded],
            pipe,
            default_timeout=spec.default_timeout,
            xml_dir=Path(spec.xml_dir) if spec.xml_dir else None,
            failfast=spec.failfast,
        )
        pipe.send(
            "end", interrupted=outcome.interrupted, interrupted_tests=outcome.interrupted_tests
        )
    return 130 if outcome.interrupted else 0


# --- the parent side ------------------------------------------------------------------


class _Worker:
    def __init__(self, loaded: Loaded, spec: WorkerSpec, events: queue.Queue[Any]) -> None:
        self.loaded = loaded
        suite = loaded.suite
        self.record = SuiteRecord(suite.name, suite.module, suite.origin, serial=loaded.serial)
        self.reported = False
        self.output = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")
        read_end, write_end = os.pipe()
        spec = replace(spec, suite=suite, fd=write_end)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "zTestSuite", "--worker", spec.to_json()],
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            pass_fds=(write_end,),
            start_new_session=True,
        )
        os.close(write_end)
        reader = threading.Thread(
            target=self._read, args=(read_end, events), name=f"worker-{suite.name}", daemon=True
        )
        reader.start()

    def _read(self, read_end: int, events: queue.Queue[Any]) -> None:
        with os.fdopen(read_end, encoding="utf-8") as stream:
            for line in stream:
                try:
                    events.put((self, json.loads(line)))
                except json.JSONDecodeError:
                    continue  # a torn last line from a killed worker
        events.put((self, None))

    def interrupt(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def crash_record(self, status: int) -> TestRecord:
        self.output.seek(0)
        tail = "\n".join(self.output.read().splitlines()[-40:])
        message = (
            f"the worker running suite {self.record.name} exited with status {status} "
            "before it finished"
        )
        return TestRecord(
            id=f"{self.record.module} (worker)",
            suite=self.record.name,
            outcome="failed",
            message=message,
            details=f"{message}; its last output:\n{tail}\n",
        )


def _can_start(item: Loaded, running: Sequence[_Worker], jobs: int) -> bool:
    if item.serial:
        return not running
    return len(running) < jobs and not any(w.loaded.serial for w in running)


def run_parallel(
    loaded: Sequence[Loaded],
    jobs: int,
    observer: Observer,
    *,
    patterns: Sequence[str],
    default_timeout: float | None,
    xml_dir: Path | None,
    failfast: bool,
) -> Outcome:
    """Run each suite in its own worker, at most ``jobs`` at a time."""
    spec = WorkerSpec(
        Suite("", "", ""),
        list(patterns),
        default_timeout,
        str(xml_dir) if xml_dir else None,
        failfast,
    )
    events: queue.Queue[tuple[_Worker | None, dict[str, Any] | None]] = queue.Queue()
    pending = [item for item in loaded if not item.serial] + [i for i in loaded if i.serial]
    running: list[_Worker] = []
    started: list[_Worker] = []
    outcome = Outcome()
    stop_starting = False
    interrupted_early: list[_Worker] = []

    def handle(worker: _Worker, event: dict[str, Any] | None) -> None:
        nonlocal stop_starting
        if event is None:  # the pipe closed: the worker is done, or dead
            status = worker.process.wait()
            running.remove(worker)
            if not worker.reported and stopping_since is not None and not worker.record.tests:
                interrupted_early.append(worker)  # stopped before it ran a test: not run
            elif not worker.reported:
                crash = worker.crash_record(status)
                if xml_dir is not None:
                    write_lost_suite_xml(xml_dir, crash, worker.record.module)
                worker.record.tests.append(crash)
                observer.test_finished(crash)
                worker.reported = True
                observer.suite_finished(worker.record)
            worker.output.close()
        elif event["type"] == "started":
            observer.test_started(event["suite"], event["test"])
        elif event["type"] == "test":
            record = TestRecord.from_json(event["record"])
            worker.record.tests.append(record)
            observer.test_finished(record)
            stop_starting = stop_starting or (failfast and record.outcome == "failed")
        elif event["type"] == "suite":
            worker.record.duration = float(event["duration"])
            worker.reported = True
            observer.suite_finished(worker.record)
        elif event["type"] == "end":
            outcome.interrupted = outcome.interrupted or bool(event["interrupted"])
            outcome.interrupted_tests += event["interrupted_tests"]

    stopping_since: float | None = None  # when Ctrl-C or SIGTERM arrived
    with signals_call(lambda: events.put((None, None))):
        while running or (pending and not stop_starting):
            while pending and not stop_starting and _can_start(pending[0], running, jobs):
                worker = _Worker(pending.pop(0), spec, events)
                running.append(worker)
                started.append(worker)
            wait = None
            if stopping_since is not None:
                wait = max(0.0, stopping_since + timeout(10) - time.monotonic())
            try:
                source, event = events.get(timeout=wait)
            except queue.Empty:  # workers that outlived the deadline
                for worker in running:
                    worker.kill()
                stopping_since = time.monotonic()
                continue
            if source is not None:
                handle(source, event)
            elif stopping_since is None:  # a signal: pass it on, start nothing more
                outcome.interrupted, stop_starting = True, True
                stopping_since = time.monotonic()
                for worker in running:
                    worker.interrupt()
    order = {id(item): index for index, item in enumerate(loaded)}
    unrun = sorted([w.loaded for w in interrupted_early] + pending, key=lambda i: order[id(i)])
    outcome.not_run = [item.suite.name for item in unrun]
    ran = [w for w in started if w not in interrupted_early]
    outcome.suites = [w.record for w in sorted(ran, key=lambda w: order[id(w.loaded)])]
    return outcome
