"""The shipped model's greetings that the naturalness model trains against: ``python -m bench.naturalness_samples``

Unguarded greetings (three per request) of `--model` for `--requests` team train-side requests,
never one that bench.judges holds out, appended to training/data/generated/zhufu-small_samples.jsonl
(rerun to resume). Regenerate them whenever the shipped model changes: the naturalness model
learns that model's failures.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from tqdm import tqdm

from bench.greetings import Writer
from bench.judges import HELDOUT_FRACTION
from training.judges.evaluation import in_heldout
from training.judges.naturalness import REPO, SAMPLES_FILE
from training.judges.train_side import STARTER_DIR, collect

def sample(out: Path, count: int, model: Path, seed: int = 0) -> None:
    side = collect(STARTER_DIR, None, exclude_query=lambda q: in_heldout(q, HELDOUT_FRACTION))
    queries = sorted({e.query for e in side.examples})
    random.Random(seed).shuffle(queries)
    done = {json.loads(line)["query"] for line in out.open(encoding="utf-8")} if out.is_file() else set()
    writer = Writer(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as f:
        for i, query in enumerate(tqdm(queries[:count], desc="samples", unit="request")):
            if query in done:
                continue
            for text in writer.write(query, seed=1000 + i, guarded=False):
                f.write(json.dumps({"query": query, "greeting": text}, ensure_ascii=False) + "\n")
            f.flush()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_FILE)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "zhufu-small")
    args = parser.parse_args(argv)
    sample(args.out, args.requests, args.model)


if __name__ == "__main__":
    main()
