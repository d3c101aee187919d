"""Blind side-by-side comparison of two checkpoints (the admin's compare page), and the same
comparison sent to the annotation queue as a pairwise batch."""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from generation.greeting import RequestTooLong, write_greetings
from webapp.annotation.checkpoint_batches import create_pairwise_batch_from_checkpoints
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.serving import backend_for
from webapp.checkpoints.services import RegistryError

MAX_PROMPTS = 8
MAX_NEW_TOKENS = 96


@dataclass
class Comparison:
    a: Checkpoint
    b: Checkpoint
    prompts: list[str]
    seed: int
    rows: list[dict] = field(default_factory=list)  # {"query", "left", "right", "left_is_a"}


def _greetings_of(checkpoint: Checkpoint, prompts: list[str], seed: int) -> list[str]:
    """One greeting per prompt (prompt i with seed + i), from the checkpoint's engine."""
    backend = backend_for(checkpoint)
    texts = []
    for i, query in enumerate(prompts):
        try:
            texts.extend(write_greetings(backend, query, 1, max_tokens=MAX_NEW_TOKENS, seed=seed + i))
        except RequestTooLong:
            raise RegistryError(f"the request {query[:40]!r} is too long for {checkpoint.name}'s context") from None
    return texts


def compare(a: Checkpoint, b: Checkpoint, prompts: list[str], seed: int = 0) -> Comparison:
    """Both checkpoints answer the same prompts with the same seeds; each row's sides are shuffled so
    the page can show them blind. Nothing is stored: viewing a comparison leaves the corpus alone."""
    if a.pk == b.pk:
        raise RegistryError("choose two different checkpoints")
    prompts = [p.strip() for p in prompts if p.strip()][:MAX_PROMPTS]
    if not prompts:
        raise RegistryError("give at least one prompt")
    texts_a, texts_b = _greetings_of(a, prompts, seed), _greetings_of(b, prompts, seed)
    shuffle = random.Random(secrets.randbits(32))
    comparison = Comparison(a=a, b=b, prompts=prompts, seed=seed)
    for prompt, text_a, text_b in zip(prompts, texts_a, texts_b):
        left_is_a = shuffle.random() < 0.5
        left, right = (text_a, text_b) if left_is_a else (text_b, text_a)
        comparison.rows.append({"query": prompt, "left": left, "right": right, "left_is_a": left_is_a})
    return comparison


def send_to_annotation(a: Checkpoint, b: Checkpoint, prompts: list[str], seed: int, user):
    """A blind pairwise annotation batch of the two checkpoints on the same prompts (built in the
    background by the annotation app; annotators never see model names)."""
    return create_pairwise_batch_from_checkpoints(a, b, prompts, seed=seed, created_by=user)
