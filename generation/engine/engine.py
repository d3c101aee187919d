"""The in-process serving engine: continuous batching over an absorbed-MLA slot cache.

    engine = Engine(model, tokenizer, max_slots=32)
    rid = engine.submit(prompt_ids, SamplingParams(n=3, temperature=0.8, seed=1))
    while engine.has_unfinished():
        for event in engine.step():   # StreamEvent(request_id, candidate_index, text_delta, finished, finish_reason)
            ...

Each ``step()`` runs one forward over every running candidate's next token plus up to
``max_prefill_tokens`` prompt tokens (chunked prefill: a long prompt spreads over several steps
while the others keep streaming), then samples one token per candidate. The cache is preallocated
slots (one per candidate, ``max_len`` tokens each), as many as ``max_slots`` and
``memory_budget_bytes`` allow; requests wait for free slots, and a request that could never fit
(more candidates than slots) is refused at submit. ``generate()`` and
``stream()`` drive steps for you. Not thread safe: one thread steps (see generation.backends).
"""
from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator

import torch

from .attention import AttentionBatch
from .cache import SlotCache, slots_for_budget
from .json_constraint import JsonConstraint, SchemaError, token_strings
from .runner import ModelRunner
from .outputs import PromptTooLongError, RequestOutput, StreamEvent, output_of
from .sampler import (InvalidRequestError, SamplingParams, apply_repetition_penalty, banned_repeats,
                      candidate_generator, sample_rows)
from .scheduler import Candidate, Request, Scheduler

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        model,
        tokenizer,
        max_slots: int = 32,
        max_len: int | None = None,
        memory_budget_bytes: int | None = None,
        max_n: int = 16,
        max_prefill_tokens: int = 512,  # prompt tokens per step: bounds how long a prefill stalls decoding
    ):
        config = model.config
        context = config.max_position_embeddings
        self.max_len = min(max_len or context, context)
        param = next(model.parameters())
        slots = max_slots
        if memory_budget_bytes is not None:
            slots = min(slots, slots_for_budget(config, param.dtype, self.max_len, memory_budget_bytes))
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.vocab_size = config.vocab_size
        self.cache = SlotCache(config, slots, self.max_len, dtype=param.dtype, device=param.device)
        self.runner = ModelRunner(model, self.max_len)
        self.scheduler = Scheduler(self.cache, max_prefill_tokens)
        self.max_n = max_n
        self.stop_ids = frozenset(_ids(getattr(tokenizer, "eos_token_id", None)) | _ids(config.eos_token_id))
        self.device = param.device
        self._active: dict[str, Request] = {}
        self._pending: list[StreamEvent] = []  # events of cancels made between steps
        self._in_step = False
        self._ids = itertools.count()
        self._json: dict[str, JsonConstraint] = {}
        self._strings: list[str | None] | None = None
        self._backend = getattr(tokenizer, "backend_tokenizer", None)

    # ------------------------------------------------------------------ requests

    def submit(
        self,
        prompt: str | list[int],
        params: SamplingParams | None = None,
        request_id: str | None = None,
        on_event: Callable[[StreamEvent], None] | None = None,
    ) -> str:
        """Queue a request; raises InvalidRequestError (nothing allocated) when it cannot be served."""
        return self._submit(prompt, params, request_id, on_event).request_id

    def _submit(self, prompt, params, request_id, on_event) -> Request:
        params = params or SamplingParams()
        ids = list(prompt) if not isinstance(prompt, str) else self.tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:
            raise InvalidRequestError("the prompt is empty")
        if any(not isinstance(t, int) or not 0 <= t < self.vocab_size for t in ids):
            raise InvalidRequestError(f"prompt token ids must be integers in [0, {self.vocab_size})")
        if len(ids) >= self.max_len:
            raise PromptTooLongError(f"the prompt has {len(ids)} tokens; the context holds {self.max_len}")
        params.validate(max_n=self.max_n, max_tokens=self.max_len - 1)
        if params.n > self.cache.num_slots:
            raise InvalidRequestError(
                f"n={params.n} candidates need {params.n} cache slots; the engine's memory budget holds "
                f"{self.cache.num_slots} ({self.cache.nbytes // 2**20} MiB of {self.max_len}-token slots)"
            )
        if len(ids) + params.max_tokens > self.max_len:
            raise PromptTooLongError(
                f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the context of {self.max_len}"
            )
        constraint = self._json_constraint(params.json_schema) if params.json_schema is not None else None
        if constraint is not None:
            shortest = constraint.machine.min_to_finish(constraint.machine.initial)
            if params.max_tokens < shortest:
                raise InvalidRequestError(f"max_tokens {params.max_tokens} cannot fit the schema's {shortest} characters")
        request_id = request_id or f"req-{next(self._ids)}"
        if request_id in self._active:
            raise InvalidRequestError(f"request id {request_id!r} is already in use")
        request = Request(request_id, ids, params, on_event=on_event, json=constraint)
        request.stop_ids = frozenset() if params.ignore_eos else self.stop_ids
        if params.timeout_s is not None:
            request.deadline = request.arrival + params.timeout_s
        request.candidates = [
            Candidate(request, i, candidate_generator(params.seed, i), json_state=constraint and constraint.machine.initial)
            for i in range(params.n)
        ]
        self._active[request_id] = request
        self.scheduler.add(request)
        return request

    def _json_constraint(self, schema) -> JsonConstraint:
        try:
            key = json.dumps(schema, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise SchemaError(f"the schema is not JSON serialisable: {exc}") from None
        if key not in self._json:
            if self._strings is None:
                self._strings = token_strings(self.tokenizer, self.vocab_size)
            eos = next(iter(sorted(self.stop_ids)), None)
            self._json[key] = JsonConstraint(schema, self._strings, eos)
        return self._json[key]

    def cancel(self, request_id: str, reason: str = "cancelled") -> bool:
        """Stop a request (waiting or running); its slots are free when this returns (or after the current step)."""
        request = self._active.get(request_id)
        if request is None:
            return False
        request.cancelled = True
        request.error = request.error or (None if reason == "cancelled" else reason)
        if not self._in_step:
            self._reap(self._pending)
        return True

    def has_unfinished(self) -> bool:
        return bool(self._active)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def num_prefilling(self) -> int:
        return len(self.scheduler.prefilling)

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    # ------------------------------------------------------------------ stepping

    @torch.inference_mode()
    def step(self) -> list[StreamEvent]:
        """Admit, prefill (a chunk) and decode once; the events of this step (and of cancels since the last)."""
        events, self._pending = self._pending, []
        self._in_step = True
        try:
            self._reap(events)
            self.scheduler.admit()
            chunks = self.scheduler.prefill_chunks()
            decode = list(self.scheduler.running)
            if decode or chunks:
                self._forward_and_sample(decode, chunks, events)
            self._reap(events)  # cancels made from callbacks during this step
        finally:
            self._in_step = False
        return events

    def _forward_and_sample(self, decode: list[Candidate], chunks: list[tuple[Request, int, int]], events):
        try:
            input_ids, positions, batch, logit_rows = self._build_batch(decode, chunks)
            logits = self.runner.forward(input_ids, positions, batch, self.cache.data, logit_rows)
        except Exception as exc:  # a failed forward fails its batch, not the engine
            log.exception("engine forward failed")
            for request in {c.request for c in decode} | {r for r, _, _ in chunks}:
                self._fail(request, f"forward failed: {exc!r}", events)
            return
        prefilled = []  # requests whose last prompt chunk ran this step: they sample their first token
        for request, start, length in chunks:
            request.prefilled = start + length
            if request.prefilled == len(request.prompt_ids):
                first = request.candidates[0]
                self.cache.share_prefix(first.slot, [c.slot for c in request.candidates[1:]], request.prefilled)
                for c in request.candidates:
                    c.cached = request.prefilled
                self.scheduler.prefill_done(request)
                prefilled.append(request)
        for c in decode:
            c.cached += 1
        candidates = decode + [c for r in prefilled for c in r.candidates]
        if any(r.params.n > 1 for r in prefilled):  # the n candidates share their prompt's logits row
            rows = list(range(len(decode))) + [len(decode) + k for k, r in enumerate(prefilled) for _ in r.candidates]
            logits = logits[rows]
        if candidates:
            tokens = self._sample(logits, candidates, events)
            self._append(candidates, tokens, events)

    def _build_batch(self, decode: list[Candidate], chunks: list[tuple[Request, int, int]]):
        ids = [c.last_token for c in decode]
        positions = [c.cached for c in decode]
        slots = [c.slot for c in decode]
        segments, logit_rows = [], list(range(len(decode)))
        for request, start, length in chunks:
            flat, slot = len(ids), request.candidates[0].slot
            ids.extend(request.prompt_ids[start : start + length])
            positions.extend(range(start, start + length))
            slots.extend([slot] * length)
            segments.append((flat, length, slot, start))
            if start + length == len(request.prompt_ids):
                logit_rows.append(flat + length - 1)
        d = len(decode)
        decode_slots = decode_range = decode_mask = None
        decode_len = 0
        if d:
            lengths = torch.tensor([c.cached + 1 for c in decode])
            decode_len = int(lengths.max())
            first, last = slots[0], slots[d - 1]
            if last - first + 1 == d:  # running candidates are kept sorted by slot
                decode_range = (first, last + 1)
            else:
                decode_slots = torch.tensor(slots[:d], device=self.device)
            keep = torch.arange(decode_len) < lengths.unsqueeze(1)
            decode_mask = torch.zeros(d, 1, decode_len, dtype=self.cache.data.dtype)
            decode_mask.masked_fill_(~keep.unsqueeze(1), float("-inf"))
            decode_mask = decode_mask.to(self.device)
        positions_t = torch.tensor(positions, device=self.device)
        batch = AttentionBatch(
            write_slots=torch.tensor(slots, device=self.device),
            write_pos=positions_t,
            num_decode=d,
            decode_slots=decode_slots,
            decode_range=decode_range,
            decode_len=decode_len,
            decode_mask=decode_mask,
            prefill_segments=segments,
        )
        return torch.tensor(ids, device=self.device), positions_t, batch, torch.tensor(logit_rows, dtype=torch.long, device=self.device)

    def _sample(self, logits: torch.Tensor, candidates: list[Candidate], events) -> list[int | None]:
        penalised = [i for i, c in enumerate(candidates) if c.request.params.repetition_penalty != 1.0]
        if penalised:
            seen = [torch.tensor(candidates[i].request.prompt_ids + candidates[i].tokens, device=logits.device) for i in penalised]
            apply_repetition_penalty(logits, penalised, seen, [candidates[i].request.params.repetition_penalty for i in penalised])
        for i, c in enumerate(candidates):
            params = c.request.params
            if params.max_token_run or params.no_repeat_ngram_size:
                banned = banned_repeats(c.tokens, params.max_token_run, params.no_repeat_ngram_size)
                if banned:
                    logits[i, list(banned)] = float("-inf")
        dead = set()
        for i, c in enumerate(candidates):
            constraint = c.request.json
            if constraint is not None:
                left_after = c.request.params.max_tokens - len(c.tokens) - 1
                allowed = constraint.budget_mask(c.json_state, left_after).to(logits.device)
                if not allowed.any():
                    dead.add(i)
                    continue
                logits[i].masked_fill_(~allowed[: logits.shape[1]], float("-inf"))
        params = [c.request.params for c in candidates]
        tokens: list[int | None] = sample_rows(logits, params, [c.generator for c in candidates])
        for i in dead:
            tokens[i] = None
            self._fail(candidates[i].request, "the JSON constraint allows no token", events)
        return tokens

    def _append(self, candidates: list[Candidate], tokens: list[int | None], events: list[StreamEvent]):
        to_decode = []
        for c, token in zip(candidates, tokens):
            if token is None or c.finished:
                continue
            c.tokens.append(token)
            if token in c.request.stop_ids and (c.request.json is None or c.request.json.machine.is_done(c.json_state)):
                c.finish_reason = "stop"
                continue
            if c.request.json is not None:
                c.json_state = c.request.json.machine.advance_text(c.json_state, self._strings[token])
                if c.request.json.machine.is_done(c.json_state):
                    c.finish_reason = "stop"
            to_decode.append(c)
        self._detokenize(to_decode)
        for c, token in zip(candidates, tokens):
            if token is None or c.finished:
                continue
            params = c.request.params
            if c.finish_reason is None and params.stop:
                self._check_stop_strings(c)
            if c.finish_reason is None and len(c.tokens) >= params.max_tokens:
                c.finish_reason = "length"
            if c.finish_reason is not None:
                self._finish(c, c.finish_reason, events)
            else:
                self._emit(c, events, hold=max(map(len, params.stop), default=1) - 1)

    def _detokenize(self, candidates: list[Candidate]) -> None:
        """Incremental: decode a short window per candidate, wait while a character is incomplete."""
        windows = []
        for c in candidates:
            windows.append(c.tokens[c.prefix_offset :])
            windows.append(c.tokens[c.prefix_offset : c.read_offset])
        if not windows:
            return
        # one decode per window: decode_batch hands tiny jobs to a thread pool, ~1000x slower here
        decode = self._backend.decode if self._backend is not None else self.tokenizer.decode
        texts = [decode(w, skip_special_tokens=True) for w in windows]
        for k, c in enumerate(candidates):
            new, old = texts[2 * k], texts[2 * k + 1]
            if new.endswith("\ufffd") and c.finish_reason is None:
                continue
            c.text += new[len(old) :]
            c.prefix_offset, c.read_offset = c.read_offset, len(c.tokens)

    def _check_stop_strings(self, c: Candidate) -> None:
        stops = c.request.params.stop
        start = max(0, c.emitted - max(map(len, stops)))
        hits = [(c.text.find(s, start), s) for s in stops]
        hits = [(at, s) for at, s in hits if at >= 0]
        if hits:
            c.text = c.text[: min(hits)[0]]
            c.finish_reason = "stop"

    # ------------------------------------------------------------------ finishing

    def _emit(self, c: Candidate, events: list[StreamEvent], hold: int = 0) -> None:
        end = len(c.text) if c.finished else max(c.emitted, len(c.text) - hold)
        if end == c.emitted and not c.finished:
            return
        event = StreamEvent(c.request.request_id, c.index, c.text[c.emitted : end], c.finished, c.finish_reason)
        c.emitted = end
        events.append(event)
        callback = c.request.on_event
        if callback is not None:
            try:
                callback(event)
            except Exception as exc:  # a broken consumer cancels its own request only
                log.exception("stream callback failed")
                c.request.cancelled = True
                c.request.error = c.request.error or f"stream callback failed: {exc!r}"

    def _finish(self, c: Candidate, reason: str, events: list[StreamEvent]) -> None:
        if c.finished:
            return
        c.finished, c.finish_reason = True, reason
        self.scheduler.release(c)
        self._emit(c, events)
        request = c.request
        if request.finished:
            self.scheduler.drop(request)
            self._active.pop(request.request_id, None)

    def _fail(self, request: Request, error: str, events: list[StreamEvent]) -> None:
        request.error = request.error or error
        for c in request.candidates:
            self._finish(c, "error", events)

    def _reap(self, events: list[StreamEvent]) -> None:
        now = time.monotonic()
        for request in list(self._active.values()):
            if request.cancelled:
                reason = "error" if request.error else "cancelled"
            elif request.deadline is not None and now >= request.deadline:
                reason = "deadline"
            else:
                continue
            for c in request.candidates:
                self._finish(c, reason, events)

    # ------------------------------------------------------------------ convenience

    def stream(self, prompts: Iterable[str | list[int]], params: SamplingParams | None = None) -> Iterator[StreamEvent]:
        """Submit ``prompts`` and yield their events as steps run; closing the iterator cancels them."""
        prompts = list(prompts)
        requests = self._submit_all(prompts, [params] * len(prompts))
        try:
            yield from self._drive(requests)
        finally:
            for request in requests:
                if not request.finished:
                    self.cancel(request.request_id)

    def _submit_all(self, prompts: list, params: list) -> list[Request]:
        """All or nothing: when one prompt is refused, the ones queued before it are cancelled."""
        if len(params) != len(prompts):
            raise InvalidRequestError(f"{len(prompts)} prompts but {len(params)} sampling params")
        requests = []
        try:
            for prompt, sp in zip(prompts, params):
                requests.append(self._submit(prompt, sp, None, None))
        except InvalidRequestError:
            for request in requests:
                self.cancel(request.request_id)
            self._pending = [e for e in self._pending if e.request_id not in {r.request_id for r in requests}]
            raise
        return requests

    def _drive(self, requests: list[Request]) -> Iterator[StreamEvent]:
        mine = {r.request_id for r in requests}
        while not all(r.finished for r in requests):
            for event in self.step():
                if event.request_id in mine:
                    yield event

    def generate(self, prompts: Iterable[str | list[int]], params: SamplingParams | list[SamplingParams] | None = None) -> list[RequestOutput]:
        """Run ``prompts`` to completion (batched with whatever else is running)."""
        prompts = list(prompts)
        per_prompt = params if isinstance(params, list) else [params] * len(prompts)
        requests = self._submit_all(prompts, per_prompt)
        for _ in self._drive(requests):
            pass
        return [output_of(r) for r in requests]


def _ids(value) -> set[int]:
    if value is None:
        return set()
    return {value} if isinstance(value, int) else set(value)
