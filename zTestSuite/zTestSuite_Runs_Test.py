"""Long runs, run as a user runs them: time limits, -j workers, Ctrl-C, processes under
test, and the progress a person sees."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from zTestSuite import ServerProcess, requires_network, timeout, zTestCase
from zTestSuite._runner_fixtures import RunnerCase


def receive_pid(listener: socket.socket, units: float = 10) -> int:
    """The pid another process sends to ``listener`` (a Unix socket), once it does."""
    listener.settimeout(timeout(units))
    peer, _ = listener.accept()
    with peer:
        peer.settimeout(timeout(units))
        return int(peer.recv(64))


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_exited(pid: int, units: float = 5) -> None:
    """Until ``pid`` has exited: a pidfd becomes readable then (no polling)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        readable, _, _ = select.select([pidfd], [], [], timeout(units))
    finally:
        os.close(pidfd)
    if not readable:
        raise AssertionError(f"process {pid} did not exit in time")


class TestTimeLimits(RunnerCase):
    def test_hung_tests_fail_with_where_they_hung(self) -> None:
        """--timeout fails a hung test with its stack; @time_limit bounds its own test;
        an async test shows the chain of awaits; the run goes on."""
        started = time.monotonic()
        done = self.runner("--suite", "timeouts", "--timeout", "1", "-v")
        self.assertLess(time.monotonic() - started, timeout(10))
        self.assertEqual(done.returncode, 1)
        out = done.stdout
        for test_id, limit in (
            ("timeouts_Test.Slow.test_a_hangs_in_a_lock", "1"),
            ("timeouts_Test.Slow.test_b_own_limit", "0.5"),
            ("timeouts_Test.SlowAsync.test_hangs_awaiting", "1"),
        ):
            self.assertIn(
                f"{test_id}: zTestSuite.timeouts.TestTimedOut: {test_id} ran past its time "
                f"limit of {limit}s\n",
                out,
            )
        self.assertIn(
            f'  File "{self.workspace / "timeouts_Test.py"}", line 9, in block_here\n'
            "    threading.Event().wait()\n",
            out,
        )
        self.assertIn(
            "Task Task-2 was waiting here:\n"
            f'  File "{self.workspace / "timeouts_Test.py"}", line 29, in test_hangs_awaiting\n'
            "    await self.wait_forever()\n"
            f'  File "{self.workspace / "timeouts_Test.py"}", line 26, in wait_forever\n'
            "    await asyncio.Event().wait()\n",
            out,
        )
        self.assertRegex(out, r"\npassed +\d\.\d{3}s timeouts_Test\.Slow\.test_c_after\n")
        self.assertEqual(self.last_line(done), "1 passed, 3 failed, 0 skipped")


class TestParallel(RunnerCase):
    def setUp(self) -> None:
        super().setUp()
        self.marks = self.workspace / "marks"
        self.marks.mkdir()
        os.mkfifo(self.marks / "meet")

    def test_workers_merge_into_one_report(self) -> None:
        """-j 2 runs two suites at once (they meet on a FIFO), the serial one alone,
        and merges results into one closing line, one XML folder and one JSON file."""
        args = ["--suite", "left", "--suite", "right", "--suite", "serial", "--suite", "sample"]
        done = self.runner(
            *args,
            "-j",
            "2",
            "--timeout",
            "20",
            "--xml",
            "reports",
            "--json",
            "run.json",
            env={"MARKS": str(self.marks)},
        )
        self.assertEqual(done.returncode, 1, done.stdout)
        self.assertEqual(self.last_line(done), "5 passed, 3 failed, 1 skipped")
        self.assertIn("\nRun: 9 tests in ", done.stdout)
        self.assertIn(" with 2 workers, pass ratio 62.5%\n", done.stdout)
        self.assertRegex(
            done.stdout, r"\nserial +1 +1 +0 +0 +100\.0% .*\(serial: binds a fixed port\)\n"
        )
        reports = sorted(p.name for p in (self.workspace / "reports").glob("TEST-*.xml"))
        self.assertEqual(
            reports,
            [
                "TEST-left_Test.Overlap.xml",
                "TEST-right_Test.Overlap.xml",
                "TEST-sample_Test.Sample.xml",
                "TEST-serial_Test.Alone.xml",
            ],
        )
        import json

        data = json.loads((self.workspace / "run.json").read_text())
        self.assertEqual([s["name"] for s in data["suites"]], ["sample", "left", "right", "serial"])
        self.assertEqual(data["workers"], 2)

    def test_same_results_as_one_process(self) -> None:
        """The closing line and exit status do not depend on -j."""
        one = self.runner("--suite", "sample", "--suite", "needs", "--suite", "broken")
        two = self.runner("--suite", "sample", "--suite", "needs", "--suite", "broken", "-j", "3")
        self.assertEqual(
            (two.returncode, self.last_line(two)), (one.returncode, self.last_line(one))
        )
        self.assertEqual(self.last_line(two), "2 passed, 4 failed, 2 skipped")

    def test_a_dead_worker_is_a_failure(self) -> None:
        """A worker that dies mid-suite is a failed test naming its status and output."""
        done = self.runner("--suite", "crash", "--suite", "needs", "-j", "2", "--xml", "reports")
        self.assertEqual(done.returncode, 1)
        self.assertIn(
            "FAIL crash: crash_Test (worker)\n" + "-" * 70 + "\n"
            "the worker running suite crash exited with status 3 before it finished; "
            "its last output:\nabout to die\n",
            done.stdout,
        )
        self.assertEqual(self.last_line(done), "1 passed, 1 failed, 1 skipped")
        report = ET.parse(self.workspace / "reports" / "TEST-crash_Test.worker.xml").getroot()
        error = report.find("testcase/error")
        assert error is not None
        self.assertEqual(
            error.get("message"),
            "the worker running suite crash exited with status 3 before it finished",
        )


class TestInterrupt(RunnerCase):
    def interrupt(
        self, signum: int, *args: str, suites: tuple[str, ...] = ("hang", "needs"), after: str = ""
    ) -> tuple[subprocess.Popen[str], str, str]:
        """Run ``suites``; once a process sends its pid (and the output has a line
        starting with ``after``), send ``signum``."""
        listener = socket.socket(socket.AF_UNIX)
        self.addCleanup(listener.close)
        listener.bind(str(self.workspace / "pid.sock"))
        listener.listen(1)
        runner = subprocess.Popen(
            self.command(*(arg for suite in suites for arg in ("--suite", suite)), *args),
            cwd=self.workspace,
            env=self.environ({"PID_SOCKET": str(self.workspace / "pid.sock")}),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.addCleanup(runner.kill)
        child = receive_pid(listener)
        self.assertTrue(pid_alive(child))
        seen = ""
        if after:
            assert runner.stdout is not None
            while not any(line.startswith(after) for line in seen.splitlines()):
                line = runner.stdout.readline()  # bounded by the pid wait above: it runs
                self.assertNotEqual(line, "", f"the run ended before {after!r}: {seen}")
                seen += line
        runner.send_signal(signum)
        out, err = runner.communicate(timeout=timeout(15))
        self.assertFalse(pid_alive(child), "the process the test started outlived the run")
        return runner, seen + out, err

    def check(self, runner: subprocess.Popen[str], out: str) -> None:
        self.assertEqual(runner.returncode, 130, out)
        lines = out.splitlines()
        self.assertEqual(
            lines[-2:],
            [
                "Interrupted during hang_Test.Hang.test_b_hangs; suites not run: none",
                "1 passed, 0 failed, 1 skipped",
            ],
        )

    def test_ctrl_c_stops_cleanly(self) -> None:
        """Ctrl-C stops the hung test, stops its process, and prints what ran."""
        runner, out, err = self.interrupt(signal.SIGINT)
        self.check(runner, out)
        self.assertEqual(err, "")

    def test_ctrl_c_with_workers(self) -> None:
        """Under -j the parent passes Ctrl-C on; the workers stop and report."""
        runner, out, _ = self.interrupt(signal.SIGINT, "-j", "2", after="needs:")
        self.check(runner, out)

    def test_ctrl_c_while_a_worker_imports(self) -> None:
        """A worker stopped before it ran a test leaves its suite "not run", not failed."""
        runner, out, _ = self.interrupt(
            signal.SIGINT, "-j", "2", suites=("sample", "slowimport"), after="sample:"
        )
        self.assertEqual(runner.returncode, 130, out)
        self.assertEqual(
            out.splitlines()[-2:],
            [
                "Interrupted between tests; suites not run: slowimport",
                "2 passed, 3 failed, 1 skipped",
            ],
        )

    def test_sigterm_stops_like_ctrl_c(self) -> None:
        """SIGTERM (a cancelled CI job) stops the run the same way."""
        runner, out, _ = self.interrupt(signal.SIGTERM)
        self.check(runner, out)


PORT_SCRIPT = """
import signal, socket, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
print("child", child.pid, flush=True)
server = socket.create_server(("127.0.0.1", 0))
print("port", server.getsockname()[1], flush=True)
signal.pause()  # serve until stopped
"""


class TestServerProcess(zTestCase):
    @requires_network
    def test_waits_for_a_port_and_stops_the_whole_group(self) -> None:
        """wait_for_port returns once the port accepts; stop ends the process and the
        children it started (its process group)."""
        proc = self.start_process([sys.executable, "-c", PORT_SCRIPT])
        child = int(proc.wait_for(r"^child (\d+)$").group(1))
        port = int(proc.wait_for(r"^port (\d+)$").group(1))
        proc.wait_for_port(port)
        self.assertEqual(proc.stop(), -signal.SIGTERM)
        wait_exited(child)
        self.assertFalse(pid_alive(child))

    def test_a_process_that_ends_early(self) -> None:
        """Waiting on a process that exits fails with its status or output tail."""
        proc = ServerProcess([sys.executable, "-c", "print('bye'); raise SystemExit(4)"])
        self.addCleanup(proc.stop)
        with self.assertRaises(AssertionError) as caught:
            proc.wait_for("^never$")
        self.assertEqual(str(caught.exception), "the process ended before '^never$':\nbye")
        with self.assertRaises(AssertionError) as caught:
            proc.wait_for_port(1)
        self.assertEqual(
            str(caught.exception), "the process ended (status 4) before 127.0.0.1:1 accepted:\nbye"
        )


class TestProcessTails(RunnerCase):
    def test_failure_shows_the_output_tail(self) -> None:
        """A failing test's report ends with the output of the process it started, and
        the process is stopped after the run."""
        pid_file = self.workspace / "pid"
        done = self.runner("--suite", "proc", env={"PID_FILE": str(pid_file)})
        pid = int(pid_file.read_text())
        self.assertIn(
            "AssertionError: the check after starting the server failed\n\n"
            f"--- last lines of {sys.executable} -c import os, time\\nprint('server ready'",
            done.stdout,
        )
        self.assertIn(f"… (pid {pid}, running) ---\nserver ready\npid {pid}\n\n", done.stdout)
        self.assertFalse(pid_alive(pid))


class TestProgress(RunnerCase):
    def test_one_line_per_suite_without_a_terminal(self) -> None:
        """Into a pipe, the run prints one line per finished suite."""
        done = self.runner("--suite", "sample", "--suite", "needs")
        self.assertRegex(
            done.stdout,
            r"^sample: 2 passed, 3 failed, 1 skipped in \d\.\d{3}s\n"
            r"needs: 0 passed, 0 failed, 1 skipped in \d\.\d{3}s\n={70}\n",
        )

    def test_verbose_is_one_line_per_test(self) -> None:
        """-v prints each test as it ends: outcome, duration, id and message."""
        done = self.runner("--suite", "sample", "-v")
        lines = [re.sub(r"\d+\.\d{3}s", "T", line) for line in done.stdout.splitlines()[:6]]
        self.assertEqual(
            lines,
            [
                "failed     T sample_Test.Sample.test_error: RuntimeError: boom",
                "failed     T sample_Test.Sample.test_fail: AssertionError: 1 != 2",
                "passed     T sample_Test.Sample.test_pass",
                "passed     T sample_Test.Sample.test_samples",
                "skipped    T sample_Test.Sample.test_skip: not today",
                "failed     T sample_Test.Sample.test_subtests: (n=2): AssertionError: 2 != 1",
            ],
        )

    def test_live_line_on_a_terminal(self) -> None:
        """On a terminal one line is redrawn in place; failures get a line of their own."""
        leader, follower = pty.openpty()
        with subprocess.Popen(
            self.command("--suite", "sample"),
            cwd=self.workspace,
            env=self.environ(),
            stdout=follower,
            stderr=follower,
        ) as proc:
            os.close(follower)
            chunks = []
            while True:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal's other side closed
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            proc.wait(timeout(10))
        os.close(leader)
        text = b"".join(chunks).decode()
        self.assertRegex(
            text, r"\r\x1b\[K\[0/6\] 0 failed, \d\.\d{3}s \| sample_Test\.Sample\.test_error"
        )
        self.assertIn("\r\x1b[KFAILED sample_Test.Sample.test_error: RuntimeError: boom\r\n", text)
        self.assertRegex(text, r"\r\x1b\[K\[6/6\] 3 failed")
        self.assertTrue(text.endswith("2 passed, 3 failed, 1 skipped\r\n"), text[-200:])
