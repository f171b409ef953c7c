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
