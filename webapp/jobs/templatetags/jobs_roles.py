"""`{% load jobs_roles %}{% if user|has_role:"admin" %}`: roles.has_role in templates (the nav's Train link)."""
from django import template

from webapp.core import roles

register = template.Library()


@register.filter(name="has_role")
def has_role(user, role: str) -> bool:
    return roles.has_role(user, role)
