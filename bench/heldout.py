"""The demo model on the paper's data: ``python -m bench.heldout --json``

Trains the ``small`` preset on ../shared/data/igniting/sft_data.json with the trainer's split
by query (no held-out query is ever trained on), then reports the held-out loss over the whole
held-out split and one sampled greeting for each of 10 held-out queries.
"""
from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

from generation.checkpoint import load_checkpoint
from generation.presets import get_preset
from generation.sampling import generate_greetings
from training.data.examples import load_examples, split_by_query
from training.metrics import emit, format_table, shared_data_file
from training.trainer import TrainConfig, train_model


def heldout_queries(path: Path, preset, seed: int, count: int) -> list[tuple[str, str]]:
    """(query, reference response) for ``count`` held-out queries, the trainer's exact split."""
    _, heldout = split_by_query(load_examples([path]), preset.heldout_fraction, seed)
    first = {}
    for query, response in heldout:
        first.setdefault(query, response)
    queries = sorted(first)
    random.Random(seed).shuffle(queries)
    return [(q, first[q]) for q in queries[:count]]


def run(out_dir: Path, steps: int | None, seed: int, samples: int) -> dict:
    path = shared_data_file("sft_data.json")
    started = time.perf_counter()
    result = train_model(TrainConfig(preset="small", data_paths=[path], out_dir=out_dir, seed=seed,
                                     max_steps=steps, progress_bar=False))
    train_s = time.perf_counter() - started
    model, tokenizer = load_checkpoint(result.checkpoint_dir)
    preset = get_preset("small")
    greetings = []
    for i, (query, reference) in enumerate(heldout_queries(path, preset, seed, samples)):
        text = generate_greetings(model, tokenizer, query, n=1, seed=seed + i)[0]
        greetings.append({"query": query, "greeting": text, "reference": reference})
    loss = result.metrics["heldout_loss"]
    return {
        "preset": "small",
        "steps": result.metrics["step"],
        "train_wall_s": train_s,
        "train_loss": result.metrics["loss"],
        "heldout_loss": loss,
        "heldout_perplexity": math.exp(loss),
        "heldout_sequences": result.metrics["heldout_sequences"],
        "data": result.data,
        "real_experts_per_token": result.metrics.get("real_experts_per_token_mean"),
        "checkpoint_dir": str(result.checkpoint_dir),
        "samples": greetings,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="keep the run folder here")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run(args.out or Path(tmp), args.steps, args.seed, args.samples)
        table = format_table([summary], ["steps", "train_wall_s", "train_loss", "heldout_loss", "heldout_perplexity",
                                         "real_experts_per_token"])
        table += "\n\n" + format_table(summary["samples"], ["query", "greeting"])
        emit(summary, table, args.json)


if __name__ == "__main__":
    main()
