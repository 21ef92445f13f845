"""The ``--html`` report: its SVG charts, the page read as markup, and the page in Chromium.

The page is also well-formed XML, so most tests read it with ``xml.etree`` and assert
exact texts; ``html.parser`` takes the census of tags a browser would see. The browser
test opens the written file from ``file://`` and checks that it runs nothing, fetches
nothing and shows what the markup says.
"""

from __future__ import annotations

import os
import unittest
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from typing import Any

from zTestSuite import requires_browser, timeout, zTestCase
from zTestSuite.browser import launch
from zTestSuite.harness import artifact_path
from zTestSuite.html_report import CSP, render_html, write_html
from zTestSuite.metrics import Metric, Samples
from zTestSuite.records import RunReport, SuiteRecord, TestRecord
from zTestSuite.svg import Bin, bar_chart, escape, histogram, histogram_bins, truncate

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<script>alert(1)</script>"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BIFROST = "zBifrost \u2728 \u00dcn\u00efcode"
# The cells of its row in the suites table.
BIFROST_ROW = [
    BIFROST,
    'plugin "\u00fc" & co',
    "1",
    "1",
    "0",
    "0",
    "100.0%",
    "2.000s",
    "binds port 56891",
]
ODD_METRIC = "<b>\"q\"&'x'</b>"
FAILURE_DETAILS = (
    f"Traceback (most recent call last):\n  {HOSTILE} & more\nAssertionError: 'a & b' != '<b>'"
)


def sample_report() -> RunReport:
    """Two suites with every outcome, metrics, samples and hostile text; one empty."""
    auth = SuiteRecord(
        name="zAuth",
        module="zTestSuite.zAuth_Test",
        origin="zTestSuite",
        duration=1.25,
        tests=[
            TestRecord(
                "zTestSuite.zAuth_Test.TestSignIn.test_rate",
                "zAuth",
                "passed",
                0.5,
                metrics=[
                    Metric("sign-ins", 1500.0, "msg/s"),
                    Metric("round trip", 2.5, "ms"),
                    Metric("bytes", 42.0),
                ],
            ),
            TestRecord(
                "zTestSuite.zAuth_Test.TestSignIn.test_wrong_password",
                "zAuth",
                "failed",
                0.25,
                message="AssertionError: 'a & b' != '<b>'",
                details=FAILURE_DETAILS,
            ),
            TestRecord(
                "zTestSuite.zAuth_Test.TestSignIn.test_later",
                "zAuth",
                "skipped",
                message="requires a browser: none here",
            ),
        ],
    )
    bifrost = SuiteRecord(
        name=BIFROST,
        module="zTestSuite.zBifrost_Test",
        origin='plugin "\u00fc" & co',
        duration=2.0,
        serial="binds port 56891",
        tests=[
            TestRecord(
                "zTestSuite.zBifrost_Test.TestLatency.test_ping_\u00e9_\U0001f680",
                BIFROST,
                "passed",
                1.5,
                message="line one\nline two",
                metrics=[Metric("sign-ins", 500.0, "msg/s"), Metric(ODD_METRIC, 7.0, "ms")],
                samples=[
                    Samples("ping", (1.0, 2.0, 2.0, 3.0, 10.0), "ms"),
                    Samples("sizes", (1.0, 2.0), "bytes"),
                ],
            )
        ],
    )
    empty = SuiteRecord("zEmpty", "zTestSuite.zEmpty_Test", "zTestSuite")
    return RunReport(
        started="2025-06-01T12:00:00+00:00",
        duration=3.5,
        suites=[auth, bifrost, empty],
        argv=["-j", "2", "--html", "out/report.html"],
        interrupted=True,
        not_run=["zServer", "zWalker"],
        workers=2,
    )


def text(element: ET.Element) -> str:
    return "".join(element.itertext())


def one(element: ET.Element, path: str) -> ET.Element:
    """The element at ``path`` below ``element``; AssertionError naming it when absent."""
    found = element.find(path)
    if found is None:
        raise AssertionError(f"nothing at {path!r} in <{element.tag}>")
    return found


def rows(table: ET.Element) -> list[list[str]]:
    return [[text(cell) for cell in row.findall("td")] for row in table.findall("./tbody/tr")]


class TagCensus(HTMLParser):
    """Every start tag and its attributes, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


class ReportTestCase(zTestCase):
    def tree(self, report: RunReport) -> ET.Element:
        page = render_html(report)
        self.assertTrue(page.startswith("<!DOCTYPE html>\n"))
        return ET.fromstring(page.removeprefix("<!DOCTYPE html>\n"))

    def by_id(self, root: ET.Element, element_id: str) -> ET.Element:
        return one(root, f".//*[@id='{element_id}']")

    def svg(self, markup: str) -> ET.Element:
        root = ET.fromstring(markup)
        self.assertEqual(root.tag, f"{SVG}svg")
        self.assertEqual(root.get("role"), "img")
        return root


class TestTextHelpers(unittest.TestCase):
    def test_escape_quotes_markup_and_replaces_unwritable_characters(self) -> None:
        """escape() quotes markup and quotes, and swaps controls and lone surrogates for U+FFFD."""
        self.assertEqual(
            escape(f"{HOSTILE}&\"'"), "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#x27;"
        )
        self.assertEqual(escape("a\x1b[31mb\ud800\tc\n"), "a\ufffd[31mb\ufffd\tc\n")

    def test_truncate_keeps_short_text_and_cuts_long_text_with_an_ellipsis(self) -> None:
        """truncate() leaves text of the limit alone and cuts longer text to the limit."""
        self.assertEqual(truncate("abcde", 5), "abcde")
        self.assertEqual(truncate("abcdef", 5), "abcd\u2026")
        self.assertEqual(truncate("\U0001f680" * 40), "\U0001f680" * 33 + "\u2026")


class TestHistogramBins(unittest.TestCase):
    def test_bins_are_equal_width_and_the_last_includes_the_maximum(self) -> None:
        """Four bins over 0..8 count 0,1,1 / 2 / none / 8."""
        self.assertEqual(
            histogram_bins([0.0, 1.0, 1.0, 2.0, 8.0], 4),
            [Bin(0.0, 2.0, 3), Bin(2.0, 4.0, 1), Bin(4.0, 6.0, 0), Bin(6.0, 8.0, 1)],
        )

    def test_default_bin_count_is_the_square_root_capped_at_thirty(self) -> None:
        """5 values make 3 bins, 100 make 10 and 10000 make 30."""
        for size, expected in ((5, 3), (100, 10), (10000, 30)):
            with self.subTest(size=size):
                self.assertEqual(len(histogram_bins([float(v) for v in range(size)])), expected)

    def test_degenerate_inputs(self) -> None:
        """No values make no bin; one value or equal values make one bin."""
        self.assertEqual(histogram_bins([]), [])
        self.assertEqual(histogram_bins([7.0]), [Bin(7.0, 7.0, 1)])
        self.assertEqual(histogram_bins([5.0, 5.0, 5.0]), [Bin(5.0, 5.0, 3)])
        self.assertEqual(histogram_bins([0.0, 0.0]), [Bin(0.0, 0.0, 2)])

    def test_extreme_spans_do_not_overflow_or_divide_by_zero(self) -> None:
        """A span beyond the largest float and one of two subnormals both bin."""
        self.assertEqual(
            histogram_bins([-1.7e308, 1.7e308], 2), [Bin(-1.7e308, 0.0, 1), Bin(0.0, 1.7e308, 1)]
        )
        self.assertEqual([b.count for b in histogram_bins([1.5e-323, 2e-323], 2)], [1, 1])

    def test_zero_bins_is_refused(self) -> None:
        """Asking for zero bins is a ValueError that says so."""
        with self.assertRaisesRegex(ValueError, "^a histogram needs at least one bin, not 0$"):
            histogram_bins([1.0, 2.0], 0)


class TestBarChart(ReportTestCase):
    def widths(self, values: list[float]) -> list[str]:
        root = self.svg(bar_chart([f"t{i}" for i in range(len(values))], values, "s", title="T"))
        return [rect.get("width", "") for rect in root.iter(f"{SVG}rect")]

    def test_bars_scale_to_the_largest_value(self) -> None:
        """The largest bar spans the 380px plot; the others are in proportion."""
        self.assertEqual(self.widths([1.0, 2.0, 4.0]), ["95.00", "190.00", "380.00"])

    def test_edge_values_render_without_dividing_by_zero(self) -> None:
        """Zeros, one value, equal, huge, tiny and negative values all get a width."""
        table = [
            ([0.0, 0.0], ["0.00", "0.00"]),
            ([3.0], ["380.00"]),
            ([2.0, 2.0], ["380.00", "380.00"]),
            ([8.5e307, 1.7e308], ["190.00", "380.00"]),
            ([5e-324, 1e-323], ["190.00", "380.00"]),
            ([-5.0, 5.0], ["0.00", "380.00"]),
            ([-5.0], ["0.00"]),
        ]
        for values, expected in table:
            with self.subTest(values=values):
                self.assertEqual(self.widths(values), expected)

    def test_labels_are_escaped_truncated_and_complete_in_the_tooltip(self) -> None:
        """A long hostile label is cut with an ellipsis; its <title> has it whole."""
        label = f"{HOSTILE} & a label far longer than the column"
        markup = bar_chart([label], [1.5], "ms", title='Latency "x" & <y>')
        self.assertNotIn("<script", markup)
        root = self.svg(markup)
        self.assertEqual(root.get("aria-label"), 'Latency "x" & <y>')
        self.assertEqual(text(one(root, f"{SVG}g/{SVG}title")), f"{label}: 1.5 ms")
        labels = [text(t) for t in root.iter(f"{SVG}text")]
        self.assertEqual(labels, [f"{label[:33]}\u2026", "1.5 ms"])

    def test_no_values_says_no_data(self) -> None:
        """An empty chart is a small SVG that says "no data"."""
        root = self.svg(bar_chart([], [], title="Nothing"))
        self.assertEqual([text(t) for t in root.iter(f"{SVG}text")], ["no data"])
        self.assertEqual(root.get("aria-label"), "Nothing: no data")

    def test_labels_and_values_must_pair_up(self) -> None:
        """Two labels for one value is a ValueError naming both counts."""
        with self.assertRaisesRegex(ValueError, "^bar_chart got 2 labels for 1 values$"):
            bar_chart(["a", "b"], [1.0], title="T")


class TestHistogram(ReportTestCase):
    def markers(self, root: ET.Element) -> list[tuple[str, str, str]]:
        return [
            (g.get("class", ""), one(g, f"{SVG}line").get("x1", ""), text(g))
            for g in root.iter(f"{SVG}g")
            if "marker" in g.get("class", "")
        ]

    def test_bins_axis_labels_and_percentile_markers(self) -> None:
        """Three bins, min and max under the axis, p50 and p99 lines where they fall."""
        markup = histogram(
            [1.0, 2.0, 2.0, 3.0, 10.0], "ms", title="ping", markers=[("p50", 2.0), ("p99", 10.0)]
        )
        root = self.svg(markup)
        self.assertEqual(len(list(root.iter(f"{SVG}rect"))), 3)
        self.assertEqual(
            [text(t) for t in root.findall(f"{SVG}g/{SVG}title")],
            ["[1, 4) ms: 4", "[4, 7) ms: 0", "[7, 10] ms: 1"],
        )
        self.assertEqual(text(one(root, f"{SVG}text[@class='min']")), "min 1 ms")
        self.assertEqual(text(one(root, f"{SVG}text[@class='max']")), "max 10 ms")
        self.assertEqual(
            self.markers(root),
            [
                ("marker marker-p50", "117.33", "p50 2 ms"),
                ("marker marker-p99", "704.00", "p99 10 ms"),
            ],
        )

    def test_equal_values_fill_one_bin_with_markers_in_the_middle(self) -> None:
        """All-equal values draw one full-width bar; the markers sit at its centre."""
        root = self.svg(histogram([4.0] * 3, "ms", title="t", markers=[("p50", 4.0)]))
        self.assertEqual([r.get("width") for r in root.iter(f"{SVG}rect")], ["658.00"])
        self.assertEqual(self.markers(root), [("marker marker-p50", "374.00", "p50 4 ms")])

    def test_one_zero_value_and_extreme_values_render(self) -> None:
        """A single zero, a span past the largest float and subnormals each draw bars."""
        for values, bars in (([0.0], 1), ([-1.7e308, 1.7e308], 2), ([5e-324, 1e-323], 2)):
            with self.subTest(values=values):
                root = self.svg(histogram(values, title="t", markers=[("p50", values[0])]))
                self.assertEqual(len(list(root.iter(f"{SVG}rect"))), bars)

    def test_no_values_says_no_data(self) -> None:
        """An empty distribution is a small SVG that says "no data"."""
        root = self.svg(histogram([], "ms", title="t"))
        self.assertEqual([text(t) for t in root.iter(f"{SVG}text")], ["no data"])


class TestRenderHtml(ReportTestCase):
    def test_header_states_the_run(self) -> None:
        """The header has the closing line, start, duration, pass ratio, workers, argv."""
        root = self.tree(sample_report())
        expected = {
            "closing-line": "2 passed, 1 failed, 1 skipped",
            "started": "2025-06-01T12:00:00+00:00",
            "duration": "3.500s",
            "pass-ratio": "66.7%",
            "workers": "2",
            "total": "4",
            "arguments": "-j 2 --html out/report.html",
        }
        for element_id, value in expected.items():
            with self.subTest(id=element_id):
                self.assertEqual(text(self.by_id(root, element_id)), value)
        self.assertEqual(
            self.by_id(root, "closing-line").get("class"), "closing-line status-interrupted"
        )
        self.assertEqual(
            text(one(root, "./head/title")), "zTestSuite report: 2 passed, 1 failed, 1 skipped"
        )

    def test_interrupted_run_lists_the_suites_not_run(self) -> None:
        """An interrupted run says so and lists the suites that never started."""
        root = self.tree(sample_report())
        notice = self.by_id(root, "interrupted")
        self.assertEqual(notice.get("role"), "alert")
        self.assertEqual([text(li) for li in self.by_id(root, "not-run")], ["zServer", "zWalker"])

    def test_page_has_a_strict_csp_and_nothing_that_runs_or_fetches(self) -> None:
        """The CSP meta is there; no script, link, img, iframe, src or href anywhere."""
        report = sample_report()
        census = TagCensus()
        census.feed(render_html(report))
        tags = [tag for tag, _ in census.tags]
        self.assertEqual(
            [tag for tag in tags if tag in ("script", "link", "img", "iframe", "object", "a")], []
        )
        self.assertEqual([attrs for _, attrs in census.tags if {"src", "href"} & attrs.keys()], [])
        self.assertIn(
            ("meta", {"http-equiv": "Content-Security-Policy", "content": CSP}), census.tags
        )
        self.assertEqual(CSP, "default-src 'none'; style-src 'unsafe-inline'; img-src data:")
        self.assertEqual(tags.count("svg"), 5)

    def test_hostile_text_is_escaped_and_reads_back_whole(self) -> None:
        """Failure text with <script> and & is escaped in the page and reads back exactly."""
        page = render_html(sample_report())
        self.assertNotIn("<script", page)
        self.assertIn("  &lt;script&gt;alert(1)&lt;/script&gt; &amp; more\n", page)
        root = self.tree(sample_report())
        failures = root.findall(".//details[@class='failure']")
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0].get("id"), "failure-1-2")
        self.assertEqual(
            text(one(failures[0], "summary")),
            "zAuth: zTestSuite.zAuth_Test.TestSignIn.test_wrong_password",
        )
        self.assertEqual(text(one(failures[0], "pre")), FAILURE_DETAILS)

    def test_metric_summary_table(self) -> None:
        """One row per throughput or latency metric: count, min, median and max."""
        table = self.by_id(self.tree(sample_report()), "metric-summary")
        self.assertEqual(
            rows(table),
            [
                ["throughput", "sign-ins", "msg/s", "2", "500", "1000", "1500"],
                ["latency", ODD_METRIC, "ms", "1", "7", "7", "7"],
                ["latency", "ping", "ms", "5", "1", "2", "10"],
                ["latency", "round trip", "ms", "1", "2.5", "2.5", "2.5"],
            ],
        )

    def test_suites_table(self) -> None:
        """One row per suite, with counts, success rate, duration and serial reason."""
        table = self.by_id(self.tree(sample_report()), "suites")
        self.assertEqual(
            [text(th) for th in table.findall("./thead/tr/th")],
            [
                "Suite",
                "Origin",
                "Tests",
                "Passed",
                "Failed",
                "Skipped",
                "Success rate",
                "Duration",
                "Serial because",
            ],
        )
        self.assertEqual(
            rows(table),
            [
                ["zAuth", "zTestSuite", "3", "1", "1", "1", "50.0%", "1.250s", ""],
                BIFROST_ROW,
                ["zEmpty", "zTestSuite", "0", "0", "0", "0", "n/a", "0.000s", ""],
            ],
        )

    def test_tests_per_suite(self) -> None:
        """Each suite lists its tests; the empty suite says it has none."""
        root = self.tree(sample_report())
        self.assertEqual(
            [text(h3) for h3 in root.findall(".//section[@class='suite']/h3")],
            ["zAuth", BIFROST, "zEmpty"],
        )
        auth = one(self.by_id(root, "suite-1"), ".//table")
        self.assertEqual(
            rows(auth),
            [
                [
                    "TestSignIn.test_rate",
                    "passed",
                    "0.500s",
                    "",
                    "sign-ins=1500 msg/sround trip=2.5 msbytes=42",
                ],
                [
                    "TestSignIn.test_wrong_password",
                    "failed",
                    "0.250s",
                    "AssertionError: 'a & b' != '<b>'",
                    "",
                ],
                ["TestSignIn.test_later", "skipped", "0.000s", "requires a browser: none here", ""],
            ],
        )
        outcomes = [td.get("class") for td in auth.findall("./tbody/tr/td[2]")]
        self.assertEqual(
            outcomes,
            ["outcome outcome-passed", "outcome outcome-failed", "outcome outcome-skipped"],
        )
        ping = self.by_id(root, "test-2-1")
        self.assertEqual(text(one(ping, "td[@class='message']")), "line one\nline two")
        self.assertEqual(
            [text(li) for li in ping.iter("li")],
            [
                "sign-ins=500 msg/s",
                f"{ODD_METRIC}=7 ms",
                "ping: n=5 p50=2 p90=10 p99=10 max=10 ms",
                "sizes: n=2 p50=1 p90=2 p99=2 max=2 bytes",
            ],
        )
        self.assertEqual(text(one(self.by_id(root, "suite-3"), "p")), "No tests.")

    def test_charts(self) -> None:
        """Durations per suite, a chart per throughput or latency metric, a latency histogram."""
        root = self.tree(sample_report())
        self.assertEqual(len(list(root.iter(f"{SVG}svg"))), 5)
        durations = one(self.by_id(root, "chart-durations"), f"{SVG}svg")
        self.assertEqual(
            [text(t) for t in durations.iter(f"{SVG}title")],
            ["zAuth: 1.25 s", f"{BIFROST}: 2 s", "zEmpty: 0 s"],
        )
        charts = self.by_id(root, "charts")
        self.assertEqual(
            [text(c) for c in charts.findall("figure/figcaption")],
            [
                "Throughput: sign-ins (msg/s)",
                f"Latency: {ODD_METRIC} (ms)",
                "Latency: round trip (ms)",
                f"{BIFROST}: TestLatency.test_ping_\u00e9_\U0001f680 \u2014 "
                "ping: n=5 p50=2 p90=10 p99=10 max=10 ms",
            ],
        )
        throughput = one(charts, "figure/" + f"{SVG}svg")
        self.assertEqual(
            [text(t) for t in throughput.iter(f"{SVG}title")],
            [
                "zAuth: TestSignIn.test_rate: 1500 msg/s",
                f"{BIFROST}: TestLatency.test_ping_\u00e9_\U0001f680: 500 msg/s",
            ],
        )
        self.assertEqual(len(charts.findall("figure[@class='chart histogram-chart']")), 1)

    def test_empty_report(self) -> None:
        """Nothing ran: 0 counts, pass ratio n/a, no chart, and each section says so."""
        root = self.tree(RunReport(started="2025-06-01T12:00:00+00:00"))
        self.assertEqual(text(self.by_id(root, "closing-line")), "0 passed, 0 failed, 0 skipped")
        self.assertEqual(text(self.by_id(root, "pass-ratio")), "n/a")
        self.assertIsNone(root.find(".//*[@id='interrupted']"))
        self.assertEqual(len(list(root.iter(f"{SVG}svg"))), 0)
        self.assertEqual(rows(self.by_id(root, "suites")), [])
        self.assertEqual(
            [text(p) for p in root.iter("p") if p.get("class") == "empty"],
            [
                "No throughput or latency metrics were recorded.",
                "No suites ran.",
                "No suites ran.",
                "No failures.",
                "No throughput or latency metrics were recorded.",
            ],
        )

    def test_all_skipped_has_no_ratio(self) -> None:
        """When every test skipped, the pass ratio and the success rate are n/a."""
        skipped = TestRecord("m.T.test_a", "zS", "skipped", message="no")
        report = RunReport(started="s", suites=[SuiteRecord("zS", "m", "o", 0.5, [skipped])])
        root = self.tree(report)
        self.assertEqual(text(self.by_id(root, "pass-ratio")), "n/a")
        self.assertEqual(rows(self.by_id(root, "suites"))[0][6], "n/a")
        self.assertEqual(len(list(root.iter(f"{SVG}svg"))), 1)

    def test_interrupted_before_any_suite_started(self) -> None:
        """An interruption with nothing left to run says "none"."""
        root = self.tree(RunReport(started="s", interrupted=True))
        self.assertEqual(
            text(self.by_id(root, "interrupted")),
            "Interrupted: the run was stopped before every suite ran.Suites not run: none.",
        )


class TestWriteHtml(ReportTestCase):
    def test_writes_the_page_and_leaves_no_temporary_file(self) -> None:
        """write_html replaces the file with the whole page, creating its folder."""
        path = self.workspace / "out" / "report.html"
        path.parent.mkdir()
        path.write_text("old", encoding="utf-8")
        report = sample_report()
        write_html(report, path)
        self.assertEqual(path.read_text(encoding="utf-8"), render_html(report))
        self.assertEqual(os.listdir(path.parent), ["report.html"])
        fresh = self.workspace / "new" / "deeper" / "report.html"
        write_html(report, fresh)
        self.assertEqual(os.listdir(fresh.parent), ["report.html"])

    def test_undecodable_process_output_still_writes(self) -> None:
        """A lone surrogate or an ANSI escape in failure text becomes U+FFFD on disk."""
        failed = TestRecord("m.T.test_a", "zS", "failed", details="bad \udcff byte \x1b[0m")
        path = self.workspace / "report.html"
        write_html(RunReport(started="s", suites=[SuiteRecord("zS", "m", "o", 0, [failed])]), path)
        self.assertIn("<pre>bad \ufffd byte \ufffd[0m</pre>", path.read_text(encoding="utf-8"))


@requires_browser
class TestReportInChromium(zTestCase):
    playwright: Any
    browser: Any

    @classmethod
    def setUpClass(cls) -> None:
        from playwright.sync_api import sync_playwright

        cls.playwright = sync_playwright().start()
        cls.addClassCleanup(cls.playwright.stop)
        cls.browser = launch(cls.playwright)
        cls.addClassCleanup(cls.browser.close)

    def open(self, report: RunReport) -> tuple[Any, dict[str, list[str]]]:
        """The report written to the workspace and opened from file://, with a record
        of console errors, page errors, dialogs and requests for anything else."""
        path = self.workspace / "report.html"
        write_html(report, path)
        url = path.as_uri()
        page = self.browser.new_page()
        self.addCleanup(page.close)
        page.set_default_timeout(timeout(10) * 1000)
        seen: dict[str, list[str]] = {"errors": [], "requests": [], "dialogs": []}

        def on_console(message: Any) -> None:
            if message.type == "error":
                seen["errors"].append(message.text)

        def on_request(request: Any) -> None:
            if request.url != url:
                seen["requests"].append(request.url)

        def on_dialog(dialog: Any) -> None:
            seen["dialogs"].append(dialog.message)
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda error: seen["errors"].append(str(error)))
        page.on("request", on_request)
        page.on("dialog", on_dialog)
        page.goto(url)
        return page, seen

    def test_page_shows_the_run_and_fetches_nothing(self) -> None:
        """In Chromium: no error, no request but the file, exact texts, five charts."""
        page, seen = self.open(sample_report())
        self.assertEqual(
            page.locator("#closing-line").inner_text(), "2 passed, 1 failed, 1 skipped"
        )
        self.assertEqual(page.locator("#pass-ratio").inner_text(), "66.7%")
        self.assertEqual(page.locator("#not-run li").all_inner_texts(), ["zServer", "zWalker"])
        self.assertEqual(page.locator("svg").count(), 5)
        self.assertEqual(page.locator("svg[role=img]:visible").count(), 5)
        self.assertEqual(
            page.locator("#suites tbody tr").nth(1).locator("td").all_inner_texts(),
            BIFROST_ROW,
        )
        screenshot = artifact_path("ztest-report.png")
        page.screenshot(path=str(screenshot), full_page=True)
        self.assertEqual(screenshot.read_bytes()[:8], PNG_SIGNATURE)
        self.assertEqual(seen, {"errors": [], "requests": [], "dialogs": []})

    def test_failure_details_open_and_show_the_hostile_text_as_text(self) -> None:
        """Clicking a failure's summary shows its text; the <script> in it never runs."""
        page, seen = self.open(sample_report())
        details = page.locator("details.failure pre")
        self.assertFalse(details.is_visible())
        page.locator("details.failure summary").click()
        self.assertTrue(details.is_visible())
        self.assertEqual(details.inner_text(), FAILURE_DETAILS)
        self.assertEqual(seen, {"errors": [], "requests": [], "dialogs": []})


if __name__ == "__main__":
    unittest.main()
