"""Adversarial optimisation with reflection for the principled judge, offline (no endpoint).

    python -m training.judges.adversarial_offline --judge DIR [--labelled FILE] [--model-outputs FILE] \
        [--rounds 3] [--attacks 200] [--save DIR] [--out bench/results/adversarial_principled.json]

The game of training.judges.adversarial with local players. Attack: adversarial.py's perturbations,
negatives.py's rule-made corruptions and the local model's greetings for an incompatible occasion,
weighted by S_G. Reflect: for the attacks that passed, revisions that tighten the nearest-miss
principle's threshold, switch a dropped gate on or allow one stock phrase fewer. Decide: kept only
when held-out agreement does not drop and the attack success rate falls; the lowest ASR wins and
``--save`` writes it as a new judge version (name suffixed ``+advN``).
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generation.requests import occasions_compatible, parse_request
from training.judges.adversarial import PERTURBATIONS, Attack
from training.judges.base import GOOD
from training.judges.data import load_labeled
from training.judges.evaluation import LabeledItem, binary_metrics
from training.judges.negatives import MAKERS, OccasionPool
from training.judges.principled import SHARED_DIR, PrincipledJudge
from training.judges.registry import query_hash, read_trained_queries
from training.judges.train_side import Example, slots_of

QUANTILES = (0.02, 0.03, 0.05, 0.08, 0.12)  # of good reflection greetings a tightened principle may fail
LEARNED = ("coherence", "preference", "fluency")  # principles with a calibrated threshold
SPLIT_SALT = "adversarial-offline"


@dataclass
class Revision:
    name: str
    changes: dict  # calibration key -> new value


# --------------------------------------------------------------------------------------------
# The attacker


def model_attacks(outputs: Sequence[tuple[str, str]], rng: random.Random, count: int) -> list[Attack]:
    """The local model's greetings judged under a request of an incompatible occasion."""
    by_occasion: dict[str, list[str]] = {}
    for query, _text in outputs:
        occasion = parse_request(query).occasion
        if occasion:
            by_occasion.setdefault(occasion, []).append(query)
    attacks = []
    for query, text in rng.sample(list(outputs), min(len(outputs), count * 3)):
        occasion = parse_request(query).occasion
        others = [o for o in by_occasion if occasion and not occasions_compatible(o, occasion)]
        if not others or not text.strip():
            continue
        attacks.append(Attack(rng.choice(by_occasion[rng.choice(others)]), text, "model_other_request", "model"))
        if len(attacks) == count:
            break
    return attacks


def corruption_attacks(seeds: Sequence[tuple[str, str]], kind: str, rng: random.Random, count: int) -> list[Attack]:
    examples = [Example(q, g, *slots_of(q), "labelled") for q, g in seeds]
    pool = OccasionPool(examples)
    attacks = []
    for example in rng.sample(examples, len(examples)):
        made = MAKERS[kind](example, pool, rng)
        if made and made[1].strip() and made != (example.query, example.greeting):
            attacks.append(Attack(made[0], made[1], kind, "negatives"))
        if len(attacks) == count:
            break
    return attacks


def make_attacks(seeds, outputs, weights: dict[str, float], count: int, rng: random.Random) -> list[Attack]:
    """`count` attacks split over the strategies by weight."""
    total = sum(weights.values())
    attacks = []
    for strategy, weight in sorted(weights.items()):
        n = max(1, round(count * weight / total))
        if strategy == "model_other_request":
            attacks += model_attacks(outputs, rng, n)
        elif strategy in MAKERS:
            attacks += corruption_attacks(seeds, strategy, rng, n)
        else:
            for _ in range(n):
                query, greeting = rng.choice(seeds)
                flawed = PERTURBATIONS[strategy](query, greeting, rng, seeds)
                if flawed != greeting:
                    attacks.append(Attack(query, flawed, strategy))
    return attacks


def strategies(with_model: bool) -> dict[str, float]:
    names = [*PERTURBATIONS, *(k for k in MAKERS if k != "repeated")] + (["model_other_request"] if with_model else [])
    return {name: 1.0 for name in names}


# --------------------------------------------------------------------------------------------
# Measuring and reflecting


def measure(judge, attacks: Sequence[Attack], heldout: Sequence[LabeledItem]) -> dict:
    verdicts = judge.evaluate_many([a.query for a in attacks] + [i.query for i in heldout],
                                   [a.greeting for a in attacks] + [i.response for i in heldout])
    fooled = [v.verdict == GOOD for v in verdicts[: len(attacks)]]
    labels = binary_metrics([i.label for i in heldout], [int(v.verdict == GOOD) for v in verdicts[len(attacks):]])
    per = Counter(a.strategy for a in attacks)
    hit = Counter(a.strategy for a, f in zip(attacks, fooled) if f)
    return {"attack_success_rate": sum(fooled) / max(1, len(attacks)), "fooled": sum(fooled), "attacks": len(attacks),
            "agreement": labels["accuracy"], "kappa": labels["kappa"], "heldout": labels["count"],
            "per_strategy": {s: {"fooled": hit[s], "attacks": per[s]} for s in sorted(per)}}


def principle_scores(judge, queries, greetings) -> dict[str, np.ndarray]:
    marks = judge.marks(list(queries), list(greetings))
    return {name: np.array([m[name].score for m in marks]) for name in (marks[0] if marks else {})}


def propose(judge, fooled: Sequence[Attack], good: Sequence[tuple[str, str]]) -> list[Revision]:
    """Candidate revisions for what fooled the judge: the nearest-miss principles tightened to
    quantiles of good greetings, dropped gates switched on, one free stock phrase fewer."""
    if not fooled:
        return []
    calibration = judge.components.calibration
    key = {"coherence": "coherence_threshold", "preference": "preference_threshold", "fluency": "fluency_threshold"}
    good_scores = principle_scores(judge, [q for q, _ in good], [g for _, g in good])
    bad_scores = principle_scores(judge, [a.query for a in fooled], [a.greeting for a in fooled])
    nearest = Counter()
    for i in range(len(fooled)):  # margin in units of the good greetings' spread
        margins = {p: (bad_scores[p][i] - (calibration.get(key[p]) or 0.0)) / (good_scores[p].std() + 1e-6)
                   for p in LEARNED if p in bad_scores}
        nearest[min(margins, key=margins.get)] += 1
    revisions = []
    for principle, _n in nearest.most_common():
        for q in QUANTILES:
            cut = round(float(np.quantile(good_scores[principle], q)), 6)
            if cut > (calibration.get(key[principle]) or 0.0):
                revisions.append(Revision(f"{principle}>=q{q:.2f}", {key[principle]: cut}))
    z = np.array([judge.overall(m) for m in judge.marks([q for q, _ in good], [g for _, g in good])])
    for q in QUANTILES:
        step = float(np.quantile(z, q))
        if step > 0:
            revisions.append(Revision(f"overall>=q{q:.2f}", {"overall_threshold": round(calibration["overall_threshold"] + step, 5)}))
    for gate in ("gate_copy", "gate_cliche_pile"):
        if not calibration.get(gate, True):
            revisions.append(Revision(f"{gate} on", {gate: True}))
    if calibration.get("free_cliches", 0) > 0:
        revisions.append(Revision("one free stock phrase fewer", {"free_cliches": calibration["free_cliches"] - 1}))
    return revisions


def revised(judge, revision: Revision, name: str):
    candidate = copy.copy(judge)
    candidate.components = copy.copy(judge.components)
    candidate.components.calibration = {**judge.components.calibration, **revision.changes}
    candidate.name = name
    return candidate


def halves_by_query(items: Sequence[LabeledItem]) -> tuple[list[LabeledItem], list[LabeledItem]]:
    """Reflection and held-out halves by a salted hash of the query: unsalted, a set that is itself
    the bench's held-out side (hash below 15%) would land wholly on one side."""
    reflect, heldout = [], []
    for item in items:
        digest = int(hashlib.sha256(f"{SPLIT_SALT}:{item.query.strip()}".encode()).hexdigest()[:8], 16)
        (heldout if digest % 2 else reflect).append(item)
    return reflect, heldout


def optimise(judge, labelled: Sequence[LabeledItem], outputs: Sequence[tuple[str, str]] = (), rounds: int = 3,
             attacks_per_round: int = 200, seed: int = 0) -> dict:
    """Play the rounds; returns {"best": judge, "rounds": [...], "split": {...}}."""
    reflect_items, heldout = halves_by_query(labelled)
    good = [(i.query, i.response) for i in reflect_items if i.label == 1]
    if not good or not heldout:
        raise ValueError(f"labelled: {len(labelled)} items leave {len(good)} good reflection greetings and "
                         f"{len(heldout)} held out; need both")
    rng = random.Random(seed)
    weights = strategies(bool(outputs))
    current, records, base_name = judge, [], judge.name
    for index in range(1, rounds + 1):
        attacks = make_attacks(good, outputs, weights, attacks_per_round, rng)
        before = measure(current, attacks, heldout)
        verdicts = current.evaluate_many([a.query for a in attacks], [a.greeting for a in attacks])
        fooled = [a for a, v in zip(attacks, verdicts) if v.verdict == GOOD]
        tried = []
        for revision in propose(current, fooled, good):
            after = measure(revised(current, revision, current.name), attacks, heldout)
            accepted = after["agreement"] >= before["agreement"] and after["attack_success_rate"] < before["attack_success_rate"]
            tried.append({"revision": revision.name, "changes": revision.changes, "accepted": accepted,
                          "attack_success_rate": after["attack_success_rate"], "agreement": after["agreement"],
                          "kappa": after["kappa"]})
        kept = [t for t in tried if t["accepted"]]
        best = min(kept, key=lambda t: (t["attack_success_rate"], -t["agreement"])) if kept else None
        if best is not None:
            current = revised(current, Revision(best["revision"], best["changes"]), f"{base_name}+adv{index}")
        records.append({"round": index, "before": before, "fooled": len(fooled), "revisions_tried": tried,
                        "kept": best, "after": measure(current, attacks, heldout) if best else before})
        for name, hits in before["per_strategy"].items():  # S_G: what fooled the judge weighs more
            weights[name] = 1.0 + 2.0 * hits["fooled"] / max(1, hits["attacks"])
        records[-1]["strategy_weights_next"] = dict(weights)
    return {"best": current, "rounds": records, "improved": current is not judge,
            "split": {"reflection_items": len(reflect_items), "heldout_items": len(heldout), "attack_seeds": len(good)}}


def read_outputs(path: Path) -> list[tuple[str, str]]:
    """(request, greeting) rows from a bench.grpo_principled evaluation report (its prompts mapped
    back through its "requests"; a slot prefix parses to the same slots when that is missing) or
    from JSON lines of {"query", "greeting"}."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("{") and '"all_greetings"' in text:
        report = json.loads(text)
        requests = report.get("requests", {})
        return [(requests.get(r["query"], r["query"]), r["greeting"]) for r in report["all_greetings"]]
    return [(r["query"], r["greeting"]) for r in map(json.loads, filter(str.strip, text.splitlines()))]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--judge", type=Path, required=True, help="a principled judge folder")
    parser.add_argument("--labelled", type=Path, default=SHARED_DIR / "evaluate_data.json")
    parser.add_argument("--model-outputs", type=Path, help="the local model's greetings (bench.grpo_principled's before.json)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--attacks", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--include-trained", action="store_true",
                        help="keep labelled items whose query the judge trained on (by default they are left out)")
    parser.add_argument("--save", type=Path, help="write the best revision here as a new judge version")
    parser.add_argument("--out", type=Path, help="write the rounds as JSON here")
    args = parser.parse_args(argv)
    for name in ("rounds", "attacks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    judge = PrincipledJudge.load(args.judge)
    trained = set() if args.include_trained else read_trained_queries(args.judge) or set()
    labelled = [i for i in load_labeled(args.labelled) if query_hash(i.query) not in trained]
    outputs = read_outputs(args.model_outputs) if args.model_outputs else []
    result = optimise(judge, labelled, outputs, args.rounds, args.attacks, args.seed)
    report = {"judge": str(args.judge), "labelled": str(args.labelled), "labelled_unseen": len(labelled),
              "model_outputs": len(outputs), "improved": result["improved"], "best_name": result["best"].name,
              "best_calibration_changes": {k: v for k, v in result["best"].components.calibration.items()
                                           if judge.components.calibration.get(k) != v},
              "split": result["split"], "rounds": result["rounds"]}
    for record in report["rounds"]:
        print(f"round {record['round']}: ASR {record['before']['attack_success_rate']:.3f} -> "
              f"{record['after']['attack_success_rate']:.3f}, agreement {record['before']['agreement']:.3f} -> "
              f"{record['after']['agreement']:.3f}, kept {record['kept']['revision'] if record['kept'] else None}")
    if args.save and result["improved"]:
        result["best"].save(args.save)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
