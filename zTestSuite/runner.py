"""``python -m zTestSuite``: find the suites of zCLI, its plugins and an app, and run them.

Which suites: see ``discovery`` (an app's own with ``--workspace APP`` or inside an
app folder; zCLI's built-in ones in its source tree, outside any app, or with
``--builtin``). How: in this process, or in ``-j N`` worker processes (``workers``),
each test under its time limit (``timeouts``), with progress as it goes
(``progress``). What comes out: the text summary ending with ``N passed, N failed,
N skipped`` (errors count as failed; always the last line), JUnit XML (``--xml``),
JSON (``--json``) and a self-contained HTML page (``--html``), all from the same
records. Exit status: 0 when nothing failed, 1 when something did, 2 for a usage
error, 130 when Ctrl-C (or SIGTERM) stopped the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from .discovery import (
    Suite,
    app_suites,
    builtin_suites,
    plugin_suites,
    select_sources,
    suite_name,
)
from .execution import Loaded, Outcome, flatten, load_suite, run_suites
from .harness import ARTIFACTS_ENV
from .interrupts import stop_on_signals
from .network import OFFLINE_ENV
from .progress import Progress
from .records import RunReport
from .reportfiles import write_atomically
from .summary import write_summary
from .targets import TargetError, apply_targets

__all__ = ["main", "run"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m zTestSuite",
        description="Run the test suites of zCLI, of its plugins and of an app.",
    )
    add = parser.add_argument
    add(
        "-k",
        dest="patterns",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only tests whose id contains PATTERN, or matches it with * wildcards (repeatable)",
    )
    add("--suite", action="append", default=[], help="only this suite (repeatable)")
    add("--list", action="store_true", help="list suites, their targets and tests; run none")
    add("--workspace", metavar="APP", help="run the suites of the app in this folder")
    add("--builtin", action="store_true", help="also run zCLI's built-in suites")
    add("--plugin", action="append", default=[], help="also run this plugin's suites")
    add(
        "--target",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="what a black-box suite tests (repeatable; also ZTEST_TARGET_<NAME>)",
    )
    add("-j", dest="jobs", type=int, default=1, metavar="N", help="run suites in N processes")
    add("--timeout", type=float, metavar="SECONDS", help="fail a test running longer than this")
    add("--xml", metavar="DIR", help="write JUnit XML reports to DIR")
    add("--json", metavar="FILE", help="write the whole run as JSON to FILE")
    add("--html", metavar="FILE", help="write a self-contained HTML report to FILE")
    add("--artifacts", metavar="DIR", help="where tests keep files (default: DIR/artifacts)")
    add("--offline", action="store_true", help="skip every network test")
    add("-v", "--verbose", action="store_true", help="one line per test")
    add("--failfast", action="store_true", help="stop at the first failure")
    add("--worker", help=argparse.SUPPRESS)  # a -j worker's spec (see workers)
    return parser


def _suites(args: argparse.Namespace, parser: argparse.ArgumentParser) -> list[Suite]:
    from zCLI import zCLIError

    try:
        sources = select_sources(Path.cwd(), args.workspace, args.builtin)
        suites: list[Suite] = []
        if sources.builtin:
            suites += builtin_suites() + plugin_suites()
        if sources.app is not None:
            suites += app_suites(sources.app)
        suites += plugin_suites(args.plugin, entry_points=False)
    except (FileNotFoundError, zCLIError) as exc:
        parser.error(str(exc))
    # A plugin named with --plugin may be installed too: each suite runs once, where it
    # first appears.
    first = {suite.module: suite for suite in suites[::-1]}
    suites = [suite for suite in suites if first[suite.module] is suite]
    if args.suite:
        wanted = {suite_name(name) for name in args.suite}
        unknown = wanted - {s.name for s in suites}
        if unknown:
            parser.error(
                f"no suite named {', '.join(sorted(unknown))}; "
                f"try --list (known: {', '.join(s.name for s in suites)})"
            )
        suites = [s for s in suites if s.name in wanted]
    return suites


def _list(loaded: Sequence[Loaded], out: TextIO) -> None:
    for item in loaded:
        suite = item.suite
        out.write(f"{suite.name} ({suite.module}, from {suite.origin})\n")
        if item.serial:
            out.write(f"  serial: {item.serial}\n")
        for target in item.targets:
            out.write(f"  {target.describe()}\n")
        for test in flatten(item.tests):
            out.write(f"  {test.id()}\n")


def run(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    started, clock = datetime.now(UTC), time.monotonic()
    parser = _parser()
    args = parser.parse_args(argv)
    if args.worker:
        from .workers import worker_main

        return worker_main(args.worker)
    if args.jobs < 1:
        parser.error("-j needs at least 1 process")
    if args.timeout is not None and not args.timeout > 0:
        parser.error("--timeout needs a positive number of seconds")
    if args.offline:
        os.environ[OFFLINE_ENV] = "1"
    if args.artifacts or args.xml:
        os.environ[ARTIFACTS_ENV] = str(
            Path(args.artifacts or Path(args.xml) / "artifacts").resolve()
        )

    loaded = [load_suite(suite, args.patterns) for suite in _suites(args, parser)]
    loaded = [item for item in loaded if item.count]
    try:
        apply_targets(args.target, [t for item in loaded for t in item.targets])
    except TargetError as exc:
        parser.error(str(exc))
    if args.list:
        _list(loaded, out)
        return 0

    mode = "verbose" if args.verbose else "live" if out.isatty() else "suites"
    progress = Progress(out, mode, total=sum(item.count for item in loaded))
    xml_dir = Path(args.xml) if args.xml else None
    with stop_on_signals():
        try:
            if args.jobs == 1 or len(loaded) <= 1:
                outcome = run_suites(
                    loaded,
                    progress,
                    default_timeout=args.timeout,
                    xml_dir=xml_dir,
                    failfast=args.failfast,
                )
            else:
                from .workers import run_parallel

                outcome = run_parallel(
                    loaded,
                    args.jobs,
                    progress,
                    patterns=args.patterns,
                    default_timeout=args.timeout,
                    xml_dir=xml_dir,
                    failfast=args.failfast,
                )
        except KeyboardInterrupt:  # before the first suite started
            outcome = Outcome(interrupted=True, not_run=[i.suite.name for i in loaded])
        finally:
            progress.close()
    report = RunReport(
        started=started.isoformat(timespec="seconds"),
        duration=time.monotonic() - clock,
        suites=outcome.suites,
        argv=list(sys.argv[1:] if argv is None else argv),
        interrupted=outcome.interrupted,
        interrupted_tests=outcome.interrupted_tests,
        not_run=outcome.not_run,
        workers=min(args.jobs, max(1, len(loaded))),
    )
    if args.json:
        text = json.dumps(report.to_json(), indent=1, ensure_ascii=False) + "\n"
        write_atomically(Path(args.json), text)
    if args.html:
        from .html_report import write_html

        write_html(report, Path(args.html))
    write_summary(report, out)
    if report.interrupted:
        return 130
    return 1 if report.counts["failed"] else 0


def main() -> int:
    return run()
