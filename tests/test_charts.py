"""Charts and numbers as people read them: nice ticks, sensible precision, flat series drawn
flat with their value, log axes for quantities spanning decades, results as a table."""

import math

import pytest

from jobs import services
from jobs.charts import format_number, line_chart, nice_ticks
from jobs.models import JobStatus
from jobs.templatetags.numbers import result_rows
from tests.factories import JobFactory


@pytest.mark.parametrize(
    ("value", "step", "shown"),
    [
        (0.06999999999999999, None, "0.07"),
        (-400.0, None, "-400"),
        (-400.0, 100.0, "-400"),
        (0.123456, None, "0.1235"),
        (12345.0, None, "12,345"),
        (1.2e-05, None, "1.2e-05"),
        (3, None, "3"),
        (0.5, 0.05, "0.50"),
        (0.07, 0.001, "0.070"),
        (None, None, "—"),
        (float("nan"), None, "nan"),
        ("text", None, "text"),
        (True, None, "True"),
    ],
)
def test_format_number(value, step, shown):
    assert format_number(value, step) == shown


def test_nice_ticks_cover_the_range_with_a_round_step():
    assert nice_ticks(0.061, 0.079) == pytest.approx([0.06, 0.065, 0.07, 0.075, 0.08])
    assert nice_ticks(-380, 20) == pytest.approx([-400, -300, -200, -100, 0, 100])
    assert nice_ticks(0, 7, integer=True) == [0, 2, 4, 6, 8]
    assert nice_ticks(1, 3, integer=True) == [1, 2, 3]  # never a fractional step


def test_a_chart_has_distinct_readable_ticks_and_a_flat_series_shows_its_value():
    chart = line_chart("kl", [(0, 0.061), (5, 0.079), (10, 0.07)])
    labels = [label for _, label in chart.y_ticks]
    assert labels == ["0.060", "0.065", "0.070", "0.075", "0.080"]
    assert len(set(labels)) == len(labels) and chart.last_value == "0.07"
    assert [label for _, label in chart.x_ticks] == ["0", "5", "10"]
    flat = line_chart("lr", [(1, 0.001), (2, 0.001), (3, 0.001)])
    assert flat.flat and [label for _, label in flat.y_ticks] == ["0.001"]
    heights = {float(p.split(",")[1]) for p in flat.points.split()}
    assert heights == {flat.y_ticks[0][0]}  # drawn flat, through its tick


def test_a_quantity_spanning_decades_gets_a_log_axis():
    chart = line_chart("loss", [(0, 100.0), (1, 1.0), (2, 0.01)])
    assert chart.log and [label for _, label in chart.y_ticks] == ["0.01", "0.1", "1", "10", "100"]
    ys = [float(p.split(",")[1]) for p in chart.points.split()]
    assert ys[0] < ys[1] < ys[2] and math.isclose(ys[1] - ys[0], ys[2] - ys[1])
    assert not line_chart("loss", [(0, 10.0), (1, 1.0)]).log  # one decade: linear


def test_a_result_is_a_table_of_readable_values():
    rows = result_rows({"overall": {"overall": 0.06999999999999999, "consistency": None},
                        "candidates": 12345, "curve": [0.1 + 0.2] * 14, "name": "x"})  # fmt: skip
    assert rows == [("overall.overall", "0.07"), ("overall.consistency", "—"),
                    ("candidates", "12,345"),
                    ("curve", "[" + ", ".join(["0.3"] * 12) + ", … 2 more]"), ("name", "x")]  # fmt: skip


@pytest.mark.django_db
def test_the_job_page_shows_readable_charts_and_results(researcher_client):
    job = JobFactory(status=JobStatus.SUCCEEDED, result={"loss": 0.06999999999999999})
    for step, value in enumerate([0.5, 0.25, 0.125, 0.07]):
        services.job_log_metrics(job_id=job.pk, step=step, values={"loss": value, "lr": 0.001})
    page = researcher_client.get(f"/jobs/{job.pk}/").content.decode()
    assert 'id="job-result"' in page and '<th scope="row">loss</th><td>0.07</td>' in page
    assert "0.06999999999999999" not in page and "e+0" not in page
    assert ">0.001</text>" in page and "constant" in page  # the flat lr curve


def test_interval_chart_ticks_are_round_numbers_never_exponents():
    from jobs.charts import interval_chart

    chart = interval_chart([("a", 120.0, -380.0, 610.0)], lo=-412.3, hi=1432.7, digits=0)
    labels = [label for _, label in chart.ticks]
    assert labels == ["-500", "0", "500", "1000", "1500"]
    unit = interval_chart([("a", 0.5, 0.4, 0.6)], lo=0.0, hi=1.0)
    assert [label for _, label in unit.ticks] == ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]
