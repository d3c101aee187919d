"""Greetings from a trained model with transformers' generate (a faster engine comes later)."""
from __future__ import annotations

import torch

from generation.tokenizer import encode_prompt


def generate_greetings(
    model,
    tokenizer,
    query: str,
    n: int = 3,
    temperature: float = 0.8,
    top_p: float = 0.95,
    top_k: int = 0,
    max_new_tokens: int = 96,
    seed: int | None = None,
) -> list[str]:
    """``n`` greetings for ``query``; the same seed gives the same greetings.

    temperature 0 decodes greedily; top_k 0 and top_p 1 switch those filters off.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    device = next(model.parameters()).device
    prompt = encode_prompt(tokenizer, query)
    input_ids = torch.tensor([prompt] * n, device=device)
    sampling = temperature > 0
    options = dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k) if sampling else dict(do_sample=False)
    # A private RNG stream: seeding must not disturb (or depend on) the caller's global RNG.
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        if seed is not None:
            torch.manual_seed(seed)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new_tokens,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **options,
        )
    return [_decode_answer(tokenizer, row[len(prompt):].tolist()) for row in output]


def _decode_answer(tokenizer, ids: list[int]) -> str:
    """Text up to the first end token, without special tokens."""
    if tokenizer.eos_token_id in ids:
        ids = ids[: ids.index(tokenizer.eos_token_id)]
    return tokenizer.decode(ids, skip_special_tokens=True).strip()
