"""What the engine hands back: a StreamEvent per text delta while it steps, a RequestOutput (its
candidates' texts, tokens and finish reasons) per finished request, and PromptTooLongError for a
prompt that can never fit the context."""
from __future__ import annotations

from dataclasses import dataclass

from .sampler import InvalidRequestError
from .scheduler import Request


class PromptTooLongError(InvalidRequestError):
    pass


@dataclass(frozen=True)
class StreamEvent:
    request_id: str
    candidate_index: int
    text_delta: str
    finished: bool
    finish_reason: str | None  # "stop", "length", "cancelled", "deadline", "error"


@dataclass
class CandidateOutput:
    index: int
    text: str
    token_ids: list[int]
    finish_reason: str | None


@dataclass
class RequestOutput:
    request_id: str
    prompt_ids: list[int]
    candidates: list[CandidateOutput]
    error: str | None = None

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.candidates]


def output_of(request: Request) -> RequestOutput:
    return RequestOutput(
        request.request_id,
        request.prompt_ids,
        [CandidateOutput(c.index, c.text, list(c.tokens), c.finish_reason) for c in request.candidates],
        request.error,
    )
