"""Multi-agent rejection sampling: preference pairs the judges are sure about, with provenance.

Per prompt every ``GeneratorAgent`` (a backend, a sampling setting, an optional persona) writes
candidates and the judges score them (their mean); a pair is kept only when the margin is at
least ``min_margin``, chosen is Good and rejected Bad, and no judge ranks them the other way.
Guards: prompts in ``exclude_queries`` (an evaluation set) are dropped before generation; the
share of chosen-longer pairs is held at ``max_longer_share`` (the paper's preferences mostly
favour the longer text, so a reward model would learn length).
Finished prompts are appended to ``workdir/candidates.jsonl`` (a killed run resumes); the pair
file, LlamaFactory pairwise JSON with a ``provenance`` object per record, is written atomically
and only when the run completed. Entry point: ``curate_pairs``.
"""
from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from tqdm import tqdm

from generation.greeting import write_greetings
from training.judges.registry import query_hash

CANDIDATES_FILE = "candidates.jsonl"


class CurationError(Exception):
    """A run that cannot start or go on; the message names the problem (agent, judge or field)."""


@dataclass(frozen=True)
class GeneratorAgent:
    """One writer: a backend (generation.backends.LocalEngineBackend or OpenAICompatibleBackend, written
    through the one greeting path, generation.greeting.write_greetings) with its sampling setting
    and an optional persona, a style hint added to the query so agents differ in more than noise."""

    name: str
    backend: Any
    n: int = 2
    temperature: float = 0.8
    top_p: float = 0.95
    max_new_tokens: int = 96
    persona: str = ""
    examples: tuple[str, ...] = ()  # few-shot greetings for this query (debate's retrieval stage); both backends
    # take a query, not a raw prompt, so the examples travel inside it

    def request(self, query: str) -> str:
        request = f"{query}（{self.persona}）" if self.persona else query
        if self.examples:
            request += "（参考范例：" + "；".join(f"「{text}」" for text in self.examples) + "）"
        return request

    def write(self, query: str, seed: int | None) -> list[str]:
        return write_greetings(self.backend, self.request(query), self.n, temperature=self.temperature,
                               top_p=self.top_p, max_tokens=self.max_new_tokens, seed=seed)

    def describe(self) -> dict:
        return {"name": self.name, "n": self.n, "temperature": self.temperature, "top_p": self.top_p,
                "max_new_tokens": self.max_new_tokens, "persona": self.persona}


@dataclass
class CurationConfig:
    min_margin: float = 0.3  # score(chosen) - score(rejected), scores in [0, 1]
    chosen_min_score: float = 0.5  # the chosen text must be judged Good
    rejected_max_score: float = 0.5  # the rejected text must be judged Bad (score below this)
    max_longer_share: float | None = 0.5  # at most this share of kept pairs has the longer chosen text
    min_chars: int = 2  # shorter candidates (empty, a lone character) are dropped before judging
    max_chars: int = 300  # so are huge ones (run-away generations)
    pairs_per_prompt: int = 1
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.min_margin <= 1.0:
            raise CurationError(f"min_margin must be in (0, 1], not {self.min_margin}")
        for name in ("chosen_min_score", "rejected_max_score"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise CurationError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        if self.max_longer_share is not None and not 0.0 <= self.max_longer_share <= 1.0:
            raise CurationError(f"max_longer_share must be in [0, 1] (or None), not {self.max_longer_share}")
        if self.min_chars < 1 or self.max_chars < self.min_chars:
            raise CurationError(f"need 1 <= min_chars <= max_chars, not {self.min_chars} and {self.max_chars}")
        if self.pairs_per_prompt < 1:
            raise CurationError(f"pairs_per_prompt must be at least 1, not {self.pairs_per_prompt}")


@dataclass
class CuratedPair:
    query: str
    chosen: dict  # a candidate record: {agent, text, score, judge_scores}
    rejected: dict
    margin: float

    @property
    def chosen_longer(self) -> bool:
        return len(self.chosen["text"]) > len(self.rejected["text"])

    def record(self, judges: Sequence[str]) -> dict:
        """A LlamaFactory pairwise record with its provenance."""
        return {"conversations": [{"from": "human", "value": self.query}],
                "chosen": {"from": "gpt", "value": self.chosen["text"]},
                "rejected": {"from": "gpt", "value": self.rejected["text"]},
                "provenance": {"chosen_agent": self.chosen["agent"], "rejected_agent": self.rejected["agent"],
                               "chosen_score": round(self.chosen["score"], 4),
                               "rejected_score": round(self.rejected["score"], 4),
                               "margin": round(self.margin, 4), "judges": list(judges),
                               "judge_scores": {"chosen": self.chosen["judge_scores"],
                                                "rejected": self.rejected["judge_scores"]}}}


@dataclass
class CurationResult:
    pairs: list[CuratedPair]
    stats: dict
    completed: bool = True
    output: Path | None = None
    records: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Stages


def leak_free_prompts(queries: Iterable[str], exclude_queries: Iterable[str] = ()) -> tuple[list[str], int, int]:
    """(distinct non-empty queries not in the excluded set, how many were excluded, duplicates dropped)."""
    excluded = {query_hash(q) for q in exclude_queries}
    kept, seen, leaked, duplicates = [], set(), 0, 0
    for query in queries:
        query = (query or "").strip()
        if not query:
            continue
        digest = query_hash(query)
        if digest in seen:
            duplicates += 1
            continue
        seen.add(digest)
        if digest in excluded:
            leaked += 1
            continue
        kept.append(query)
    return kept, leaked, duplicates


def check_agents(agents: Sequence) -> None:
    """Both curation methods need at least one generator agent, each with its own name."""
    if not agents:
        raise CurationError("agents: give at least one generator agent")
    if len({a.name for a in agents}) != len(agents):
        raise CurationError("agents: every agent needs its own name (it is the pairs' provenance)")


def curation_prompts(queries: Iterable[str], exclude_queries: Iterable[str], workdir) -> tuple[list[str], dict]:
    """The prompts a curation run works on (leak-free, distinct; an error when none is left), with the
    counts its stats report; creates ``workdir`` for the per-prompt stage files."""
    prompts, leaked, duplicates = leak_free_prompts(queries, exclude_queries)
    if not prompts:
        reason = f" ({leaked} excluded as evaluation queries)" if leaked else ""
        raise CurationError(f"prompts: no prompts to curate{reason}")
    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    return prompts, {"prompts_given": len(prompts) + leaked + duplicates, "prompts_excluded_leakage": leaked,
                     "prompts_duplicate": duplicates, "prompts": len(prompts)}


def write_candidates(query: str, agents: Sequence[GeneratorAgent], config: CurationConfig, prompt_index: int,
                     counts: dict) -> list[dict]:
    """Every agent's candidates for one query, minus empty, huge and duplicate texts (counted)."""
    def write(agent_index: int) -> list[str]:
        agent = agents[agent_index]
        seed = config.seed * 1_000_003 + prompt_index * 101 + agent_index  # reproducible, distinct per agent
        try:
            return agent.write(query, seed)
        except Exception as exc:  # backends raise their own types; name the agent and stop
            raise CurationError(f"agent {agent.name} could not write for {query!r}: {exc}") from exc

    # the agents write at the same time: one engine batches their requests together, remote servers overlap
    with ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix="curation-agent") as pool:
        written = list(pool.map(write, range(len(agents))))
    candidates, seen = [], set()
    for agent, texts in zip(agents, written):
        for text in texts:
            text = (text or "").strip()
            counts["generated"] += 1
            if not config.min_chars <= len(text) <= config.max_chars:
                counts["rejected_length_limits"] += 1
                continue
            if text in seen:
                counts["rejected_duplicate"] += 1
                continue
            seen.add(text)
            candidates.append({"agent": agent.name, "text": text})
    return candidates


def score_candidates(query: str, candidates: list[dict], judges: Mapping[str, Any]) -> list[dict]:
    """Adds each judge's score and their mean to the candidates."""
    if not candidates:
        return candidates
    texts = [c["text"] for c in candidates]
    per_judge = {}
    for name, judge in judges.items():
        try:
            scores = judge.scores([query] * len(texts), texts)
        except Exception as exc:  # LLM judges raise JudgeUnavailable / JudgeOutputInvalid, all with a message
            raise CurationError(f"judge {name} failed: {exc}") from exc
        if len(scores) != len(texts):
            raise CurationError(f"judge {name} returned {len(scores)} scores for {len(texts)} candidates")
        per_judge[name] = [float(s) for s in scores]
    for i, candidate in enumerate(candidates):
        candidate["judge_scores"] = {name: round(scores[i], 6) for name, scores in per_judge.items()}
        candidate["score"] = sum(scores[i] for scores in per_judge.values()) / len(per_judge)
    return candidates


def margin_pairs(query: str, candidates: Sequence[dict], config: CurationConfig) -> list[CuratedPair]:
    """Every (chosen, rejected) with a clear margin that no judge disagrees with, widest margin first."""
    pairs = []
    for chosen in candidates:
        if chosen["score"] < config.chosen_min_score:
            continue
        for rejected in candidates:
            if rejected is chosen or rejected["score"] >= config.rejected_max_score:
                continue
            margin = chosen["score"] - rejected["score"]
            if margin < config.min_margin:
                continue
            if any(chosen["judge_scores"][j] <= rejected["judge_scores"][j] for j in chosen["judge_scores"]):
                continue
            pairs.append(CuratedPair(query, chosen, rejected, margin))
    pairs.sort(key=lambda p: (-p.margin, p.chosen["text"], p.rejected["text"]))
    return pairs


def pick_pairs(options: list[CuratedPair], kept: Sequence[CuratedPair], config: CurationConfig) -> list[CuratedPair]:
    """Up to pairs_per_prompt of one prompt's options, each text used once; while the kept set has too
    many chosen-longer pairs, an option whose chosen text is not longer goes first."""
    picked, used = [], set()
    longer = sum(p.chosen_longer for p in kept)
    for _ in range(config.pairs_per_prompt):
        free = [p for p in options if p.chosen["text"] not in used and p.rejected["text"] not in used]
        if not free:
            break
        total = len(kept) + len(picked) + 1
        if config.max_longer_share is not None and (longer + 1) / total > config.max_longer_share:
            free.sort(key=lambda p: p.chosen_longer)  # stable: widest margin first within each group
        choice = free[0]
        picked.append(choice)
        longer += choice.chosen_longer
        used.update((choice.chosen["text"], choice.rejected["text"]))
    return picked


def balance_length(pairs: list[CuratedPair], max_longer_share: float | None) -> tuple[list[CuratedPair], int]:
    """Drop the lowest-margin chosen-longer pairs until their share is at most max_longer_share."""
    if max_longer_share is None or not pairs:
        return pairs, 0
    longer = sorted((p for p in pairs if p.chosen_longer), key=lambda p: p.margin)
    others = len(pairs) - len(longer)
    # the most chosen-longer pairs L with L / (L + others) <= share
    allowed = len(longer) if max_longer_share >= 1.0 else int(max_longer_share * others / (1.0 - max_longer_share) + 1e-9)
    drop = {id(p) for p in longer[: max(0, len(longer) - allowed)]}
    return [p for p in pairs if id(p) not in drop], len(drop)


def longer_share(pairs: Sequence[CuratedPair]) -> float | None:
    return sum(p.chosen_longer for p in pairs) / len(pairs) if pairs else None


class PairPicker:
    """The loop tail both curation methods share: each prompt's options picked (pick_pairs), progress
    reported, and at the end the length guard and the pair statistics."""

    def __init__(self, config: CurationConfig, prompts: int, bar, on_progress: Callable[[dict], Any] | None):
        self.config, self.prompts, self.bar, self.on_progress = config, prompts, bar, on_progress
        self.kept: list[CuratedPair] = []
        self.prompts_without_pair = 0
        self.started = time.perf_counter()

    def add(self, step: int, options: list[CuratedPair], candidates: int) -> bool:
        """Picks from one prompt's options; False when on_progress asked the run to stop."""
        self.prompts_without_pair += not options
        self.kept += pick_pairs(options, self.kept, self.config)
        self.bar.set_postfix(pairs=len(self.kept))
        return _notify(self.on_progress, {"event": "step", "step": step, "max_steps": self.prompts,
                                          "pairs": len(self.kept), "candidates": candidates})

    def finish(self) -> tuple[list[CuratedPair], dict]:
        """The kept pairs after the length guard, and the statistics of pairs, guard and time."""
        self.bar.close()
        before_guard, share_before = len(self.kept), longer_share(self.kept)
        kept, dropped_for_length = balance_length(self.kept, self.config.max_longer_share)
        seconds = time.perf_counter() - self.started
        return kept, {
            "pairs_before_length_guard": before_guard, "pairs_dropped_length_guard": dropped_for_length,
            "pairs": len(kept), "chosen_longer_share_before_guard": share_before,
            "chosen_longer_share": longer_share(kept), "seconds": round(seconds, 2),
            "pairs_per_minute": round(len(kept) / seconds * 60, 2) if seconds > 0 else None,
        }


# --------------------------------------------------------------------------------------------
# Persistence


def read_rows(workdir: Path | None, filename: str) -> list[dict]:
    """The JSON rows appended to workdir/filename by an earlier run; a torn last line is ignored."""
    if workdir is None or not (Path(workdir) / filename).is_file():
        return []
    rows = []
    for line in (Path(workdir) / filename).read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # the run was killed while writing this line: that work is done again
        if isinstance(row, dict):
            rows.append(row)
    return rows


def append_row(workdir: Path | None, filename: str, row: dict) -> None:
    """One finished piece of work, on disk (fsync) before the run goes on."""
    if workdir is None:
        return
    with open(Path(workdir) / filename, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def load_finished(workdir: Path | None) -> dict[str, list[dict]]:
    """Finished prompts of an earlier run: {query: scored candidates}."""
    return {row["query"]: row["candidates"] for row in read_rows(workdir, CANDIDATES_FILE)
            if "query" in row and "candidates" in row}


def append_finished(workdir: Path | None, query: str, candidates: list[dict]) -> None:
    append_row(workdir, CANDIDATES_FILE, {"query": query, "candidates": candidates})


def write_pair_file(path: Path, records: list[dict], meta: dict) -> Path:
    """The pairs as LlamaFactory JSON (plus ``<name>.meta.json``), each renamed into place whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, data in ((path.with_name(path.stem + ".meta.json"), meta), (path, records)):
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, target)
    return path


def read_pair_file(path: Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# The run


def _notify(on_progress: Callable[[dict], Any] | None, payload: dict) -> bool:
    return on_progress is None or on_progress(payload) is not False


def curate_pairs(queries: Iterable[str], agents: Sequence[GeneratorAgent], judges: Mapping[str, Any],
                 config: CurationConfig | None = None, *, exclude_queries: Iterable[str] = (),
                 workdir: Path | None = None, output: Path | None = None,
                 on_progress: Callable[[dict], Any] | None = None, progress_bar: bool = True) -> CurationResult:
    """Generate, judge and pair; see the module docstring. ``on_progress`` returning False stops the
    run cleanly (finished prompts stay in ``workdir``; no pair file is written)."""
    config = config or CurationConfig()
    check_agents(agents)
    if not judges:
        raise CurationError("judges: give at least one judge")
    prompts, prompt_stats = curation_prompts(queries, exclude_queries, workdir)
    finished = load_finished(workdir)
    counts = {"generated": 0, "rejected_length_limits": 0, "rejected_duplicate": 0, "judged": 0}
    margin_options = 0
    completed, resumed = True, 0
    _notify(on_progress, {"event": "stage", "stage": "generate and judge"})
    bar = tqdm(prompts, desc="curating pairs", unit="prompt", disable=not progress_bar)
    picker = PairPicker(config, len(prompts), bar, on_progress)
    for index, query in enumerate(bar):
        if query in finished:
            candidates = finished[query]
            resumed += 1
        else:
            candidates = write_candidates(query, agents, config, index, counts)
            candidates = score_candidates(query, candidates, judges)
            counts["judged"] += len(candidates)
            append_finished(workdir, query, candidates)
        options = margin_pairs(query, candidates, config)
        margin_options += len(options)
        if not picker.add(index + 1, options, counts["judged"]):
            completed = False
            break
    kept, pair_stats = picker.finish()
    stats = {
        **prompt_stats, "prompts_resumed": resumed,
        "candidates_generated": counts["generated"],
        "candidates_rejected_length_limits": counts["rejected_length_limits"],
        "candidates_rejected_duplicate": counts["rejected_duplicate"], "candidates_judged": counts["judged"],
        "margin_pair_options": margin_options, "prompts_without_margin_pair": picker.prompts_without_pair,
        **pair_stats,
    }
    judge_names = list(judges)
    records = [pair.record(judge_names) for pair in kept]
    result = CurationResult(kept, stats, completed, None, records)
    if completed and output is not None:
        meta = {"config": asdict(config), "agents": [a.describe() for a in agents], "judges": judge_names,
                "judge_versions": {name: getattr(j, "version", name) for name, j in judges.items()}, "stats": stats}
        result.output = write_pair_file(output, records, meta)
    _notify(on_progress, {"event": "log", "message": f"{len(kept)} pairs from {len(prompts)} prompts", **{
        k: stats[k] for k in ("pairs", "prompts_excluded_leakage", "pairs_dropped_length_guard")}})
    return result
