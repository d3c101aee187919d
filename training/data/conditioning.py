"""Training examples tagged by the request parser: slot-prefixed queries, wrong-occasion rows dropped.

The public data (and any imported corpus) has rows whose greeting names another occasion than its
request ("元宵" answered with "中秋快乐"); training on them teaches the very mistake the serve-time
guards reject, so they are dropped and counted.
"""
from __future__ import annotations

from collections.abc import Sequence

from generation.conditioning import model_query
from generation.guards import wrong_occasions
from generation.requests import occasions_named, parse_request


def condition_examples(examples: Sequence[tuple[str, str]], prompt_format: str) -> tuple[list[tuple[str, str]], dict]:
    """(conditioned examples, counts). With ``prompt_format="query"`` only the filter applies."""
    kept, dropped, with_occasion = [], 0, 0
    for query, response in examples:
        slots = parse_request(query)
        if slots.occasion is not None:
            with_occasion += 1
            if wrong_occasions(slots.occasion, occasions_named(response)):
                dropped += 1
                continue
        kept.append((model_query(query, prompt_format, slots), response))
    return kept, {"prompt_format": prompt_format, "examples_in": len(examples), "with_occasion": with_occasion,
                  "dropped_wrong_occasion": dropped}
