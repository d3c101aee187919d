"""An LLM judge that hands over to the offline executors when its endpoint fails.

    judge = FallbackJudge(llm_judge, lambda: load_judge("principled", folder))
    judge.evaluate(query, greeting)   # the LLM's verdict, or the offline one saying why

When the endpoint is down (``JudgeUnavailable``: connection refused, timeouts, 5xx after the
retries) or answers garbage twice (``JudgeOutputInvalid``), the whole batch is judged by the
offline judge instead, and every such verdict's reason starts with what failed, so nobody reads
an offline verdict as the LLM's. The offline judge is built only the first time it is needed.
Other errors (a bad configuration, a 401) are not hidden: they are raised as they are.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from training.judges.base import Verdict
from training.judges.llm import JudgeOutputInvalid, JudgeUnavailable

FALLBACK_ERRORS = (JudgeUnavailable, JudgeOutputInvalid)
DETAIL_CHARS = 160  # of the endpoint's error, in the reason


def fallback_note(exc: Exception) -> str:
    """What a verdict judged offline says first (Chinese / English, like every reason)."""
    detail = str(exc).replace("\n", " ")[:DETAIL_CHARS]
    return (f"LLM 评审不可用，已改用离线执行器 / the LLM endpoint failed ({type(exc).__name__}: {detail}); "
            "judged by the offline executors")


class FallbackJudge:
    """The Judge protocol over `primary` (an LLM judge), falling back to `offline()` on endpoint failures."""

    def __init__(self, primary, offline: Callable[[], object]):
        self.primary = primary
        self._offline_factory = offline
        self._offline = None
        self.last_fallback: str | None = None  # the note of the last batch judged offline, None when the LLM judged

    @property
    def version(self) -> str:
        return self.primary.version

    @property
    def name(self) -> str:
        return getattr(self.primary, "name", self.version)

    def offline(self):
        if self._offline is None:
            self._offline = self._offline_factory()
        return self._offline

    def evaluate_many(self, queries: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        try:
            verdicts = self.primary.evaluate_many(queries, responses)
        except FALLBACK_ERRORS as exc:
            try:
                offline = self.offline()
            except Exception as missing:  # noqa: BLE001 — nothing to fall back to: the endpoint's error, with why
                raise type(exc)(f"{exc}; no offline judge to fall back to: {missing}") from exc
            note = self.last_fallback = fallback_note(exc)
            return [replace(v, reason=f"{note}；{v.reason}", judge_version=f"{offline.version} (fallback)")
                    for v in offline.evaluate_many(queries, responses)]
        self.last_fallback = None
        return verdicts

    def evaluate(self, query: str, response: str) -> Verdict:
        return self.evaluate_many([query], [response])[0]

    def scores(self, queries: Sequence[str], responses: Sequence[str]) -> list[float]:
        return [v.score for v in self.evaluate_many(queries, responses)]
