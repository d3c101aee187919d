"""Models and generation of the OpenAI-compatible API: the served model's name, the backend, token
counts, and Generation, which answers an ApiRequest whole or as server-sent events."""
from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid

from generation.engine import InvalidRequestError, PromptTooLongError, SchemaError
from generation.greeting import FinalText
from webapp.api.errors import ApiError, bad_param
from webapp.api.parsing import ApiRequest, DEFAULT_MAX_TOKENS
from webapp.checkpoints import serving
from webapp.checkpoints.services import active_checkpoint


MODEL_ALIAS = "zhufu"


def served_model_name() -> str:
    """The active checkpoint's name; 503 when there is none."""
    checkpoint = active_checkpoint()
    if checkpoint is None:
        raise ApiError(503, "The model is not ready yet: no checkpoint has been trained and promoted.",
                       "server_error", code="model_not_ready")
    return checkpoint.name


def list_models() -> dict:
    checkpoint = active_checkpoint()
    data = []
    if checkpoint is not None:
        data.append({"id": checkpoint.name, "object": "model", "created": int(checkpoint.created_at.timestamp()),
                     "owned_by": "zhufu"})
    return {"object": "list", "data": data}


def resolve_model(requested: str) -> str:
    name = served_model_name()
    if requested not in (name, MODEL_ALIAS):
        raise ApiError(404, f"The model '{requested}' does not exist; this server serves '{name}' "
                       f"(also reachable as '{MODEL_ALIAS}').", param="model", code="model_not_found")
    return name


def backend():
    try:
        return serving.get_backend()  # looked up per call: tests swap the backend
    except serving.ModelNotReady as exc:
        raise ApiError(503, str(exc), "server_error", code="model_not_ready") from None


def engine_stats() -> dict:
    engine = getattr(backend(), "engine", None)
    if engine is None:
        return {"object": "engine.stats", "local": False}
    return {"object": "engine.stats", "local": True, "free_slots": engine.cache.free_slots,
            "total_slots": engine.cache.num_slots,
            "running": engine.num_running, "waiting": engine.num_waiting,
            "cancelled_requests": _cancelled["streams"]}


def count_tokens(generation_backend, prompt_or_text) -> int:
    """Token counts for usage: prompt ids as fed; completions re-encoded with the model's tokenizer."""
    if isinstance(prompt_or_text, list):
        return len(prompt_or_text)
    engine = getattr(generation_backend, "engine", None)
    if engine is None or not prompt_or_text:
        return 0
    return len(engine.tokenizer.encode(prompt_or_text, add_special_tokens=False))


def engine_error(exc: Exception, request: ApiRequest) -> ApiError:
    field_name = "messages" if request.kind == "chat" else "prompt"
    if isinstance(exc, PromptTooLongError):
        return ApiError(400, f"This model's context is too short for the request: {exc}", param=field_name,
                        code="context_length_exceeded")
    if isinstance(exc, SchemaError):
        return bad_param("response_format", f"Unsupported JSON schema: {exc}", code="invalid_schema")
    return ApiError(400, str(exc), param=None, code="invalid_request")


class Generation:
    """One request on the backend: submitted (and validated by the engine) on construction.

    The first event is read eagerly so that engine errors (schema, context length) become a 400
    before any streamed byte; `close()` cancels the engine request (the backend's stream frees its
    slots when its iterator is closed) and is safe to call from another thread than `events()`.
    """

    def __init__(self, request: ApiRequest):
        self.request = request
        self.model = resolve_model(request.model)
        self.backend = backend()
        self.prompt = self.backend.greeting_prompt(request.query)
        room = self.backend.room(self.prompt)
        if request.default_max_tokens and room is not None:  # too small a room is the engine's 400 below
            request.params.max_tokens = max(1, min(DEFAULT_MAX_TOKENS, room))
        self._closed = False
        self.id = ("chatcmpl-" if request.kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self._lock = threading.Lock()  # next() and close() of a generator must not overlap
        self._stream = self.backend.stream(self.prompt, request.params)
        try:
            self._first = next(self._stream, None)
        except InvalidRequestError as exc:
            raise engine_error(exc, request) from None
        self.finals = [FinalText() for _ in range(request.params.n)]  # the answer as the studio stores text
        self.reasons: list[str | None] = [None] * request.params.n

    @property
    def texts(self) -> list[str]:
        return [final.text for final in self.finals]

    def next_event(self):
        with self._lock:
            if self._first is not None:
                event, self._first = self._first, None
            else:
                event = next(self._stream, None)
        if event is None:
            return None
        final = self.finals[event.candidate_index]
        piece = final.feed(event.text_delta)
        if event.finished:
            piece += final.finish()
            self.reasons[event.candidate_index] = finish_reason(event.finish_reason)
        return dataclasses.replace(event, text_delta=piece)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if None in self.reasons:  # stopped before every candidate finished: the engine request is cancelled
                count_cancelled()
            self._stream.close()

    def run(self) -> None:
        try:
            while self.next_event() is not None:
                pass
        finally:
            self.close()
        if "error" in self.reasons:
            raise ApiError(500, "The engine failed while generating.", "server_error")

    def usage(self) -> dict:
        prompt = count_tokens(self.backend, self.prompt)
        completion = sum(count_tokens(self.backend, t) for t in self.texts)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    # -------------------------------------------------------------- shapes

    def completion_body(self) -> dict:
        chat = self.request.kind == "chat"
        choices = []
        for i, (text, reason) in enumerate(zip(self.texts, self.reasons)):
            choice = {"index": i, "finish_reason": reason, "logprobs": None}
            choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
            choices.append(choice)
        return {"id": self.id, "object": "chat.completion" if chat else "text_completion", "created": self.created,
                "model": self.model, "system_fingerprint": self.model, "choices": choices, "usage": self.usage()}

    def chunk(self, index: int, text: str | None = None, reason: str | None = None, first: bool = False) -> dict:
        if self.request.kind == "chat":
            delta = {"role": "assistant", "content": ""} if first else ({"content": text} if text else {})
            choice = {"index": index, "delta": delta, "finish_reason": reason, "logprobs": None}
            kind = "chat.completion.chunk"
        else:
            choice = {"index": index, "text": text or "", "finish_reason": reason, "logprobs": None}
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model,
                "system_fingerprint": self.model, "choices": [choice]}

    def sse_chunks(self):
        """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`; a sync generator."""
        try:
            if self.request.kind == "chat":
                for i in range(self.request.params.n):
                    yield sse(self.chunk(i, first=True))
            while (event := self.next_event()) is not None:
                if event.finish_reason == "error":
                    yield sse(ApiError(500, "The engine failed while generating.", "server_error").body())
                    return
                if event.text_delta:
                    yield sse(self.chunk(event.candidate_index, text=event.text_delta))
                if event.finished:
                    yield sse(self.chunk(event.candidate_index, reason=self.reasons[event.candidate_index]))
            if self.request.include_usage:
                final = self.chunk(0)
                final.update(choices=[], usage=self.usage())
                yield sse(final)
            yield "data: [DONE]\n\n"
        finally:
            self.close()


_cancelled = {"streams": 0}
_cancelled_lock = threading.Lock()


def count_cancelled() -> None:
    with _cancelled_lock:
        _cancelled["streams"] += 1


def finish_reason(reason: str | None) -> str | None:
    # OpenAI knows stop and length; a request's deadline reads as running out of length
    return {"deadline": "length", "cancelled": "stop"}.get(reason, reason)


def sse(payload: dict) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"
