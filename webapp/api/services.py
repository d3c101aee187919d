"""The OpenAI-compatible API's logic: keys, rate limits, request parsing, responses (views stay thin).

Prompt mapping: the model only knows "请只生成一条祝福语：{query}" framed by <bos> … <sep>, so both
endpoints turn the request into one greeting query: chat takes the last user message, completions
takes the prompt; a text that already starts with the paper's prefix has it removed first (the
backend adds it back), so "生日祝福" and "请只生成一条祝福语：生日祝福" give the same prompt.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from generation.engine import InvalidRequestError, PromptTooLongError, SamplingParams, SchemaError
from generation.greeting import FinalText
from generation.tokenizer import PROMPT_TEMPLATE
from webapp.api.models import ApiKey

MODEL_ALIAS = "zhufu"
PROMPT_PREFIX = PROMPT_TEMPLATE.split("{", 1)[0]
KEY_PREFIX = "zf-"
MAX_N, MAX_TOKENS, MAX_STOP, DEFAULT_MAX_TOKENS = 16, 512, 4, 96
REQUEST_TIMEOUT_S = 120.0  # an engine deadline, so a forgotten request cannot hold slots forever
LAST_USED_RESOLUTION = timedelta(seconds=60)  # spares a database write on every request


def default_rate_limit() -> int:
    return int(getattr(settings, "API_RATE_LIMIT_PER_MINUTE", os.environ.get("API_RATE_LIMIT_PER_MINUTE", 60)))


# ------------------------------------------------------------------ errors


class ApiError(Exception):
    """An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad_param(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


# ------------------------------------------------------------------ keys


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(user, name: str = "", rate_limit_per_minute: int | None = None) -> tuple[ApiKey, str]:
    """A new key for `user`; the secret is returned once and never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name, prefix=secret[:10], hashed_key=hash_key(secret),
                                rate_limit_per_minute=rate_limit_per_minute)
    return key, secret


def revoke_api_key(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def authenticate(authorization: str | None) -> ApiKey:
    """The active key named by an `Authorization: Bearer …` header, else 401."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", "invalid_request_error",
                       code="invalid_api_key")
    key = (ApiKey.objects.select_related("user").filter(hashed_key=hash_key(secret.strip()), revoked_at__isnull=True)
           .first())
    if key is None or not key.user.is_active:
        raise ApiError(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def check_rate_limit(key: ApiKey) -> None:
    """A fixed one-minute window counted in the shared cache; 429 once the key's limit is used up."""
    limit = key.rate_limit_per_minute or default_rate_limit()
    window = int(time.time() // 60)
    counter = f"api-rate:{key.pk}:{key.prefix}:{window}"  # the prefix keeps reused ids (test flushes) apart
    cache.add(counter, 0, timeout=120)
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.set(counter, 1, timeout=120)
        count = 1
    if count > limit:
        retry = 60 - int(time.time() % 60)
        raise ApiError(429, f"Rate limit reached: {limit} requests per minute for this key.", "rate_limit_exceeded",
                       code="rate_limit_exceeded", headers={"Retry-After": str(retry)})


# ------------------------------------------------------------------ requests

COMMON_FIELDS = {"model", "stream", "stream_options", "n", "temperature", "top_p", "max_tokens", "stop", "seed",
                 "response_format", "user"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens"}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt"}
# Parameters we do not implement but accept at their neutral value (what clients send by default).
NEUTRAL_VALUES = {
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "presence_penalty": (None, 0),
    "frequency_penalty": (None, 0),
    "logit_bias": (None, {}),
    "echo": (None, False),
    "best_of": (None, 1),
    "suffix": (None, ""),
    "parallel_tool_calls": (None,),
    "tools": (None, []),
    "tool_choice": (None, "none"),
}
CHAT_ROLES = {"system", "developer", "user", "assistant"}


@dataclass
class ApiRequest:
    kind: str  # "chat" | "completion"
    model: str
    query: str
    params: SamplingParams
    stream: bool = False
    include_usage: bool = False
    default_max_tokens: bool = False  # none given: fill what the context leaves, up to DEFAULT_MAX_TOKENS
    user: str | None = None
    extra: dict = field(default_factory=dict)


def parse_body(raw: bytes) -> dict:
    try:
        body = json.loads(raw or b"")
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The request body is not valid JSON.", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.", code="invalid_json")
    return body


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_unknown(body: dict, allowed: set[str]) -> None:
    unknown = sorted(k for k in body if k not in allowed and k not in NEUTRAL_VALUES)
    if unknown:
        names = ", ".join(json.dumps(name, ensure_ascii=False) for name in unknown)  # quoted: "" or " " stay visible
        raise bad_param(unknown[0], f"Unrecognized request argument(s) supplied: {names}.", code="unknown_parameter")
    for name, neutral in NEUTRAL_VALUES.items():
        if name in body and not any(body[name] == v and type(body[name]) is type(v) or body[name] is v
                                    for v in neutral):
            allowed_values = ", ".join(json.dumps(v) for v in neutral)
            raise bad_param(name, f"{name} is not supported; only {allowed_values} is accepted.",
                            code="unsupported_parameter")


_UNENCODABLE = re.compile("[\x00\ud800-\udfff]")


def check_encodable(text: str, param: str) -> None:
    """NUL and lone surrogates (JSON escapes like \\ud800 that are not Unicode) cannot reach a tokenizer,
    a remote server or the database: refuse them here, naming the field."""
    bad = _UNENCODABLE.search(text)
    if bad:
        raise bad_param(param, f"{param} contains U+{ord(bad.group(0)):04X}, which is not a valid character here.")


def strip_prefix(text: str) -> str:
    text = text.strip()
    return text[len(PROMPT_PREFIX):].strip() if text.startswith(PROMPT_PREFIX) else text


def message_text(content, param: str) -> str:
    """Content as a string or a list of {"type": "text", "text": …} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text"
                                         and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise bad_param(param, "Message content must be a string or a list of text parts.")


def query_from_messages(messages) -> str:
    if not isinstance(messages, list) or not messages:
        raise bad_param("messages", "messages must be a non-empty list.")
    query = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in CHAT_ROLES:
            raise bad_param(f"messages[{i}]", f"Each message needs a role among {', '.join(sorted(CHAT_ROLES))}.")
        text = message_text(message.get("content"), f"messages[{i}].content")
        if message["role"] == "user":
            query = text
    if query is None:
        raise bad_param("messages", "messages must contain a user message (the greeting request).")
    return query


def query_from_prompt(prompt) -> str:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_param("prompt", "prompt must be a string (or a list of one string).")
    return prompt


def json_schema_of(response_format) -> dict | None:
    if response_format is None:
        return None
    if not isinstance(response_format, dict):
        raise bad_param("response_format", "response_format must be an object.")
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}  # any JSON object (the engine's AnyObjectMachine)
    if kind != "json_schema":
        raise bad_param("response_format", 'response_format.type must be "text", "json_object" or "json_schema".')
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise bad_param("response_format", "response_format.json_schema.schema must be a JSON schema object.")
    return spec["schema"]


def parse_request(body: dict, kind: str) -> ApiRequest:
    """Validate a /v1/chat/completions (kind "chat") or /v1/completions body; ApiError 400 names the field."""
    check_unknown(body, CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "model is required (the active checkpoint's name or \"zhufu\").",
                        code="missing_required_parameter")
    query = query_from_messages(body.get("messages")) if kind == "chat" else query_from_prompt(body.get("prompt"))
    query = strip_prefix(query)
    if not query:
        raise bad_param("messages" if kind == "chat" else "prompt", "The greeting request is empty.")
    check_encodable(query, "messages" if kind == "chat" else "prompt")

    n = body.get("n", 1) if body.get("n") is not None else 1
    if not _is_int(n) or not 1 <= n <= MAX_N:
        raise bad_param("n", f"n must be an integer from 1 to {MAX_N}.")
    temperature = body.get("temperature", 1.0) if body.get("temperature") is not None else 1.0
    if not _is_number(temperature) or not 0 <= temperature <= 2:
        raise bad_param("temperature", "temperature must be a number from 0 to 2.")
    top_p = body.get("top_p", 1.0) if body.get("top_p") is not None else 1.0
    if not _is_number(top_p) or not 0 < top_p <= 1:
        raise bad_param("top_p", "top_p must be a number in (0, 1].")
    tokens_field = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(tokens_field) if body.get(tokens_field) is not None else DEFAULT_MAX_TOKENS
    if not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_TOKENS:
        raise bad_param(tokens_field, f"{tokens_field} must be an integer from 1 to {MAX_TOKENS}.")
    stop = body.get("stop")
    stop = [] if stop is None else [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > MAX_STOP or any(not isinstance(s, str) or not s for s in stop):
        raise bad_param("stop", f"stop must be a non-empty string or a list of at most {MAX_STOP} of them.")
    for stop_text in stop:
        check_encodable(stop_text, "stop")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise bad_param("seed", "seed must be a non-negative integer.")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise bad_param("stream", "stream must be a boolean.")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}
                                or not isinstance(options.get("include_usage", False), bool)):
        raise bad_param("stream_options", 'stream_options may only hold "include_usage" (a boolean).')
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise bad_param("user", "user must be a string.")

    params = SamplingParams(n=n, max_tokens=max_tokens, temperature=float(temperature), top_p=float(top_p),
                            stop=list(stop), seed=seed, json_schema=json_schema_of(body.get("response_format")),
                            timeout_s=REQUEST_TIMEOUT_S)
    return ApiRequest(kind=kind, model=model, query=query, params=params, stream=bool(stream),
                      include_usage=bool((options or {}).get("include_usage")), user=user,
                      default_max_tokens=body.get(tokens_field) is None)


# ------------------------------------------------------------------ models and backend


def served_model_name() -> str:
    """The active checkpoint's name; 503 when there is none."""
    from webapp.checkpoints.services import active_checkpoint

    checkpoint = active_checkpoint()
    if checkpoint is None:
        raise ApiError(503, "The model is not ready yet: no checkpoint has been trained and promoted.",
                       "server_error", code="model_not_ready")
    return checkpoint.name


def list_models() -> dict:
    from webapp.checkpoints.services import active_checkpoint

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
    from webapp.checkpoints.serving import ModelNotReady, get_backend

    try:
        return get_backend()
    except ModelNotReady as exc:
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


# ------------------------------------------------------------------ generation


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
