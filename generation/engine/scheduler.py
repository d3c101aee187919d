"""Requests, candidates and the waiting/running queues of continuous batching.

A request with ``n`` candidates waits until ``n`` cache slots are free, is prefilled once (into
its first candidate's slot, then copied to the others) and then each candidate decodes one token
per step until it finishes; finished candidates give their slot back at once, so a waiting
request can join at the next step.

Chunked prefill: a step prefills at most ``max_prefill_tokens`` prompt tokens in all, beside one
decode token per running candidate, so a long prompt is prefilled over several steps while the
running requests keep streaming (first come, first served among the prompts being prefilled).
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import torch

from .cache import SlotCache
from .sampler import SamplingParams


@dataclass(eq=False)  # identity: a candidate is compared by object, never by fields
class Candidate:
    request: "Request"
    index: int
    generator: torch.Generator
    slot: int = -1
    cached: int = 0  # tokens written to the cache
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    emitted: int = 0  # characters of ``text`` already streamed
    prefix_offset: int = 0  # incremental detokenisation window (as in vLLM)
    read_offset: int = 0
    json_state: tuple | None = None
    finished: bool = False
    finish_reason: str | None = None

    @property
    def last_token(self) -> int:
        return self.tokens[-1]


@dataclass(eq=False)
class Request:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    arrival: float = field(default_factory=time.monotonic)
    deadline: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    on_event: object = None  # callable(StreamEvent) or None
    cancelled: bool = False
    json: object = None  # JsonConstraint or None
    stop_ids: frozenset = frozenset()
    error: str | None = None
    prefilled: int = 0  # prompt tokens already in the cache (chunked prefill)

    @property
    def finished(self) -> bool:
        return all(c.finished for c in self.candidates)


class Scheduler:
    def __init__(self, cache: SlotCache, max_prefill_tokens: int):
        if max_prefill_tokens < 1:
            raise ValueError("max_prefill_tokens must be at least 1")
        self.cache = cache
        self.max_prefill_tokens = max_prefill_tokens
        self.waiting: deque[Request] = deque()
        self.prefilling: list[Request] = []  # holding their slots, prompt partly in the cache
        self.running: list[Candidate] = []

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def admit(self) -> None:
        """First come, first served: waiting requests take their n slots while slots are free."""
        while self.waiting and self.waiting[0].params.n <= self.cache.free_slots:
            request = self.waiting.popleft()
            for candidate, slot in zip(request.candidates, self.cache.allocate(request.params.n)):
                candidate.slot = slot
            self.prefilling.append(request)

    def prefill_chunks(self) -> list[tuple[Request, int, int]]:
        """This step's prefill work as (request, first position, length): at most max_prefill_tokens in all."""
        chunks, budget = [], self.max_prefill_tokens
        for request in self.prefilling:
            if budget == 0:
                break
            length = min(len(request.prompt_ids) - request.prefilled, budget)
            chunks.append((request, request.prefilled, length))
            budget -= length
        return chunks

    def prefill_done(self, request: Request) -> None:
        """The whole prompt is in the cache: its candidates decode from the next step on."""
        self.prefilling.remove(request)
        self.running.extend(request.candidates)
        self.running.sort(key=lambda c: c.slot)

    def release(self, candidate: Candidate) -> None:
        """Give a finished candidate's slot back (idempotent)."""
        if candidate.slot >= 0:
            self.cache.release([candidate.slot])
            candidate.slot = -1
        if candidate in self.running:
            self.running.remove(candidate)

    def drop(self, request: Request) -> None:
        """Forget a finished request that never got to decode (waiting or mid-prefill)."""
        if request in self.waiting:
            self.waiting.remove(request)
        if request in self.prefilling:
            self.prefilling.remove(request)
