"""How a request becomes the model's query, for training and serving alike.

A checkpoint records its ``prompt_format`` in ``zhufu.json``: ``"query"`` (the request text as
typed, the format of checkpoints trained before request slots) or ``"slots"`` (the parsed slots as
an explicit prefix, ``场合：中秋｜对象：猫｜长度：一句｜细节：…``; the free text alone when nothing was
recognised). Training and serving call the same ``model_query``, so they cannot drift apart.
"""
from __future__ import annotations

from generation.requests import RequestSlots, parse_request

PROMPT_FORMATS = ("query", "slots")
DEFAULT_FORMAT = "query"  # checkpoints without the field predate slots


class PromptFormatError(ValueError):
    pass


def check_format(prompt_format: str) -> str:
    if prompt_format not in PROMPT_FORMATS:
        raise PromptFormatError(f"未知的提示格式 unknown prompt_format {prompt_format!r}; valid: {', '.join(PROMPT_FORMATS)}")
    return prompt_format


def model_query(request: str, prompt_format: str, slots: RequestSlots | None = None) -> str:
    """The text that goes after the prompt template for ``request``."""
    check_format(prompt_format)
    request = request.strip()
    if prompt_format == "query":
        return request
    slots = slots if slots is not None else parse_request(request)
    return slots.to_prefix() or request
