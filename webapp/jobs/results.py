"""A finished job's result as people read it: metric rows in a table, sample greetings as
request | greeting rows, and the figures that signal a problem flagged with the bar they miss.

The bars: novelty is the promotion gate's own floor (training.rl.gate.GateConfig.min_novelty);
the others are plain signs that something is off (most greetings fail the judge, greetings cut
off by the token limit, empty greetings), named as such on the page."""
from __future__ import annotations

from dataclasses import dataclass

from training.rl.gate import GateConfig

HIDDEN = {"samples", "per_prompt_pass", "failed_field", "fix_url", "fix_label"}  # shown elsewhere, or bookkeeping
LONGEST_VALUE = 120  # characters; per-layer lists can be long
TRUNCATED_BAR = 0.05


@dataclass
class Row:
    name: str
    value: str
    flag: str = ""  # what is wrong, when something is
    bar: str = ""  # the bar the value misses


def readable(value) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if 1e4 <= abs(value) < 1e12 else f"{value:.4g}"  # 17,184 tokens/s, not 1.718e+04
    if isinstance(value, (list, tuple)):
        text = "[" + ", ".join(readable(v) for v in value) + "]"
        return text if len(text) <= LONGEST_VALUE else text[: LONGEST_VALUE - 1] + "…"
    return str(value)


def flat_items(result: dict, prefix: str = ""):
    """(dotted name, value) of every figure, nested dicts flattened (after.lengths.mean)."""
    for key, value in result.items():
        if key in HIDDEN:
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from flat_items(value, name + ".")
        else:
            yield name, value


def problem(name: str, value, result: dict) -> tuple[str, str]:
    """(what is wrong, the bar) for a figure that signals a problem, else ("", "")."""
    leaf = name.rsplit(".", 1)[-1]
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if leaf == "novelty":
        bar = GateConfig().min_novelty
        if value is None:
            return "新颖度未知 unknown: no training greetings to compare with (the gate refuses)", f"≥ {bar:.2f}"
        if number and value < bar:
            owner = result_part(result, name)
            copies = owner.get("copies")
            of = f": {copies} of {owner.get('greetings')} greetings copy a training greeting" if copies is not None else ""
            return f"低于晋升门槛 below the promotion gate's bar{of}", f"≥ {bar:.2f}"
    if leaf == "pass_rate" and number and value < 0.5:
        return "多数祝福未通过评审 most greetings fail the judge", "≥ 0.50 (half)"
    if leaf == "truncated" and number and value > TRUNCATED_BAR:
        return "被长度上限截断 cut off by the token limit", f"≤ {TRUNCATED_BAR:.0%}"
    if leaf == "empty" and number and value > 0:
        return "有空白祝福 empty greetings", "0"
    return "", ""


def result_part(result: dict, dotted: str) -> dict:
    """The dict that holds a dotted name's figure (the report a nested novelty belongs to)."""
    part = result
    for key in dotted.split(".")[:-1]:
        part = part.get(key, {}) if isinstance(part, dict) else {}
    return part if isinstance(part, dict) else {}


def samples_of(result: dict) -> list[dict]:
    """Sample greetings: the report's own, else the candidate's (an RLAIF round's `after`)."""
    for source in (result, result.get("after")):
        if isinstance(source, dict) and isinstance(source.get("samples"), list):
            return [s for s in source["samples"] if isinstance(s, dict) and "greeting" in s]
    return []


def present(result) -> dict:
    """{"rows": [Row], "problems": [Row], "samples": [{query, greeting}], "reasons": [(text, ok)]}."""
    if not isinstance(result, dict):
        return {"rows": [Row("result", readable(result))], "problems": [], "samples": [], "reasons": []}
    rows = []
    for name, value in flat_items(result):
        if name.startswith("decision.reasons") or name.startswith("decision.checks"):
            continue
        flag, bar = problem(name, value, result)
        rows.append(Row(name, readable(value), flag, bar))
    decision = result.get("decision") if isinstance(result.get("decision"), dict) else {}
    checks = decision.get("checks") or {}
    reasons = [(text, _reason_ok(text, checks)) for text in decision.get("reasons") or []]
    return {"rows": rows, "problems": [r for r in rows if r.flag], "samples": samples_of(result), "reasons": reasons}


# How training.rl.gate's reasons begin, per check.
REASON_OPENINGS = {"pass_rate": "pass rate", "novelty": "novelty", "diversity": "distinct-2"}


def _reason_ok(text: str, checks: dict) -> bool:
    """A gate reason is a problem when the check it speaks of failed."""
    for check, ok in checks.items():
        if text.startswith(REASON_OPENINGS.get(check, check.replace("_", " "))):
            return bool(ok)
    return True
