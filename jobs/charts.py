"""Metric curves as server-side SVG: no JavaScript, no CDN, readable in any browser."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT, PAD = 360, 160, 28


@dataclass(frozen=True)
class Chart:
    name: str
    points: str  # SVG polyline "x,y x,y ..."
    last_step: int
    last_value: float
    y_min: float
    y_max: float
    x_min: int
    x_max: int
    width: int = WIDTH
    height: int = HEIGHT
    pad: int = PAD


def line_chart(name: str, series: list[tuple[int, float]]) -> Chart:
    """Scale (step, value) points into the plot box. Assumes a non-empty series."""
    xs = [s for s, _ in series]
    ys = [v for _, v in series]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y0 == y1:  # a flat line sits in the middle
        y0, y1 = y0 - 1, y1 + 1
    span_x = (x1 - x0) or 1
    inner_w, inner_h = WIDTH - 2 * PAD, HEIGHT - 2 * PAD
    coords = (
        f"{PAD + (s - x0) / span_x * inner_w:.1f},{HEIGHT - PAD - (v - y0) / (y1 - y0) * inner_h:.1f}"
        for s, v in series
    )
    return Chart(
        name=name,
        points=" ".join(coords),
        last_step=xs[-1],
        last_value=ys[-1],
        y_min=min(ys),
        y_max=max(ys),
        x_min=x0,
        x_max=x1,
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
    interval as whiskers on a shared axis from lo to hi. Missing values leave the
    row empty; values outside [lo, hi] are clamped to the edge."""
    right = width - 70
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
    ticks = [(x_of(lo + span * k / 4), f"{lo + span * k / 4:.{digits}g}") for k in range(5)]
    return IntervalChart(out, width, 24 + len(rows) * row_height, left, right, ticks)
