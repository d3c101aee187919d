"""Load a judge object from its kind and folder (no Django), and the training-query record
that lets evaluation exclude what a judge was trained on.

    judge = load_judge("tfidf", Path("var/judges/tfidf-1"))
    judge = load_judge("llm", None, config={...LLMJudgeConfig fields...}, principles={...})
"""
from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from pathlib import Path
from typing import Iterable

from training.judges.length import LengthJudge
from training.judges.llm import LLMJudge, LLMJudgeConfig

KINDS = ("length", "tfidf", "reward_model", "llm", "principled")
TRAINED_QUERIES_FILE = "trained_queries.json"


class JudgeLoadError(Exception):
    """A judge that cannot be built from what was recorded; the message names the problem."""


def query_hash(query: str) -> str:
    """The hash stored for a training query: sha256 of its NFC, stripped text."""
    return hashlib.sha256(unicodedata.normalize("NFC", query).strip().encode("utf-8")).hexdigest()


def write_trained_queries(folder: Path, queries: Iterable[str]) -> Path:
    """Record (as hashes, not text) the queries a judge was trained or calibrated on."""
    hashes = sorted({query_hash(q) for q in queries})
    path = Path(folder) / TRAINED_QUERIES_FILE
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"hash": "sha256(NFC(query).strip())", "count": len(hashes), "queries": hashes}),
                   encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_trained_queries(folder: Path | None) -> set[str] | None:
    """The recorded query hashes, or None when the judge has no record (or no folder)."""
    if folder is None:
        return None
    path = Path(folder) / TRAINED_QUERIES_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        hashes = data["queries"]
    except (ValueError, KeyError, TypeError) as exc:
        raise JudgeLoadError(f"{path}: unreadable training-query record ({exc})") from exc
    if not isinstance(hashes, list) or not all(isinstance(h, str) for h in hashes):
        raise JudgeLoadError(f"{path}: 'queries' must be a list of hashes")
    return set(hashes)


def load_judge(kind: str, folder: Path | str | None, *, name: str | None = None, config: dict | None = None,
               principles: dict | None = None, cache=None):
    """A judge object (Judge protocol) for `kind`.

    * length: config {"threshold": int}
    * tfidf, reward_model: the folder their training wrote
    * principled: the folder training.judges.principled wrote (python -m training.judges.principled --out DIR)
    * llm: config = LLMJudgeConfig fields (base_url, model, api_key, timeout, max_concurrency...),
      principles = {"rules": [...], "strengths": [...], "weaknesses": [...]}, optional cache object
    """
    config = dict(config or {})
    if kind == "length":
        threshold = config.get("threshold", 39)
        if not isinstance(threshold, int) or threshold < 1:
            raise JudgeLoadError(f"a length judge needs a positive integer threshold, not {threshold!r}")
        return LengthJudge(threshold)
    if kind in ("tfidf", "reward_model"):
        if not folder:
            raise JudgeLoadError(f"a {kind} judge needs the folder its training wrote")
        folder = Path(folder)
        if not folder.is_dir():
            raise JudgeLoadError(f"judge folder {folder} does not exist")
        if kind == "tfidf":
            from training.judges.tfidf import JudgeFileError, TfidfJudge

            try:
                judge = TfidfJudge.load(folder)
            except (JudgeFileError, KeyError, TypeError) as exc:
                raise JudgeLoadError(str(exc)) from exc
            if name:
                judge.name = name
            return judge
        from training.judges.reward_model import RewardModelError, RewardModelJudge

        try:
            judge = RewardModelJudge.load(folder)
        except RewardModelError as exc:
            raise JudgeLoadError(str(exc)) from exc
        if name:
            judge.name = name
        return judge
    if kind == "principled":
        from training.judges.principled import PrincipleSetError, PrincipledJudge

        if not folder or not Path(folder).is_dir():
            raise JudgeLoadError(f"a principled judge needs the folder its training wrote, not {folder!r}")
        try:
            judge = PrincipledJudge.load(Path(folder), principles=config.get("principles"))
        except (PrincipleSetError, FileNotFoundError, ValueError, KeyError) as exc:
            raise JudgeLoadError(str(exc)) from exc
        if name:
            judge.name = name
        return judge
    if kind == "llm":
        principles = principles or {}
        known = set(LLMJudgeConfig.__dataclass_fields__)
        try:
            llm_config = LLMJudgeConfig(**{k: v for k, v in config.items() if k in known})
            return LLMJudge(llm_config, rules=principles.get("rules") or [],
                            strengths=principles.get("strengths") or [],
                            weaknesses=principles.get("weaknesses") or [], name=name or "llm", cache=cache)
        except (TypeError, ValueError) as exc:
            raise JudgeLoadError(f"cannot build the LLM judge: {exc}") from exc
    raise JudgeLoadError(f"unknown judge kind {kind!r}; known kinds: {', '.join(KINDS)}")
