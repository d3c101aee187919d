"""Rollback and blind side-by-side comparison of checkpoints (the admin's checkpoint pages).

Rollback undoes the last promotion: the previously active checkpoint is the retired one with
the latest `promoted_at` (promotion stamps it; retiring keeps it)."""
from __future__ import annotations

import random
import secrets
from dataclasses import dataclass, field

from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, promote_checkpoint

MAX_PROMPTS = 8
MAX_NEW_TOKENS = 96


def previous_active_checkpoint() -> Checkpoint | None:
    return (Checkpoint.objects.exclude(status=Checkpoint.Status.ACTIVE).filter(promoted_at__isnull=False)
            .order_by("-promoted_at").first())


def rollback() -> Checkpoint:
    """Promote the checkpoint that was active before the current one."""
    previous = previous_active_checkpoint()
    if previous is None:
        raise RegistryError("nothing to roll back to: no checkpoint was active before the current one")
    return promote_checkpoint(previous)


@dataclass
class Comparison:
    tag: str  # the origin of the stored greetings: what the annotation batch selects
    rows: list[dict] = field(default_factory=list)  # {"query", "left": text, "right": text, "left_is_a": bool}
    a: Checkpoint | None = None
    b: Checkpoint | None = None


def _greetings_of(checkpoint: Checkpoint, prompts: list[str], seed: int) -> list[str]:
    """One greeting per prompt, from a checkpoint loaded for this comparison only (not the served one)."""
    from generation.backends import LocalEngineBackend
    from generation.checkpoint import load_checkpoint

    problem = checkpoint.missing_files()
    if problem:
        raise RegistryError(f"checkpoint {checkpoint.name} cannot be loaded: {problem}")
    from generation.engine import SamplingParams

    model, tokenizer = load_checkpoint(checkpoint.path, expected_config=checkpoint.model_config or None)
    backend = LocalEngineBackend.from_model(model, tokenizer, max_slots=len(prompts))
    texts = []
    for i, query in enumerate(prompts):
        prompt = backend.greeting_prompt(query)
        room = backend.engine.max_len - len(prompt) - 1  # a small model's context bounds the answer
        if room < 1:
            raise RegistryError(f"the request {query[:40]!r} is too long for {checkpoint.name}'s context")
        params = SamplingParams(n=1, max_tokens=min(MAX_NEW_TOKENS, room), temperature=0.8, top_p=0.95, seed=seed + i)
        texts.append(backend.generate(prompt, params)[0].strip())
    return texts


def compare(a: Checkpoint, b: Checkpoint, prompts: list[str], seed: int = 0) -> Comparison:
    """Both checkpoints answer the same prompts with the same seeds; each row's sides are shuffled so
    the page can show them blind. The outputs are stored as model greetings tagged for annotation."""
    if a.pk == b.pk:
        raise RegistryError("choose two different checkpoints")
    prompts = [p.strip() for p in prompts if p.strip()][:MAX_PROMPTS]
    if not prompts:
        raise RegistryError("give at least one prompt")
    tag = f"compare-{secrets.token_hex(6)}"
    texts_a, texts_b = _greetings_of(a, prompts, seed), _greetings_of(b, prompts, seed)
    shuffle = random.Random(secrets.randbits(32))
    comparison = Comparison(tag=tag, a=a, b=b)
    for prompt, text_a, text_b in zip(prompts, texts_a, texts_b):
        store_model_greeting(prompt, text_a, a.name, tag)
        store_model_greeting(prompt, text_b, b.name, tag)
        left_is_a = shuffle.random() < 0.5
        left, right = (text_a, text_b) if left_is_a else (text_b, text_a)
        comparison.rows.append({"query": prompt, "left": left, "right": right, "left_is_a": left_is_a})
    return comparison


def store_model_greeting(query_text: str, text: str, checkpoint_name: str, origin: str):
    from webapp.corpus.models import Greeting, Query, normalise_text

    text = normalise_text(text)
    if not text:
        return None
    query, _ = Query.objects.get_or_create(content_hash=Query.hash_for(query_text), defaults={"text": query_text})
    greeting, _ = Greeting.objects.get_or_create(
        content_hash=Greeting.hash_for(query.content_hash, text),
        defaults={"query": query, "text": text, "source": Greeting.Source.MODEL,
                  "checkpoint_name": checkpoint_name, "origin": origin})
    return greeting


def send_to_annotation(tag: str, user, k: int = 2):
    """A pointwise annotation batch of the comparison's outputs (annotators never see model names)."""
    from webapp.annotation.services import create_batch

    return create_batch(name=f"checkpoint {tag}", kind="pointwise", k=k, source_type="generations",
                        generation_source="model", origin=tag, limit=2 * MAX_PROMPTS, created_by=user)

