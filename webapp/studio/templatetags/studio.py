"""Filters for the studio's cards: slot and guard names in Chinese and English, correction links."""
from urllib.parse import urlencode

from django import template

register = template.Library()

SLOT_NAMES = {"occasion": "场合 occasion", "addressee": "对象 addressee", "tone": "风格 tone", "length": "篇幅 length"}
GUARD_NAMES = {"occasion": "场合 occasion", "age": "年龄 age", "addressee": "对象 addressee", "length": "篇幅 length",
               "repeat": "重复字 repeated characters", "copy": "与范文太像 too close to a training text",
               "distinct": "与另一条相同 same as another card"}


@register.filter
def slot_name(name: str) -> str:
    return SLOT_NAMES.get(name, name)


@register.filter
def guard_name(name: str) -> str:
    return GUARD_NAMES.get(name, name)


@register.filter
def urlencode_fields(fields: dict) -> str:
    return urlencode({name: value for name, value in fields.items() if value})
