"""`{% load alignment_state %}{% alignment_empty_state %}`: what the alignment page shows while no judge
has judged the rated greetings: why the table is empty and the action that fills it (a button that
starts the judge_rated job for the active judge, or the page to go to first)."""
from django import template

from webapp.annotation.alignment import rated_greetings
from webapp.judges import services
from webapp.judges.models import JudgeVersion

register = template.Library()


@register.inclusion_tag("annotation/_alignment_empty.html", takes_context=True)
def alignment_empty_state(context):
    return {"csrf_token": context.get("csrf_token"), "rated": rated_greetings().count(),
            "active": services.active_judge(), "registered": JudgeVersion.objects.exists()}


@register.simple_tag
def rated_greetings_count() -> int:
    """How many greetings people rated (the judges page says it beside the link to alignment)."""
    return rated_greetings().count()
