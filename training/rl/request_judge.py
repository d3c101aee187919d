"""A judge that reads the request behind the model's prompt, and GRPO's principled reward.

A checkpoint trained with ``prompt_format: slots`` is fed ``model_query(request)`` (the slot
prefix 场合：中秋｜对象：猫…), but the principled judge must read the request as the writer typed
it. ``RequestJudge`` maps each prompt back to its request before scoring, so GRPO and
``evaluate_generation`` keep calling ``judge.scores(prompts, responses)`` unchanged.

With ``fit_weight`` (GRPO's reward) the score is ``(1 - w) * score + w * request_fit``: the
principled judge's overall score (under 0.5 whenever a principle fails) plus its request-fit mark,
so a sample that answers the request better wins within its group even when both pass.
Evaluation keeps ``fit_weight=0``: its pass rate is the judge's own Good/Bad.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

from generation.conditioning import model_query


def prompts_for(requests: Iterable[str], prompt_format: str) -> dict[str, str]:
    """{model prompt: request}; requests sharing a prompt keep the first one (the model cannot
    tell them apart anyway)."""
    out: dict[str, str] = {}
    for request in requests:
        request = request.strip()
        if request:
            out.setdefault(model_query(request, prompt_format), request)
    return out


class RequestJudge:
    """`judge` (a principled judge: scores / evaluate_many with a request_fit rubric) behind prompts."""

    def __init__(self, judge, requests_by_prompt: dict[str, str], fit_weight: float = 0.0):
        if not 0.0 <= fit_weight <= 1.0:
            raise ValueError(f"fit_weight must be in [0, 1], got {fit_weight}")
        self.judge, self.requests, self.fit_weight = judge, dict(requests_by_prompt), fit_weight
        self.version = getattr(judge, "version", str(judge))

    def requests_of(self, prompts: Sequence[str]) -> list[str]:
        return [self.requests.get(p, p) for p in prompts]

    def evaluate_many(self, prompts: Sequence[str], responses: Sequence[str]):
        return self.judge.evaluate_many(self.requests_of(prompts), list(responses))

    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        if not self.fit_weight:
            return self.judge.scores(self.requests_of(prompts), list(responses))
        w = self.fit_weight
        return [(1 - w) * v.score + w * float((v.rubric or {}).get("request_fit", 0.0))
                for v in self.evaluate_many(prompts, responses)]
