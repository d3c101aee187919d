"""Filters for the studio's cards: slot, guard and principle names in Chinese and English, the
judge's note, correction links."""
from urllib.parse import urlencode

from django import template

register = template.Library()

SLOT_NAMES = {"occasion": "场合 occasion", "addressee": "对象 addressee", "tone": "风格 tone", "length": "篇幅 length"}
GUARD_NAMES = {"occasion": "场合 occasion", "age": "年龄 age", "addressee": "对象 addressee", "length": "篇幅 length",
               "repeat": "重复字 repeated characters", "copy": "与范文太像 too close to a training text",
               "distinct": "与另一条相同 same as another card"}


# The principled judge's principles (training.judges.principled.PRINCIPLES_V1), short for a card.
PRINCIPLE_NAMES = {"request_fit": "契合请求 fits the request", "coherence": "连贯得体 coherent", "preference": "整体质量 quality",
                   "fluency": "流畅 fluent", "creativity": "不落俗套 not stock phrases"}


@register.filter
def principle_name(name: str) -> str:
    return PRINCIPLE_NAMES.get(name, name)


@register.filter
def verdict_note(record: dict) -> str:
    """The verdict's reason when the marks do not already say it: a Bad verdict with no failed
    principle (empty, not Chinese, below the overall bar), or a verdict the offline executors gave
    because the LLM endpoint failed."""
    if not record or record.get("error"):
        return ""
    failed = [m for m in record.get("principles") or [] if not m.get("passed")]
    reason = record.get("reason") or ""
    if record.get("verdict") != "Good" and not failed:
        return reason
    return reason.split("；", 1)[0] if reason.startswith("LLM ") else ""


@register.filter
def slot_name(name: str) -> str:
    return SLOT_NAMES.get(name, name)


@register.filter
def guard_name(name: str) -> str:
    return GUARD_NAMES.get(name, name)


@register.filter
def urlencode_fields(fields: dict) -> str:
    return urlencode({name: value for name, value in fields.items() if value})
