"""Request understanding against hand labels: ``python -m bench.requests [--split dev|test|all] [--json]``

Scores generation.requests.parse_request on training/data/starter/requests_labelled.jsonl, whose
labels say what a careful reader takes each request to ask for (not what the parser says). Per
slot (occasion, addressee, tone, length kind+target, length kind alone, count, age):
precision = right values among the rows where the parser gave a value, recall = right values
among the rows whose label has a value, accuracy = rows where parser and label agree exactly,
"no value" included. Details: the fraction of labelled detail phrases found in slots.details.

The parser is tuned on the dev split only; test is read for the final figures. ``--errors``
lists the dev rows the parser gets wrong (it refuses the test split). Writes every split's
figures to bench/results/requests.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from generation.requests import RequestSlots, parse_request
from training.metrics import emit, format_table

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "training" / "data" / "starter" / "requests_labelled.jsonl"
RESULTS = ROOT / "bench" / "results" / "requests.json"
SPLITS = ("dev", "test", "all")
SLOTS = ("occasion", "addressee", "tone", "length", "length_kind", "count", "age")


def load_labels(path: Path = LABELS) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def rows_of(split: str, rows: list[dict]) -> list[dict]:
    return rows if split == "all" else [r for r in rows if r["split"] == split]


def _length_kind(rendered: str | None) -> str | None:
    """'12字' and '20字' are one kind (N字); the named lengths are their own kind."""
    if not rendered:
        return None
    return "N字" if rendered.endswith("字") and rendered[:-1].isdigit() else rendered


def predicted_values(slots: RequestSlots) -> dict:
    length = slots.length.render() if slots.length else None
    return {"occasion": slots.occasion, "addressee": slots.addressee, "tone": slots.tone, "length": length,
            "length_kind": _length_kind(length), "count": slots.count, "age": slots.age}


def labelled_values(row: dict) -> dict:
    length = row["length"] or None
    return {"occasion": row["occasion"], "addressee": row["addressee"], "tone": row["tone"], "length": length,
            "length_kind": _length_kind(length), "count": row["count"], "age": row["age"]}


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def slot_figures(pairs: list[tuple[object, object]]) -> dict:
    """Precision, recall and accuracy of (predicted, labelled) pairs, None meaning 'no value'."""
    predicted = sum(p is not None for p, _ in pairs)
    labelled = sum(g is not None for _, g in pairs)
    right = sum(p is not None and p == g for p, g in pairs)
    return {"precision": _ratio(right, predicted), "recall": _ratio(right, labelled),
            "accuracy": _ratio(sum(p == g for p, g in pairs), len(pairs)),
            "predicted": predicted, "labelled": labelled}


def details_found(rows: list[dict], parsed: list[RequestSlots]) -> dict:
    phrases = [(d, slots.details) for row, slots in zip(rows, parsed) for d in row["details"]]
    return {"found": _ratio(sum(d in details for d, details in phrases), len(phrases)), "phrases": len(phrases)}


def score(rows: list[dict]) -> dict:
    parsed = [parse_request(r["text"]) for r in rows]
    predicted = [predicted_values(s) for s in parsed]
    labelled = [labelled_values(r) for r in rows]
    slots = {name: slot_figures([(p[name], g[name]) for p, g in zip(predicted, labelled)]) for name in SLOTS}
    all_right = sum(all(p[n] == g[n] for n in SLOTS) for p, g in zip(predicted, labelled))
    return {"rows": len(rows), "slots": slots, "details": details_found(rows, parsed),
            "all_slots_right": _ratio(all_right, len(rows))}


def errors(rows: list[dict]) -> list[dict]:
    """Rows where a slot or a detail phrase is missed: text, slot -> (parsed, labelled)."""
    wrong = []
    for row in rows:
        slots = parse_request(row["text"])
        p, g = predicted_values(slots), labelled_values(row)
        diff = {n: (p[n], g[n]) for n in SLOTS if n != "length_kind" and p[n] != g[n]}
        missing = [d for d in row["details"] if d not in slots.details]
        if diff or missing:
            wrong.append({"text": row["text"], "diff": diff, "missing_details": missing, "details": slots.details})
    return wrong


def table(summary: dict) -> str:
    rows = [{"slot": name, **{k: v for k, v in figures.items()}} for name, figures in summary["slots"].items()]
    rows.append({"slot": "details", "recall": summary["details"]["found"], "labelled": summary["details"]["phrases"]})
    rows.append({"slot": "all slots", "accuracy": summary["all_slots_right"], "labelled": summary["rows"]})
    return format_table(rows, ["slot", "precision", "recall", "accuracy", "predicted", "labelled"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=SPLITS, default="dev")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--errors", action="store_true", help="list the dev rows the parser gets wrong")
    args = parser.parse_args()
    labels = load_labels()
    if args.errors:
        if args.split != "dev":
            parser.error("--errors lists dev rows only: the test split is not for tuning")
        for e in errors(rows_of("dev", labels)):
            print(json.dumps(e, ensure_ascii=False))
        return
    results = {split: score(rows_of(split, labels)) for split in SPLITS}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    summary = {"split": args.split, **results[args.split]}
    emit(summary, f"split: {args.split} ({summary['rows']} requests)\n" + table(summary), args.json)


if __name__ == "__main__":
    main()
