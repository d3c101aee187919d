"""Requests, candidates and the waiting/running queues of continuous batching.

A request with ``n`` candidates waits until ``n`` cache slots are free, is prefilled once (into
its first candidate's slot, then copied to the others) and then each candidate decodes one token
per step until it finishes; finished candidates give their slot back at once, so a waiting
request can join at the next step.
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

    @property
    def finished(self) -> bool:
        return all(c.finished for c in self.candidates)


class Scheduler:
    def __init__(self, cache: SlotCache, max_prefill_tokens: int):
        self.cache = cache
        self.max_prefill_tokens = max_prefill_tokens
        self.waiting: deque[Request] = deque()
        self.running: list[Candidate] = []

    def add(self, request: Request) -> None:
        self.waiting.append(request)

    def admit(self) -> list[Request]:
        """First-come first-served: requests that fit in the free slots and this step's prefill budget."""
        admitted, tokens = [], 0
        while self.waiting:
            request = self.waiting[0]
            n, length = request.params.n, len(request.prompt_ids)
            if n > self.cache.free_slots or (admitted and tokens + length > self.max_prefill_tokens):
                break
            self.waiting.popleft()
            for candidate, slot in zip(request.candidates, self.cache.allocate(n)):
                candidate.slot = slot
            admitted.append(request)
            tokens += length
        return admitted

    def start_running(self, candidates: list[Candidate]) -> None:
        self.running.extend(candidates)
        self.running.sort(key=lambda c: c.slot)

    def release(self, candidate: Candidate) -> None:
        """Give a finished candidate's slot back (idempotent)."""
        if candidate.slot >= 0:
            self.cache.release([candidate.slot])
            candidate.slot = -1
        if candidate in self.running:
            self.running.remove(candidate)

    def drop_waiting(self, request: Request) -> None:
        if request in self.waiting:
            self.waiting.remove(request)
