"""`{% load judges_alignment %}{% alignment_empty_state %}`: what the alignment page shows while no judge
has judged the rated greetings: why the table is empty and the action that fills it (a button that
starts the judge_rated job for the active judge, or the page to go to first)."""
from django import template

from webapp.judges import services
from webapp.judges.models import JudgeVersion

register = template.Library()


@register.inclusion_tag("judges/_alignment_empty.html", takes_context=True)
def alignment_empty_state(context):
    return {"csrf_token": context.get("csrf_token"), "rated": services.rated_greetings().count(),
            "active": services.active_judge(), "registered": JudgeVersion.objects.exists()}
