"""Does a greeting answer its request? ``python -m bench.greetings --json``

Side by side in one run, on two request sets (the team's held-out requests: the shipped model's
own split by query, plus the test half of requests_labelled.jsonl when present; and a seeded
sample of the prompts of ../shared/data/igniting/grpo_train.parquet):

* ``shipped``: the committed model through the serving path (slots prompt, guards, resampling);
* ``shipped_unguarded``: the same model, each place's first sample as it came;
* ``baseline`` (``--baseline DIR``): another checkpoint, e.g. the one `make demo` trained before
  a model was shipped, through the same serving path;
* ``human``: the team's own greetings for the held-out requests (where they exist).

Figures (training/rl/request_fit.py): request fit, wrong occasion, addressee fit, length fit,
repeat runs, novelty against the model's training greetings, distinct candidates per request;
plus ``--samples`` seeded random (request, greeting) rows per system, for reading.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from tqdm import tqdm

from generation.backends import LocalEngineBackend
from generation.checkpoint import load_checkpoint, read_metadata
from generation.conditioning import model_query
from generation.greeting import write_checked
from generation.guards import Guards
from generation.presets import get_preset
from generation.requests import parse_request
from training.data.examples import load_examples, split_by_query
from training.data.prompts import read_prompts
from training.metrics import SHARED_DATA, emit, format_table
from training.rl.pipeline import describe_backend
from training.rl.request_fit import request_figures

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "greetings.json"
LABELLED = REPO / "training" / "data" / "starter" / "requests_labelled.jsonl"
CANDIDATES = 3
COLUMNS = ["set", "system", "requests", "occasion_fit", "wrong_occasion", "addressee_fit", "length_fit", "repeat_run",
           "novelty", "distinct"]


class Writer:
    """One checkpoint behind the serving path, read as the server reads it."""

    def __init__(self, folder: Path):
        model, tokenizer = load_checkpoint(folder)
        self.backend = describe_backend(LocalEngineBackend.from_model(model, tokenizer, max_slots=8), folder,
                                        folder.name)
        self.copies = self.backend.copies

    def write(self, request: str, seed: int, guarded: bool) -> list[str]:
        slots = parse_request(request)
        query = model_query(request, self.backend.prompt_format, slots)
        guards = Guards(slots, self.copies) if guarded else None
        return [d.text for d in write_checked(self.backend, query, CANDIDATES, guards=guards, seed=seed)]


def team_heldout(folder: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The held-out requests of the model's own split by query, with the team's greetings for each."""
    meta = read_metadata(folder)
    paths = [REPO / p for p in (meta.get("data") or {}).get("paths", [])]
    preset = get_preset(meta.get("preset", "small"))
    seed = (meta.get("train_config") or {}).get("seed", 0)
    _, heldout = split_by_query(load_examples(paths), preset.heldout_fraction, seed)
    human: dict[str, list[str]] = {}
    for query, response in heldout:
        human.setdefault(query, []).append(response)
    requests = sorted(human)
    if LABELLED.is_file():
        rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
        requests += [r["text"] for r in rows if r.get("split") == "test" and r["text"] not in human]
    return requests, human


def shared_prompts(count: int, seed: int) -> list[str]:
    path = SHARED_DATA / "grpo_train.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the bench reads the paper's prompts from {SHARED_DATA}")
    prompts = sorted(read_prompts(path, formats=None))
    random.Random(seed).shuffle(prompts)
    return prompts[:count]


def run_system(name: str, requests: list[str], write, seed: int) -> list[tuple[str, list[str]]]:
    groups = []
    for i, request in enumerate(tqdm(requests, desc=name, unit="request", dynamic_ncols=True)):
        groups.append((request, write(request, seed + i)))
    return groups


def samples_of(groups, count: int, seed: int) -> list[dict]:
    rows = [{"request": r, "greeting": t} for r, texts in groups for t in texts[:1]]
    return random.Random(seed).sample(rows, min(count, len(rows)))


def run(model: Path, baseline: Path | None, team_count: int, shared_count: int, seed: int, sample_count: int) -> dict:
    started = time.perf_counter()
    shipped = Writer(model)
    team_requests, human = team_heldout(model)
    team_requests = random.Random(seed).sample(team_requests, min(team_count, len(team_requests)))
    sets = {"team_heldout": team_requests, "grpo_prompts": shared_prompts(shared_count, seed)}
    systems = {"shipped": lambda r, s: shipped.write(r, s, guarded=True),
               "shipped_unguarded": lambda r, s: shipped.write(r, s, guarded=False)}
    if baseline is not None:
        other = Writer(baseline)
        systems["baseline"] = lambda r, s: other.write(r, s, guarded=True)
    rows, samples = [], {}
    for set_name, requests in sets.items():
        for system, write in systems.items():
            groups = run_system(f"{set_name}/{system}", requests, write, seed)
            rows.append({"set": set_name, "system": system, **request_figures(groups, shipped.copies)})
            samples[f"{set_name}/{system}"] = samples_of(groups, sample_count, seed)
        if set_name == "team_heldout":
            groups = [(r, human[r]) for r in requests if r in human]
            rows.append({"set": set_name, "system": "human", **request_figures(groups, None)})
            samples[f"{set_name}/human"] = samples_of(groups, sample_count, seed)
    return {"model": str(model), "baseline": str(baseline) if baseline else None, "seed": seed,
            "candidates_per_request": CANDIDATES, "rows": rows, "samples": samples,
            "wall_s": round(time.perf_counter() - started, 1)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "models" / "zhufu-small")
    parser.add_argument("--baseline", type=Path, default=None, help="a checkpoint folder to compare with")
    parser.add_argument("--team", type=int, default=150, help="how many team held-out requests (a seeded sample)")
    parser.add_argument("--shared", type=int, default=60, help="how many grpo_train prompts")
    parser.add_argument("--samples", type=int, default=20, help="seeded random samples per system")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    summary = run(args.model, args.baseline, args.team, args.shared, args.seed, args.samples)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, ensure_ascii=False, indent=2), encoding="utf-8")
    emit(summary, format_table(summary["rows"], COLUMNS), args.json)


if __name__ == "__main__":
    main()
