"""`{% load jobs_results %}{% for key, value in job.result|result_rows %}`: a job's result as rows
people can read (nested dicts flattened one level, floats to 4 significant digits) instead of a
Python dict dump."""
from django import template

register = template.Library()

LONGEST_VALUE = 120  # characters; per-layer lists can be long


@register.filter(name="result_rows")
def result_rows(result) -> list[tuple[str, str]]:
    if not isinstance(result, dict):
        return [("result", readable(result))]
    rows = []
    for key, value in result.items():
        if isinstance(value, dict):
            rows.extend((f"{key}.{inner}", readable(v)) for inner, v in value.items())
        else:
            rows.append((str(key), readable(value)))
    return rows


def readable(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if 1e4 <= abs(value) < 1e12 else f"{value:.4g}"  # 17,184 tokens/s, not 1.718e+04
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(readable(v) for v in value) + "]"
        return text if len(text) <= LONGEST_VALUE else text[: LONGEST_VALUE - 1] + "…"
    return str(value)
