"""The active judge's verdict on each studio candidate, and the order the cards show them in.

* ``judge_candidates(query, candidates)``: once a request's candidates are final (run_generation),
  the active judge (``webapp.judges.default.serving_judge``: loaded once per worker process) gives
  each a record (``webapp.judges.marks``: verdict, score, reason, per-principle marks) kept in
  ``Candidate.checks["judge"]``. No active judge: nothing is stored. A judge that fails leaves
  ``{"error": ...}`` there instead, and the request still finishes with its texts.
* ``in_card_order(finished, candidates)``: a finished request whose candidates all carry a score, best
  first (ties by index); anything else in index order, so cards being written stay in place.
* ``guard_scorer(query)``: the active judge's scores of texts for this request, for ``Guards.scorer``
  (the serve-time guards prefer the higher-scored text among equally bad ones).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from webapp.judges.default import serving_judge
from webapp.judges.marks import verdict_records
from webapp.judges.services import JudgeServiceError

logger = logging.getLogger(__name__)


def _served():
    try:
        return serving_judge()
    except Exception as exc:  # noqa: BLE001 — a judge that cannot load must not fail the writer's request
        logger.warning("the active judge cannot be loaded: %s", exc, exc_info=not isinstance(exc, JudgeServiceError))
        return None


def judge_candidates(query: str, candidates: Sequence) -> None:
    """Store the active judge's record in each candidate's checks (the caller saves them)."""
    served = _served()
    if served is None or not candidates:
        return
    version, judge = served
    try:
        records = verdict_records(judge, [query] * len(candidates), [c.text for c in candidates], version.name)
    except Exception as exc:  # noqa: BLE001 — a judge failure must not lose the writer's greetings
        logger.warning("judge %s failed on a studio request", version.name, exc_info=True)
        records = [{"error": f"评审失败 The judge failed: {type(exc).__name__}: {exc}"[:500], "judge": version.name}
                   for _ in candidates]
    for candidate, record in zip(candidates, records):
        candidate.checks = {**(candidate.checks or {}), "judge": record}


def judge_score(candidate) -> float | None:
    record = (candidate.checks or {}).get("judge") or {}
    return record.get("score")


def in_card_order(finished: bool, candidates: Sequence) -> list:
    by_index = sorted(candidates, key=lambda c: c.index)
    if not finished or any(judge_score(c) is None for c in by_index):
        return by_index
    return sorted(by_index, key=lambda c: -judge_score(c))


def guard_scorer(query: str) -> Callable[[Sequence[str]], list[float]] | None:
    served = _served()
    if served is None:
        return None
    _version, judge = served

    def scores(texts: Sequence[str]) -> list[float]:
        try:
            return list(judge.scores([query] * len(texts), list(texts)))
        except Exception:  # noqa: BLE001 — without the judge the guards keep the first of equals, as before
            logger.warning("the judge could not score the guards' drafts", exc_info=True)
            return [0.0] * len(texts)

    return scores
