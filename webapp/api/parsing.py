"""Request parsing of the OpenAI-compatible API: a chat or completions body into an ApiRequest.

Prompt mapping: the model only knows "请只生成一条祝福语：{query}" framed by <bos> … <sep>, so both
endpoints turn the request into one greeting query: chat takes the last user message, completions
takes the prompt; a text that already starts with the paper's prefix has it removed first (the
backend adds it back), so "生日祝福" and "请只生成一条祝福语：生日祝福" give the same prompt.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from generation.engine import SamplingParams
from generation.tokenizer import PROMPT_TEMPLATE
from webapp.api.errors import ApiError, bad_param


PROMPT_PREFIX = PROMPT_TEMPLATE.split("{", 1)[0]
MAX_N, MAX_TOKENS, MAX_STOP, DEFAULT_MAX_TOKENS = 16, 512, 4, 96
REQUEST_TIMEOUT_S = 120.0  # an engine deadline, so a forgotten request cannot hold slots forever


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
