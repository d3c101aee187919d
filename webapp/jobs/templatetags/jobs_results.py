"""`{% load jobs_results %}{% with view=job.result|result_view %}`: a job's result as tables people can
read (webapp.jobs.results): metric rows with problems flagged, sample greetings as rows."""
from django import template

from webapp.jobs import results

register = template.Library()


@register.filter(name="result_view")
def result_view(result) -> dict:
    return results.present(result)


@register.filter(name="result_rows")
def result_rows(result) -> list[tuple[str, str]]:
    return [(row.name, row.value) for row in results.present(result)["rows"]]
