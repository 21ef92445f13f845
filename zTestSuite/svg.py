"""Inline SVG charts for the HTML report, as markup strings.

The report must open from ``file://`` under a CSP that forbids scripts and fetches, so
the charts are plain SVG drawn here: no JavaScript, no fonts, no library. Everything is
a pure function of its arguments, and every text that reaches the markup goes through
``escape``, because labels are test ids, metric names and units a plugin chose.

Scaling never divides by zero: an empty chart says "no data", zero or negative values
get no bar, and a distribution whose values are all equal falls into one bin.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "Bin",
    "bar_chart",
    "escape",
    "format_value",
    "histogram",
    "histogram_bins",
    "truncate",
]

SVG_NS = "http://www.w3.org/2000/svg"
FONT = "system-ui, sans-serif"
BAR_COLOUR = "#3b6fb6"
MARKER_COLOURS = {"p50": "#1a7f37", "p99": "#cf222e"}
LABEL_CHARS = 34  # what fits the label column at 12px
MAX_BINS = 30

# Characters XML 1.0 forbids and HTML calls parse errors (C0/C1 controls other than tab,
# newline and carriage return), and lone surrogates that UTF-8 cannot encode: process
# output tails carry both (ANSI colours, undecodable bytes).
_UNWRITABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")


def escape(text: str) -> str:
    """Text made safe for an element or a quoted attribute of HTML and SVG alike."""
    return html.escape(_UNWRITABLE.sub("\ufffd", str(text)), quote=True)


def truncate(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters, the last being an ellipsis when cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "\u2026"


def format_value(value: float) -> str:
    """A number as the text summary prints it: six significant digits."""
    return f"{value:.6g}"


def _with_unit(value: float, unit: str) -> str:
    return f"{format_value(value)} {unit}" if unit else format_value(value)


def _num(value: float) -> str:
    """A coordinate: two decimals are below a pixel and keep the markup short."""
    return f"{value:.2f}"


def _fraction(value: float, low: float, high: float) -> float:
    """Where ``value`` lies between ``low`` and ``high`` (0..1), without overflowing
    on huge spans or dividing by a span that underflowed to zero."""
    span = high - low
    if not math.isfinite(span):
        span, offset = high / 2 - low / 2, value / 2 - low / 2
    else:
        offset = value - low
    if span <= 0:
        return 0.5
    return min(1.0, max(0.0, offset / span))


def _svg(width: int, height: int, css_class: str, label: str, body: list[str]) -> str:
    return (
        f'<svg xmlns="{SVG_NS}" class="{css_class}" role="img" aria-label="{escape(label)}" '
        f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'font-family="{FONT}" font-size="12">' + "".join(body) + "</svg>"
    )


def _no_data(width: int, css_class: str, label: str) -> str:
    text = f'<text class="no-data" x="{width // 2}" y="20" text-anchor="middle">no data</text>'
    return _svg(width, 32, css_class, f"{label}: no data", [text])


def bar_chart(labels: Sequence[str], values: Sequence[float], unit: str = "", *, title: str) -> str:
    """Horizontal bars, one per label, scaled to the largest value; ``title`` names
    the chart for screen readers. Each bar's tooltip holds the full label and value."""
    if len(labels) != len(values):
        raise ValueError(f"bar_chart got {len(labels)} labels for {len(values)} values")
    width, row, label_width, value_width = 720, 22, 230, 110
    if not values:
        return _no_data(width, "chart bar-chart", title)
    plot = width - label_width - value_width
    top = max((v for v in values if math.isfinite(v)), default=0.0)
    body = []
    for index, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 4 + index * row
        scale = value / top if top > 0 and math.isfinite(value) and value > 0 else 0.0
        length = plot * scale
        shown = _with_unit(value, unit)
        body.append(
            f'<g class="bar"><title>{escape(f"{label}: {shown}")}</title>'
            f'<text class="label" x="{label_width - 8}" y="{y + 14}" text-anchor="end">'
            f"{escape(truncate(label))}</text>"
            f'<rect x="{label_width}" y="{y + 2}" width="{_num(length)}" height="{row - 6}" '
            f'fill="{BAR_COLOUR}"/>'
            f'<text class="value" x="{_num(label_width + length + 6)}" y="{y + 14}">'
            f"{escape(shown)}</text></g>"
        )
    return _svg(width, 8 + len(values) * row, "chart bar-chart", title, body)


@dataclass(frozen=True)
class Bin:
    """Values from ``start`` up to ``end`` (the last bin includes its end)."""

    start: float
    end: float
    count: int


def histogram_bins(values: Sequence[float], count: int | None = None) -> list[Bin]:
    """Equal-width bins from min to max: ``count`` of them, or the square root of the
    number of values (at most ``MAX_BINS``). All-equal values make one bin."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return []
    low, high = finite[0], finite[-1]
    if count is None:
        count = min(MAX_BINS, max(1, math.ceil(math.sqrt(len(finite)))))
    if count < 1:
        raise ValueError(f"a histogram needs at least one bin, not {count}")
    if low == high:
        return [Bin(low, high, len(finite))]
    counts = [0] * count
    for value in finite:
        counts[min(count - 1, int(_fraction(value, low, high) * count))] += 1
    edges = [low] + [low * (1 - i / count) + high * (i / count) for i in range(1, count)]
    edges.append(high)
    return [Bin(edges[i], edges[i + 1], counts[i]) for i in range(count)]


def histogram(
    values: Sequence[float],
    unit: str = "",
    *,
    title: str,
    markers: Sequence[tuple[str, float]] = (),
) -> str:
    """The distribution of ``values`` as bars over [min, max], with a labelled line per
    marker (``[("p50", 12.0), ("p99", 30.5)]``) and min/max under the axis."""
    width, height = 720, 240
    left, right, top, bottom = 44, 16, 36, 40  # marker labels go above the plot
    bins = histogram_bins(values)
    if not bins:
        return _no_data(width, "chart histogram", title)
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = bins[0].start, bins[-1].end
    tallest = max(b.count for b in bins)
    bar_w = plot_w / len(bins)
    base = top + plot_h
    body = []
    for index, found in enumerate(bins):
        bar_h = plot_h * found.count / tallest
        closing = "]" if index == len(bins) - 1 else ")"
        tip = (
            f"[{format_value(found.start)}, {format_value(found.end)}{closing}"
            f"{' ' + unit if unit else ''}: {found.count}"
        )
        body.append(
            f'<g class="bin"><title>{escape(tip)}</title>'
            f'<rect x="{_num(left + index * bar_w + 1)}" y="{_num(base - bar_h)}" '
            f'width="{_num(max(bar_w - 2, 1))}" height="{_num(bar_h)}" fill="{BAR_COLOUR}"/>'
            "</g>"
        )
    body.append(
        f'<line class="axis" x1="{left}" y1="{base}" x2="{width - right}" y2="{base}" '
        'stroke="#555"/>'
        f'<text class="count" x="{left - 6}" y="{top + 10}" text-anchor="end">{tallest}</text>'
        f'<text class="count" x="{left - 6}" y="{base}" text-anchor="end">0</text>'
        f'<text class="min" x="{left}" y="{base + 16}">'
        f"min {escape(_with_unit(low, unit))}</text>"
        f'<text class="max" x="{width - right}" y="{base + 16}" text-anchor="end">'
        f"max {escape(_with_unit(high, unit))}</text>"
    )
    for index, (name, value) in enumerate(markers):
        x = left + plot_w * _fraction(value, low, high)
        colour = MARKER_COLOURS.get(name, "#6e40c9")
        anchor, dx = ("end", -4) if x > left + plot_w / 2 else ("start", 4)
        body.append(
            f'<g class="marker marker-{escape(name)}">'
            f'<line x1="{_num(x)}" y1="{top}" x2="{_num(x)}" y2="{base}" stroke="{colour}" '
            'stroke-width="2" stroke-dasharray="4 3"/>'
            f'<text x="{_num(x + dx)}" y="{12 + 14 * index}" text-anchor="{anchor}" '
            f'fill="{colour}">{escape(name)} {escape(_with_unit(value, unit))}</text></g>'
        )
    body.append(
        f'<text class="caption" x="{left + plot_w / 2:.2f}" y="{height - 6}" '
        f'text-anchor="middle">{sum(b.count for b in bins)} samples'
        f"{escape(' (' + unit + ')') if unit else ''}</text>"
    )
    return _svg(width, height, "chart histogram", title, body)
