"""zBifrost_Performance: a regression check on zBifrost's CPU per request, not a timed test.

One run of ``bench/bridge.py`` (its servers and its load generator each a process of
their own) measures zBifrost and the bare websockets server side by side, and the
test records the ratio of their server CPU per request. CPU per request stays
comparable on a busy machine when rates do not, and the bound is loose (worse than
2x fails; the issue's target is 1x), so the noise of a shared machine cannot make it
flaky while a real regression, such as a per-request task or one system call per
frame again, still shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from zTestSuite import record_metric, requires_network

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bridge.py"
SHAPES = ("10x1", "10x16")  # strict round trips and 16 requests in flight, 10 clients
BOUND = 2.0


@unittest.skipUnless(BENCH.exists(), "bench/bridge.py is in the source tree only")
class TestCpuPerRequest(unittest.TestCase):
    @requires_network
    def test_zbifrost_within_twice_the_bare_servers_cpu_per_request(self) -> None:
        """zBifrost's server CPU per request is under 2x the bare websockets server's,
        at 10 clients with 1 and with 16 requests in flight, every reply matched."""
        with tempfile.TemporaryDirectory(prefix="ztest-perf-") as folder:
            report = Path(folder, "bench.json")
            command = [sys.executable, str(BENCH), "--servers", "zbifrost,bare",
                       "--shapes", ",".join(SHAPES), "--repeats", "1", "--seconds", "1.5",
                       "--no-memory", "--json", str(report)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, timeout=300)
            self.assertEqual(done.returncode, 0, done.stderr[-2000:])
            figures = json.loads(report.read_text())["load"]
        for shape in SHAPES:
            with self.subTest(shape=shape):
                ours, bare = figures[f"zbifrost {shape}"], figures[f"bare {shape}"]
                self.assertEqual((ours["mismatched"], bare["mismatched"]), (0, 0))
                self.assertGreater(ours["rate"], 0)
                self.assertGreater(bare["rate"], 0)
                ratio = ours["cpu_us"] / bare["cpu_us"]
                record_metric(f"cpu_per_request_ratio_{shape}", ratio, "x")
                record_metric(f"zbifrost_cpu_per_request_{shape}", ours["cpu_us"], "us")
                record_metric(f"bare_cpu_per_request_{shape}", bare["cpu_us"], "us")
                self.assertLess(ratio, BOUND, f"zBifrost {ours} against bare {bare}")
