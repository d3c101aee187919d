"""Greeting-side occasion cues on the team's good greetings: ``python -m bench.occasion_cues [--json] [--list]``

The occasion guard rejects a candidate that names an occasion other than the one asked
(generation.guards.occasion_fit, via generation.requests.occasions_named). Measured on the good
greetings of training/data/starter/greetings.jsonl (label 1), each read with its own occasion:

- false_other_rate: greetings that name an occasion incompatible with their own (the guard would
  throw away a good greeting). Goal: at most 1%.
- detection_rate: each good greeting of occasion X paired with a request for every occasion Y
  incompatible with X; the fraction of pairs where the greeting names an occasion incompatible
  with Y (the guard catches a wrong-occasion candidate). Goal: at least 0.9 on the festivals
  and the events greetings name explicitly (EXPLICIT below).
- names_own_rate: greetings that name their own occasion (or a compatible one); shown for reading.

Rows whose occasion has no canonical value (成人礼, 医师节, 同学聚会, 创业) are left out and counted.
``--list`` prints the false "other occasion" greetings and the missed ones. Writes
bench/results/occasion_cues.json.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from generation.guards import wrong_occasions
from generation.requests import OCCASIONS, UnknownSlotValue, normalise_slot, occasions_compatible, occasions_named
from training.metrics import emit, format_table

ROOT = Path(__file__).resolve().parents[1]
GREETINGS = ROOT / "training" / "data" / "starter" / "greetings.jsonl"
RESULTS = ROOT / "bench" / "results" / "occasion_cues.json"
# Corpus occasion labels that stand for more than one canonical occasion.
LABEL_OCCASIONS = {"离职送别": ("离职", "送别"), "新年": ("春节", "元旦")}
# Festivals and events a greeting names in so many words (中秋快乐, 生日快乐, 新婚快乐); the
# everyday ones (早安, 感谢, 送别, 出行, 考试...) are often only evoked, so they are reported apart.
EXPLICIT = frozenset(OCCASIONS[:24]) | {
    "生日", "结婚", "结婚纪念日", "订婚", "满月", "百天", "周岁", "宝宝出生", "高考", "中考", "考研", "毕业",
    "开学", "入职", "升职", "退休", "开业", "乔迁", "康复",
}
FALSE_OTHER_GOAL, DETECTION_GOAL = 0.01, 0.9


def label_occasions(label: str) -> tuple[str, ...]:
    """The canonical occasions a corpus label stands for; () when none fits."""
    if label in LABEL_OCCASIONS:
        return LABEL_OCCASIONS[label]
    try:
        return (normalise_slot("occasion", label),)
    except UnknownSlotValue:
        return ()


def good_greetings(path: Path = GREETINGS) -> tuple[list[dict], int]:
    """(label-1 rows with their canonical occasions, how many rows had none)."""
    rows, left_out = [], 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("label") != 1:
                continue
            own = label_occasions(row.get("occasion", ""))
            if own:
                rows.append({"text": row["response"], "label": row["occasion"], "own": own})
            else:
                left_out += 1
    return rows, left_out


def other_occasions(row: dict, named: set[str]) -> set[str]:
    """Named occasions compatible with none of the row's own ones."""
    return {o for o in named if not any(occasions_compatible(o, own) for own in row["own"])}


def wrong_requests(row: dict) -> list[str]:
    """Occasions a request could ask for that this greeting does not fit."""
    return [y for y in OCCASIONS if not any(occasions_compatible(y, own) for own in row["own"])]


def measure(rows: list[dict]) -> dict:
    per_occasion = defaultdict(lambda: {"greetings": 0, "false_other": 0, "pairs": 0, "caught": 0, "names_own": 0})
    false_other, missed = [], []
    for row in rows:
        named = occasions_named(row["text"])
        others = other_occasions(row, named)
        requests = wrong_requests(row)
        caught = sum(bool(wrong_occasions(y, named)) for y in requests)
        names_own = any(occasions_compatible(o, own) for o in named for own in row["own"])
        figures = per_occasion[row["own"][0]]
        figures["greetings"] += 1
        figures["false_other"] += bool(others)
        figures["pairs"] += len(requests)
        figures["caught"] += caught
        figures["names_own"] += names_own
        if others:
            false_other.append({"label": row["label"], "named": sorted(others), "text": row["text"]})
        if caught < len(requests):
            missed.append({"label": row["label"], "named": sorted(named), "text": row["text"]})
    return {"per_occasion": dict(per_occasion), "false_other": false_other, "missed": missed}


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def summarise(per_occasion: dict, keep=lambda occasion: True) -> dict:
    chosen = [f for o, f in per_occasion.items() if keep(o)]
    total = {k: sum(f[k] for f in chosen) for k in ("greetings", "false_other", "pairs", "caught", "names_own")}
    return {"greetings": total["greetings"], "false_other_rate": _rate(total["false_other"], total["greetings"]),
            "detection_rate": _rate(total["caught"], total["pairs"]),
            "names_own_rate": _rate(total["names_own"], total["greetings"])}


def run() -> dict:
    rows, left_out = good_greetings()
    measured = measure(rows)
    per = measured["per_occasion"]
    overall = summarise(per)
    explicit = summarise(per, lambda o: o in EXPLICIT)
    return {
        "greetings": len(rows), "left_out_no_canonical_occasion": left_out,
        "false_other_rate": overall["false_other_rate"], "false_other_goal": FALSE_OTHER_GOAL,
        "detection_rate": overall["detection_rate"], "detection_rate_explicit": explicit["detection_rate"],
        "detection_goal_explicit": DETECTION_GOAL, "names_own_rate": overall["names_own_rate"],
        "groups": {"all": overall, "explicit": explicit, "other": summarise(per, lambda o: o not in EXPLICIT)},
        "per_occasion": {o: {**f, **summarise(per, lambda x, o=o: x == o)} for o, f in sorted(per.items())},
        "false_other": measured["false_other"], "missed": measured["missed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--list", action="store_true", help="print the false-other and the missed greetings")
    args = parser.parse_args()
    summary = run()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    groups = [{"group": name, **figures} for name, figures in summary["groups"].items()]
    text = format_table(groups, ["group", "greetings", "false_other_rate", "detection_rate", "names_own_rate"])
    text += "\n\n" + format_table([{"occasion": o, **f} for o, f in summary["per_occasion"].items()],
                                  ["occasion", "greetings", "false_other", "detection_rate", "names_own_rate"])
    if args.list:
        text += "\n\nfalse other occasion:\n" + "\n".join(
            f"  [{e['label']}] names {','.join(e['named'])}: {e['text']}" for e in summary["false_other"])
        text += "\n\nmissed:\n" + "\n".join(
            f"  [{e['label']}] names {','.join(e['named']) or '-'}: {e['text']}" for e in summary["missed"])
    emit({k: v for k, v in summary.items() if k not in ("false_other", "missed")}, text, args.json)


if __name__ == "__main__":
    main()
