"""Metric curves as server-side SVG: no JavaScript, no CDN, readable in any browser."""

from __future__ import annotations

import math
from dataclasses import dataclass

WIDTH, HEIGHT = 360, 170
LEFT, RIGHT, TOP, BOTTOM = 46, 12, 10, 26  # room for the tick labels


def nice_step(span: float, count: int = 4) -> float:
    """A 1-2-5 step that cuts `span` into about `count` intervals."""
    if span <= 0 or not math.isfinite(span):
        return 1.0
    raw = span / count
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw * 0.999)


def nice_ticks(lo: float, hi: float, count: int = 4, *, integer: bool = False) -> list[float]:
    """Round values from at or below `lo` to at or above `hi`, a nice step apart."""
    step = nice_step(hi - lo, count)
    if integer:
        step = max(1.0, round(step))
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    return [k * step for k in range(first, last + 1)]


def format_number(value, step: float | None = None) -> str:
    """A number as a person reads it: as many decimals as `step` (a tick spacing, a
    resolution) needs, else 4 significant digits; never 0.06999999999999999 or -4e+02."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    x = float(value)
    if not math.isfinite(x):
        return str(x)
    if x == int(x) and abs(x) < 1e15 and (step is None or step >= 1):
        return f"{int(x):,}" if abs(x) >= 1e4 else str(int(x))
    if step is not None and step > 0:
        return f"{x:.{max(0, -math.floor(math.log10(step) + 1e-9))}f}"
    if 1e-3 <= abs(x) < 1e6:
        digits = max(0, 3 - math.floor(math.log10(abs(x))))
        return f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return f"{x:.3g}"


@dataclass(frozen=True)
class Chart:
    name: str
    points: str  # SVG polyline "x,y x,y ..."
    last_step: int
    last_value: str  # formatted
    y_ticks: list[tuple[float, str]]  # (y pixel, label)
    x_ticks: list[tuple[float, str]]  # (x pixel, label)
    log: bool = False  # the y axis is logarithmic
    flat: bool = False  # every value equal: one tick, the value
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM


def line_chart(name: str, series: list[tuple[int, float]]) -> Chart:
    """Scale (step, value) points into the plot box, with nice ticks on both axes; a positive
    series that spans three decades or more is drawn on a log axis. Assumes a non-empty series."""
    xs = [s for s, _ in series]
    ys = [v for _, v in series]
    log = min(ys) > 0 and max(ys) / min(ys) >= 1000
    ts = [math.log10(v) for v in ys] if log else ys  # what is drawn
    lo, hi = min(ts), max(ts)
    flat = lo == hi
    if flat:  # drawn flat through the middle, its one tick the value
        ticks = [lo]
        lo, hi = lo - 1, hi + 1
    elif log:
        ticks = [float(k) for k in range(math.floor(lo), math.ceil(hi) + 1)]
        lo, hi = ticks[0], ticks[-1]
    else:
        ticks = nice_ticks(lo, hi)
        lo, hi = ticks[0], ticks[-1]
    top, bottom, left, right = TOP, HEIGHT - BOTTOM, LEFT, WIDTH - RIGHT
    x_ticks = nice_ticks(min(xs), max(xs), 4, integer=True) if max(xs) > min(xs) else [xs[0]]
    x0, x1 = x_ticks[0], x_ticks[-1]

    def px(step: float) -> float:
        return (
            left + (step - x0) / ((x1 - x0) or 1) * (right - left)
            if x1 > x0
            else (left + right) / 2
        )

    def py(t: float) -> float:
        return bottom - (t - lo) / (hi - lo) * (bottom - top)

    step = None if flat else (1.0 if log else ticks[1] - ticks[0])
    y_labels = [format_number(10**t) if log else format_number(t, step) for t in ticks]
    return Chart(
        name=name,
        points=" ".join(f"{px(s):.1f},{py(t):.1f}" for s, t in zip(xs, ts, strict=True)),
        last_step=xs[-1],
        last_value=format_number(ys[-1]),
        y_ticks=[(round(py(t), 1), label) for t, label in zip(ticks, y_labels, strict=True)],
        x_ticks=[(round(px(s), 1), format_number(s)) for s in x_ticks],
        log=log,
        flat=flat,
    )


@dataclass(frozen=True)
class IntervalRow:
    label: str
    y: float
    x: float | None  # point estimate
    x_low: float | None
    x_high: float | None
    text: str


@dataclass(frozen=True)
class IntervalChart:
    rows: list[IntervalRow]
    width: int
    height: int
    left: int
    right: int
    ticks: list[tuple[float, str]]  # (x, label)


def interval_chart(
    rows: list[tuple[str, float | None, float | None, float | None]],
    *,
    lo: float,
    hi: float,
    width: int = 520,
    row_height: int = 22,
    left: int = 150,
    digits: int = 2,
) -> IntervalChart:
    """A forest plot: one row per (label, value, low, high), a dot with its
    interval as whiskers on a shared axis from lo to hi, widened to nice ticks. Missing values
    leave the row empty; values outside the axis are clamped to the edge."""
    right = width - 70
    values = nice_ticks(lo, hi, 5)  # the axis runs from tick to tick
    lo, hi = values[0], values[-1]
    step = values[1] - values[0] if len(values) > 1 else None
    span = (hi - lo) or 1.0

    def x_of(v: float | None) -> float | None:
        if v is None:
            return None
        return left + (min(max(v, lo), hi) - lo) / span * (right - left)

    out = []
    for i, (label, value, low, high) in enumerate(rows):
        text = "n/a" if value is None else f"{value:.{digits}f}"
        out.append(
            IntervalRow(label, 14 + i * row_height, x_of(value), x_of(low), x_of(high), text)
        )
    ticks = [(x_of(t), format_number(t, step)) for t in values]
    return IntervalChart(out, width, 24 + len(rows) * row_height, left, right, ticks)
