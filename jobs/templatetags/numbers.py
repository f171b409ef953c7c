"""Numbers and job results as people read them (jobs.charts.format_number everywhere)."""

from __future__ import annotations

from django import template

from jobs.charts import format_number

register = template.Library()

MAX_ITEMS = 12  # of a list shown in one cell


@register.filter
def num(value):
    """{{ x|num }}: 0.07, not 0.06999999999999999; 12,345; 1.2e-05; "—" for None."""
    return format_number(value)


@register.filter
def result_rows(result) -> list[tuple[str, str]]:
    """A job's result as (key, value) rows: nested mappings flattened to dotted keys, numbers
    formatted, lists shown inline (the first MAX_ITEMS)."""
    rows: list[tuple[str, str]] = []

    def text(value) -> str:
        if isinstance(value, list | tuple):
            shown = ", ".join(text(v) for v in value[:MAX_ITEMS])
            more = len(value) - MAX_ITEMS
            return f"[{shown}{f', … {more} more' if more > 0 else ''}]"
        if isinstance(value, dict):
            return "{" + ", ".join(f"{k}: {text(v)}" for k, v in value.items()) + "}"
        return format_number(value)

    def walk(prefix: str, value, depth: int) -> None:
        if isinstance(value, dict) and value and depth < 3:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)
        else:
            rows.append((prefix or "result", text(value)))

    walk("", result, 0)
    return rows
