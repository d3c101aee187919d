"""A judge's verdicts as plain records: what studio cards and judge Labels store.

    verdict_records(judge, queries, texts, judge_name) -> [{"verdict", "score", "reason", "judge", "principles"}]

"principles" holds, for a judge with one executor per principle (training.judges.principled), each
principle's mark in the set's order: {"name", "label" ("中文 / English"), "passed", "score",
"reason" (its one line, when it failed)}. It is empty for other judges, and for a text that is no
greeting at all (empty, not Chinese): that verdict is Bad and its reason says why. Scores are
rounded to 4 places: records go into JSON fields and pages.
"""
from __future__ import annotations

from collections.abc import Sequence

from training.judges.base import Verdict
from training.judges.principled import unusable


def verdicts_of(judge, queries: Sequence[str], texts: Sequence[str]) -> list[Verdict]:
    if hasattr(judge, "evaluate_many"):
        return judge.evaluate_many(list(queries), list(texts))
    return [judge.evaluate(q, t) for q, t in zip(queries, texts)]


def principle_marks(judge, queries: Sequence[str], texts: Sequence[str]) -> list[list[dict]]:
    """Each text's per-principle marks (empty lists when the judge has no principles to report)."""
    out: list[list[dict]] = [[] for _ in texts]
    principles = getattr(judge, "principles", None)
    if not principles or not callable(getattr(judge, "marks", None)):
        return out
    usable = [i for i, text in enumerate(texts) if unusable(text or "") is None]
    marks = judge.marks([queries[i] or "" for i in usable], [texts[i] for i in usable])
    for i, by_name in zip(usable, marks):
        out[i] = [{"name": p.name, "label": f"{p.zh} / {p.en}", "passed": not by_name[p.name].failed,
                   "score": round(float(by_name[p.name].score), 4), "reason": by_name[p.name].reason}
                  for p in principles]
    return out


def verdict_records(judge, queries: Sequence[str], texts: Sequence[str], judge_name: str) -> list[dict]:
    verdicts = verdicts_of(judge, queries, texts)
    marks = principle_marks(judge, queries, texts)
    return [{"verdict": v.verdict, "score": round(float(v.score), 4), "reason": v.reason, "judge": judge_name,
             "principles": m} for v, m in zip(verdicts, marks)]
