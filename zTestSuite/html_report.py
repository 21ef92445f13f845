"""The ``--html FILE`` report: one self-contained page written from a ``RunReport``.

The page is opened from ``file://``, attached to CI runs and mailed around, so it
carries everything inline (style and SVG charts) and runs no script at all: its own
Content-Security-Policy forbids scripts and every fetch, so even a test id that
smuggled markup past ``escape`` could not run or call home. Everything a test, a
plugin or a process wrote (ids, messages, failure text, metric names and units) goes
through ``escape``.

Stable hooks for tests and for people who style it: ``#run`` (header, with
``#closing-line``, ``#pass-ratio``, ``#interrupted``), ``#metric-summary``,
``#durations``, ``#suites``, ``#tests`` (a ``section.suite`` per suite, ids
``suite-N``, rows ``test-N-M``), ``#failures`` (``details.failure``) and ``#charts``;
outcome cells have the class ``outcome-<outcome>``.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .progress import format_duration
from .records import (
    FORMAT,
    RunReport,
    SuiteRecord,
    TestRecord,
    metric_summaries,
    percent,
)
from .reportfiles import write_atomically
from .svg import bar_chart, escape, format_value, histogram

__all__ = ["CSP", "render_html", "write_html"]

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
CHART_KINDS = ("throughput", "latency")

STYLE = """
:root { color-scheme: light; --passed: #1a7f37; --failed: #cf222e; --skipped: #9a6700; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 78rem;
       padding: 1rem 1.5rem 3rem; color: #1f2328; background: #fff; }
h1 { font-size: 1.5rem; margin: 0.5rem 0; }
h2 { font-size: 1.2rem; margin: 2rem 0 0.6rem; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1rem; margin: 1.2rem 0 0.4rem; }
#run { border-bottom: 2px solid #d0d7de; padding-bottom: 0.8rem; }
.closing-line { font-size: 1.3rem; font-weight: 600; margin: 0.3rem 0 0.6rem; }
.status-passed { color: var(--passed); }
.status-failed, .status-interrupted { color: var(--failed); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem;
           margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; }
.notice { border: 1px solid var(--failed); background: #fff5f5; padding: 0.4rem 0.9rem;
          margin-top: 0.8rem; border-radius: 4px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 0.3rem 0 0.8rem; }
th, td { border: 1px solid #d0d7de; padding: 0.25rem 0.55rem; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f6f8fa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.outcome { font-weight: 600; }
.outcome-passed { color: var(--passed); }
.outcome-failed { color: var(--failed); }
.outcome-skipped { color: var(--skipped); }
td.message { white-space: pre-wrap; max-width: 32rem; }
ul.metrics { margin: 0; padding-left: 1rem; }
details.failure { border: 1px solid #d0d7de; border-left: 4px solid var(--failed);
                  margin: 0.4rem 0; padding: 0.3rem 0.7rem; }
details.failure summary { cursor: pointer; overflow-wrap: anywhere; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa;
      padding: 0.6rem; font: 12px/1.4 ui-monospace, monospace; }
figure { margin: 0.6rem 0 1.2rem; }
figcaption { font-weight: 600; margin-bottom: 0.2rem; overflow-wrap: anywhere; }
svg { max-width: 100%; height: auto; display: block; }
.empty { color: #59636e; font-style: italic; }
footer { margin-top: 2.5rem; color: #59636e; font-size: 12px; }
"""


def _td(text: str, css: str = "", title: str = "") -> str:
    attrs = (f' class="{css}"' if css else "") + (f' title="{escape(title)}"' if title else "")
    return f"<td{attrs}>{escape(text)}</td>"


def _num(value: int | str) -> str:
    return _td(str(value), "number")


def _table(attrs: str, headers: list[str], rows: list[str]) -> str:
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    return (
        f'<div class="scroll"><table {attrs}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{escape(text)}</p>'


def _pre(text: str) -> str:
    # an HTML parser drops one newline right after <pre>: keep the text's own
    return "<pre>" + ("\n" if text.startswith("\n") else "") + escape(text) + "</pre>"


def _header(report: RunReport) -> str:
    counts = report.counts
    status = "failed" if counts["failed"] else "passed"
    if report.interrupted:
        status = "interrupted"
    facts = [
        (
            "Started",
            f'<time id="started" datetime="{escape(report.started)}">'
            f"{escape(report.started)}</time>",
        ),
        ("Duration", f'<span id="duration">{escape(format_duration(report.duration))}</span>'),
        ("Pass ratio", f'<span id="pass-ratio">{escape(percent(report.pass_ratio))}</span>'),
        ("Workers", f'<span id="workers">{report.workers}</span>'),
        ("Tests", f'<span id="total">{sum(counts.values())}</span>'),
        ("Arguments", f'<code id="arguments">{escape(shlex.join(report.argv))}</code>'),
    ]
    dl = "".join(f"<dt>{escape(term)}</dt><dd>{value}</dd>" for term, value in facts)
    parts = [
        '<header id="run"><h1>zTestSuite report</h1>',
        f'<p id="closing-line" class="closing-line status-{status}">'
        f"{escape(report.closing_line())}</p>",
        f'<dl class="facts">{dl}</dl>',
    ]
    if report.interrupted:
        parts.append(
            '<div id="interrupted" class="notice" role="alert"><p><strong>Interrupted:'
            "</strong> the run was stopped before every suite ran.</p>"
        )
        if report.not_run:
            items = "".join(f"<li>{escape(name)}</li>" for name in report.not_run)
            parts.append(f'<p>Suites not run:</p><ul id="not-run">{items}</ul>')
        else:
            parts.append("<p>Suites not run: none.</p>")
        parts.append("</div>")
    parts.append("</header>")
    return "".join(parts)


def _metric_summary(report: RunReport) -> str:
    rows = [
        f'<tr class="metric metric-{kind}">'
        + _td(kind)
        + _td(row["name"])
        + _td(row["unit"])
        + _num(row["count"])
        + "".join(_num(format_value(row[key])) for key in ("min", "median", "max"))
        + "</tr>"
        for kind, found in metric_summaries(report.tests).items()
        for row in found
    ]
    body = (
        _table(
            'id="metric-summary"',
            ["Kind", "Metric", "Unit", "Count", "Min", "Median", "Max"],
            rows,
        )
        if rows
        else _empty("No throughput or latency metrics were recorded.")
    )
    return f'<section id="metrics"><h2>Throughput and latency</h2>{body}</section>'


def _durations(report: RunReport) -> str:
    if report.suites:
        chart = bar_chart(
            [suite.name for suite in report.suites],
            [suite.duration for suite in report.suites],
            "s",
            title="Duration per suite, in seconds",
        )
        body = f'<figure class="chart" id="chart-durations">{chart}</figure>'
    else:
        body = _empty("No suites ran.")
    return f'<section id="durations"><h2>Duration per suite</h2>{body}</section>'


def _suites(report: RunReport) -> str:
    rows = []
    for suite in report.suites:
        counts = suite.counts
        rows.append(
            '<tr class="suite-row">'
            + _td(suite.name, "name", title=suite.module)
            + _td(suite.origin, "origin")
            + _num(len(suite.tests))
            + "".join(_num(counts[key]) for key in ("passed", "failed", "skipped"))
            + _num(percent(suite.success_rate))
            + _num(format_duration(suite.duration))
            + _td(suite.serial, "serial")
            + "</tr>"
        )
    headers = ["Suite", "Origin", "Tests", "Passed", "Failed", "Skipped"]
    headers += ["Success rate", "Duration", "Serial because"]
    table = _table('id="suites"', headers, rows)
    return f'<section id="suites-section"><h2>Suites</h2>{table}</section>'


def _metrics_cell(test: TestRecord) -> str:
    items = [f'<li class="metric">{escape(str(metric))}</li>' for metric in test.metrics]
    items += [f'<li class="samples">{escape(str(samples))}</li>' for samples in test.samples]
    listed = f'<ul class="metrics">{"".join(items)}</ul>' if items else ""
    return f'<td class="metrics">{listed}</td>'


def _suite_tests(index: int, suite: SuiteRecord) -> str:
    heading = f'<section class="suite" id="suite-{index}"><h3>{escape(suite.name)}</h3>'
    if not suite.tests:
        return f"{heading}{_empty('No tests.')}</section>"
    rows = [
        f'<tr class="test" id="test-{index}-{number}">'
        + _td(test.name, "name", title=test.id)
        + _td(test.outcome, f"outcome outcome-{escape(test.outcome)}")
        + _num(format_duration(test.duration))
        + _td(test.message, "message")
        + _metrics_cell(test)
        + "</tr>"
        for number, test in enumerate(suite.tests, 1)
    ]
    table = _table('class="tests"', ["Test", "Outcome", "Duration", "Message", "Metrics"], rows)
    return f"{heading}{table}</section>"


def _tests(report: RunReport) -> str:
    parts = [_suite_tests(index, suite) for index, suite in enumerate(report.suites, 1)]
    body = "".join(parts) or _empty("No suites ran.")
    return f'<section id="tests"><h2>Tests</h2>{body}</section>'


def _failures(report: RunReport) -> str:
    parts = []
    for index, suite in enumerate(report.suites, 1):
        for number, test in enumerate(suite.tests, 1):
            if test.outcome != "failed":
                continue
            summary = f"{test.suite}: {test.id}"
            parts.append(
                f'<details class="failure" id="failure-{index}-{number}">'
                f"<summary>{escape(summary)}</summary>"
                f"{_pre(test.details or test.message or '(no details recorded)')}</details>"
            )
    body = "".join(parts) or _empty("No failures.")
    return f'<section id="failures"><h2>Failures</h2>{body}</section>'


def _metric_charts(report: RunReport) -> list[str]:
    """One bar chart per throughput or latency metric (name and unit), a bar per
    recording, in the order ``metric_summaries`` lists them."""
    grouped: dict[tuple[str, str, str], tuple[list[str], list[float]]] = {}
    for test in report.tests:
        for metric in test.metrics:
            if metric.kind in CHART_KINDS:
                labels, values = grouped.setdefault(
                    (metric.kind, metric.name, metric.unit), ([], [])
                )
                labels.append(f"{test.suite}: {test.name}")
                values.append(metric.value)
    figures = []
    order = sorted(grouped, key=lambda key: (CHART_KINDS.index(key[0]), key[1], key[2]))
    for kind, name, unit in order:
        labels, values = grouped[(kind, name, unit)]
        caption = f"{kind.capitalize()}: {name}" + (f" ({unit})" if unit else "")
        chart = bar_chart(labels, values, unit, title=caption)
        figures.append(
            f'<figure class="chart metric-chart {kind}"><figcaption>{escape(caption)}'
            f"</figcaption>{chart}</figure>"
        )
    return figures


def _histograms(report: RunReport) -> list[str]:
    figures = []
    for test in report.tests:
        for samples in test.samples:
            if samples.kind != "latency" or not samples.values:
                continue
            found = samples.summary()
            caption = f"{test.suite}: {test.name} \u2014 {samples}"
            chart = histogram(
                samples.values,
                samples.unit,
                title=f"Distribution of {samples.name} in {test.name}",
                markers=[("p50", found["p50"]), ("p99", found["p99"])],
            )
            figures.append(
                f'<figure class="chart histogram-chart"><figcaption>{escape(caption)}'
                f"</figcaption>{chart}</figure>"
            )
    return figures


def _charts(report: RunReport) -> str:
    bars, histograms = _metric_charts(report), _histograms(report)
    parts = ['<section id="charts"><h2>Throughput and latency per test</h2>']
    if not bars and not histograms:
        parts.append(_empty("No throughput or latency metrics were recorded."))
    parts += bars
    if histograms:
        parts.append('<h3 id="distributions">Latency distributions</h3>')
        parts += histograms
    parts.append("</section>")
    return "".join(parts)


def render_html(report: RunReport) -> str:
    """The whole page. It is also well-formed XML (void elements are closed, only
    XML's five entities are used), which is how the tests read it."""
    title = f"zTestSuite report: {report.closing_line()}"
    return "".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8" />',
            f'<meta http-equiv="Content-Security-Policy" content="{escape(CSP)}" />',
            '<meta name="viewport" content="width=device-width, initial-scale=1" />',
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
            _header(report),
            "<main>",
            _metric_summary(report),
            _durations(report),
            _suites(report),
            _tests(report),
            _failures(report),
            _charts(report),
            "</main>",
            f"<footer>Written by zTestSuite ({escape(FORMAT)}).</footer>",
            "</body></html>\n",
        ]
    )


def write_html(report: RunReport, path: Path) -> None:
    write_atomically(path, render_html(report))
