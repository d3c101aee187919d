"""One generation interface, two backends (no Django here).

* ``LocalEngineBackend`` (default): our in-process engine (generation.engine) on a loaded model.
  Thread safe: callers from any thread submit; whichever caller holds the lock runs the next
  engine step, which advances everybody's requests (continuous batching across threads, no
  background thread to manage).
* ``OpenAICompatibleBackend``: a remote vLLM / SGLang server's ``/v1/completions`` over HTTP,
  streamed as server-sent events.

Both yield ``StreamEvent(request_id, candidate_index, text_delta, finished, finish_reason)``.
"""
from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Iterator

from generation.engine import Engine, SamplingParams, StreamEvent
from generation.engine.json_constraint import is_any_object
from generation.tokenizer import encode_prompt, format_prompt


class BackendError(RuntimeError):
    pass


class GenerationBackend:
    """``stream`` is the primitive; ``generate`` and ``greetings`` collect it."""

    def stream(self, prompt, params: SamplingParams) -> Iterator[StreamEvent]:
        raise NotImplementedError

    def greeting_prompt(self, query: str):
        raise NotImplementedError

    def room(self, prompt) -> int | None:
        """How many new tokens fit after `prompt`; None when the backend cannot tell (a remote server)."""
        return None

    def generate(self, prompt, params: SamplingParams) -> list[str]:
        texts = [""] * params.n
        for event in self.stream(prompt, params):
            texts[event.candidate_index] += event.text_delta
        return texts


class LocalEngineBackend(GenerationBackend):
    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = threading.Lock()

    @classmethod
    def from_model(cls, model, tokenizer, **engine_kwargs) -> "LocalEngineBackend":
        return cls(Engine(model, tokenizer, **engine_kwargs))

    def greeting_prompt(self, query: str) -> list[int]:
        return encode_prompt(self.engine.tokenizer, query)

    def room(self, prompt) -> int | None:
        return self.engine.max_len - len(prompt) if isinstance(prompt, list) else None

    def stream(self, prompt, params: SamplingParams) -> Iterator[StreamEvent]:
        events: queue.SimpleQueue[StreamEvent] = queue.SimpleQueue()
        with self._lock:
            request_id = self.engine.submit(prompt, params, on_event=events.put)
        remaining = params.n
        try:
            while remaining:
                try:
                    event = events.get_nowait()
                except queue.Empty:
                    with self._lock:
                        if events.empty():  # another thread's step may have produced ours meanwhile
                            self.engine.step()
                    continue
                remaining -= event.finished
                yield event
        finally:
            if remaining:  # the consumer stopped early: give the slots back
                with self._lock:
                    self.engine.cancel(request_id)


class OpenAICompatibleBackend(GenerationBackend):
    """``POST {base_url}/v1/completions`` with ``stream: true`` (vLLM, SGLang)."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout_s: float = 60.0,
                 prompt_prefix: str = "<bos>", prompt_suffix: str = "<sep>", session=None):
        import requests

        self.url = base_url.rstrip("/") + "/v1/completions"
        self.model = model
        self.timeout_s = timeout_s
        self.prompt_prefix, self.prompt_suffix = prompt_prefix, prompt_suffix
        self.session = session or requests.Session()
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def greeting_prompt(self, query: str) -> str:
        # the server tokenises; our special tokens are spelled out as text, as its tokenizer expects
        return self.prompt_prefix + format_prompt(query) + self.prompt_suffix

    def payload(self, prompt, params: SamplingParams) -> dict:
        body = {
            "model": self.model,
            "prompt": prompt,
            "n": params.n,
            "max_tokens": params.max_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "stream": True,
        }
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM / SGLang extension
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.ignore_eos:
            body["ignore_eos"] = True
        if params.json_schema is not None and is_any_object(params.json_schema):
            body["response_format"] = {"type": "json_object"}
        elif params.json_schema is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": params.json_schema}}
        return body

    def stream(self, prompt, params: SamplingParams) -> Iterator[StreamEvent]:
        import requests

        params.validate(max_n=128, max_tokens=1 << 20)
        timeout = params.timeout_s or self.timeout_s
        try:
            response = self.session.post(self.url, json=self.payload(prompt, params), stream=True, timeout=timeout)
        except requests.RequestException as exc:
            raise BackendError(f"{self.url}: {exc}") from exc
        with response:  # closing the connection early makes the server abort the request
            if response.status_code >= 400:
                raise BackendError(f"{self.url}: HTTP {response.status_code}: {response.text[:500]}")
            request_id, open_candidates = None, set(range(params.n))
            for raw in response.iter_lines():
                line = raw.decode("utf-8")  # SSE is UTF-8 by spec, whatever the Content-Type says
                if not line.startswith("data:"):
                    continue
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    break
                chunk = json.loads(data)
                if "error" in chunk:
                    raise BackendError(f"{self.url}: {chunk['error']}")
                request_id = request_id or chunk.get("id") or f"remote-{uuid.uuid4().hex[:8]}"
                for choice in chunk.get("choices", []):
                    reason = choice.get("finish_reason")
                    index = choice.get("index", 0)
                    if reason is not None:
                        open_candidates.discard(index)
                    yield StreamEvent(request_id, index, choice.get("text") or "", reason is not None, reason)
            if open_candidates:
                raise BackendError(f"{self.url}: the stream ended before candidates {sorted(open_candidates)} finished")


def default_backend(model, tokenizer, **engine_kwargs) -> GenerationBackend:
    return LocalEngineBackend.from_model(model, tokenizer, **engine_kwargs)
