"""Judge versions: registering, activating, loading, training, evaluating, and storing verdicts.

The judges themselves live in training/judges (no Django); this module connects them to the
database: JudgeVersion rows, PrincipleSets, and verdicts as corpus Labels
(source_kind=judge, source_name=the judge version's name)."""
from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path
from typing import Iterable, Sequence

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from generation.checkpoint import replace_dir_atomically
from training.data.formats import FormatError
from training.judges.base import BAD, GOOD, Verdict
from training.judges.data import load_labeled, load_pairs
from training.judges.evaluation import evaluate_labeled, evaluate_pairs, split_by_query
from training.judges.fallback import FallbackJudge
from training.judges.length import LengthJudge, best_length_threshold
from training.judges.llm import LLMJudgeConfig
from training.judges.registry import (JudgeLoadError, load_judge as load_judge_object, query_hash, read_trained_queries,
                                      write_trained_queries)
from training.judges.reward_model import RewardModelConfig, RewardModelError
from training.judges.reward_model_training import train_reward_model
from training.judges.tfidf import train_tfidf_judge
from webapp.checkpoints.services import RegistryError, resolve_checkpoint
from webapp.corpus.models import Greeting, Label
from webapp.judges.marks import principle_marks
from webapp.judges.models import JudgeVersion, PrincipleSet


HELDOUT_FRACTION = 0.15  # the same held-out split by query as bench/judges.py


class JudgeServiceError(Exception):
    """A request the judge services cannot carry out; the message says why and what to do."""


class JudgeJobCancelled(JudgeServiceError):
    """A long judge job stopped because its caller asked it to (on_progress returned False)."""


def judges_dir() -> Path:
    return Path(settings.JUDGES_DIR)


# --------------------------------------------------------------------------------------------
# Registry


def _checked_principle_set(principle_set) -> PrincipleSet | None:
    if principle_set is None:
        return None
    if isinstance(principle_set, dict):
        name = principle_set.get("name", "default")
        latest = PrincipleSet.objects.filter(name=name).order_by("-version").first()
        principle_set = PrincipleSet(name=name, version=(latest.version + 1) if latest else 1,
                                     strengths=principle_set.get("strengths", []),
                                     weaknesses=principle_set.get("weaknesses", []),
                                     rules=principle_set.get("rules", []), note=principle_set.get("note", ""))
    try:
        principle_set.clean()  # re-checked even for saved rows: at most 10 rules, non-empty texts
    except ValidationError as exc:
        raise JudgeServiceError(f"principle set {principle_set.name} v{principle_set.version} refused: "
                                f"{'; '.join(exc.messages)}") from exc
    if principle_set.pk is None:
        principle_set.save()
    return principle_set


@transaction.atomic
def register_judge(*, kind: str, name: str, path: str | Path = "", principle_set=None, config: dict | None = None,
                   metrics: dict | None = None) -> JudgeVersion:
    """A new JudgeVersion (inactive). principle_set: a PrincipleSet or a dict making a new version."""
    if kind not in JudgeVersion.Kind.values:
        raise JudgeServiceError(f"unknown judge kind {kind!r}; valid kinds: {', '.join(JudgeVersion.Kind.values)}")
    if not name or len(name) > 100:
        raise JudgeServiceError("a judge name must have 1 to 100 characters")
    if JudgeVersion.objects.filter(name=name).exists():
        raise JudgeServiceError(f"a judge named {name!r} is already registered; pick another --name")
    if kind == JudgeVersion.Kind.LLM and principle_set is None:
        raise JudgeServiceError("an LLM judge needs a principle set")
    principles = _checked_principle_set(principle_set)
    return JudgeVersion.objects.create(name=name, kind=kind, path=str(path or ""), principle_set=principles,
                                       config=config or {}, metrics=metrics or {}, is_active=False)


@transaction.atomic
def activate_judge(judge_version: JudgeVersion) -> JudgeVersion:
    """Make this the one active judge; the previous one is deactivated in the same transaction."""
    try:
        locked = JudgeVersion.objects.select_for_update().get(pk=judge_version.pk)
    except JudgeVersion.DoesNotExist:
        raise JudgeServiceError(f"judge version {judge_version.name!r} no longer exists") from None
    if locked.is_active:
        return locked
    if locked.kind in (JudgeVersion.Kind.TFIDF, JudgeVersion.Kind.REWARD_MODEL, JudgeVersion.Kind.PRINCIPLED) \
            and not Path(locked.path).is_dir():
        raise JudgeServiceError(f"cannot activate {locked.name}: its folder {locked.path} is missing")
    JudgeVersion.objects.select_for_update().filter(is_active=True).update(is_active=False)
    locked.is_active = True
    locked.save(update_fields=["is_active"])
    return locked


def active_judge() -> JudgeVersion | None:
    return JudgeVersion.objects.filter(is_active=True).first()


def resolve_judge(identifier: str | None) -> JudgeVersion:
    """A judge version by name or id, or the active one when identifier is None."""
    if identifier is None:
        judge = active_judge()
        if judge is None:
            raise JudgeServiceError("no active judge: name one with --judge, activate one on the judges page "
                                    "(/train/judges/), or register the default principled judge with "
                                    "`python manage.py register_default_judge`")
        return judge
    query = JudgeVersion.objects.filter(name=identifier)
    if identifier.isdigit():
        query = query | JudgeVersion.objects.filter(pk=int(identifier))
    judge = query.first()
    if judge is None:
        known = ", ".join(JudgeVersion.objects.values_list("name", flat=True)[:20]) or "none registered"
        raise JudgeServiceError(f"no judge version with name or id {identifier!r} (known: {known})")
    return judge


def llm_settings() -> dict:
    """LLMJudgeConfig fields from settings (JUDGE_LLM_BASE_URL, _MODEL, _API_KEY, _TIMEOUT, _MAX_CONCURRENCY)."""
    names = {"base_url": "JUDGE_LLM_BASE_URL", "model": "JUDGE_LLM_MODEL", "api_key": "JUDGE_LLM_API_KEY",
             "timeout": "JUDGE_LLM_TIMEOUT", "max_concurrency": "JUDGE_LLM_MAX_CONCURRENCY"}
    return {field: getattr(settings, name) for field, name in names.items() if getattr(settings, name, None) not in (None, "")}


def llm_endpoint(llm_config: dict | None, missing: str):
    """An LLMJudgeConfig from settings (JUDGE_LLM_*) overridden by llm_config; `missing` says who needs it."""
    config = {**llm_settings(), **(llm_config or {})}
    if not config.get("base_url") or not config.get("model"):
        raise JudgeServiceError(f"base_url: {missing} (JUDGE_LLM_BASE_URL and JUDGE_LLM_MODEL in settings, "
                                "or base_url and model in the job's parameters)")
    known = set(LLMJudgeConfig.__dataclass_fields__)
    try:
        return LLMJudgeConfig(**{k: v for k, v in config.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise JudgeServiceError(f"base_url: the LLM endpoint's settings are not usable: {exc}") from exc


def load_judge(judge_version: JudgeVersion):
    """The judge object (training.judges Judge protocol) a JudgeVersion describes."""
    if not JudgeVersion.objects.filter(pk=judge_version.pk).exists():
        raise JudgeServiceError(f"judge version {judge_version.name!r} no longer exists")
    principles = None
    config = dict(judge_version.config or {})
    if judge_version.kind == JudgeVersion.Kind.LLM:
        principle_set = judge_version.principle_set
        if principle_set is None:
            raise JudgeServiceError(f"LLM judge {judge_version.name} has no principle set")
        _checked_principle_set(principle_set)
        principles = {"rules": principle_set.rules, "strengths": principle_set.strengths,
                      "weaknesses": principle_set.weaknesses}
        config = {**llm_settings(), **config}
        if "base_url" not in config or "model" not in config:
            raise JudgeServiceError("the LLM judge needs JUDGE_LLM_BASE_URL and JUDGE_LLM_MODEL in settings "
                                    "(or base_url and model in the judge version's config)")
    from django.core.cache import cache

    try:
        judge = load_judge_object(judge_version.kind, judge_version.path or None, name=judge_version.name,
                                  config=config, principles=principles, cache=cache)
    except JudgeLoadError as exc:
        raise JudgeServiceError(f"judge {judge_version.name}: {exc}") from exc
    if judge_version.kind == JudgeVersion.Kind.LLM:  # an endpoint that is down or answers garbage: judged offline
        return FallbackJudge(judge, lambda: load_judge_object("principled", judges_dir() / settings.DEFAULT_JUDGE_NAME))
    return judge


# --------------------------------------------------------------------------------------------
# Verdicts as corpus Labels


def _verdicts(judge, queries: list[str], responses: list[str]) -> list[Verdict]:
    if hasattr(judge, "evaluate_many"):
        return judge.evaluate_many(queries, responses)
    scores = judge.scores(queries, responses)
    return [Verdict(GOOD if s >= 0.5 else BAD, float(s), f"score {s:.3f} (Good from 0.50)", judge.version)
            for s in scores]


def judge_greetings(judge_version: JudgeVersion, greetings: Iterable[Greeting], batch_size: int = 64,
                    overwrite: bool = False, judge=None) -> dict:
    """Judge greetings and store each verdict as a Label (source_kind=judge, source_name=the version's
    name). Idempotent: greetings this version already judged are skipped (or replaced with
    overwrite=True). Each batch is judged completely before anything of it is written, and written
    in one transaction. Returns {judged, skipped, stored, good, bad}."""
    if batch_size < 1:
        raise JudgeServiceError(f"batch_size must be at least 1, not {batch_size}")
    judge = judge or load_judge(judge_version)
    greetings = list(greetings)
    already = set(Label.objects.filter(source_kind=Label.SourceKind.JUDGE, source_name=judge_version.name,
                                       greeting__in=[g.pk for g in greetings]).values_list("greeting_id", flat=True))
    todo = [g for g in dict((g.pk, g) for g in greetings).values() if overwrite or g.pk not in already]
    counts = {"judged": 0, "skipped": len(greetings) - len(todo), "stored": 0, "good": 0, "bad": 0}
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        queries, texts = [g.query.text for g in batch], [g.text for g in batch]
        verdicts, marks = _verdicts(judge, queries, texts), principle_marks(judge, queries, texts)
        with transaction.atomic():
            for greeting, verdict, principles in zip(batch, verdicts, marks):
                value = Label.Value.GOOD if verdict.verdict == GOOD else Label.Value.BAD
                _, created = Label.objects.update_or_create(
                    greeting=greeting, source_kind=Label.SourceKind.JUDGE, source_name=judge_version.name,
                    defaults={"value": value, "score": verdict.score,
                              "detail": {"reason": verdict.reason, "rubric": verdict.rubric,
                                         "judge_version": verdict.judge_version, "principles": principles}})
                counts["stored"] += created
                counts["good" if value == Label.Value.GOOD else "bad"] += 1
        counts["judged"] += len(batch)
    return counts


# --------------------------------------------------------------------------------------------
# Training


def _new_folder(name: str) -> Path:
    folder = judges_dir() / name
    if folder.exists():
        raise JudgeServiceError(f"{folder} already exists; pick another --name or remove the folder")
    return folder


def _default_name(kind: str) -> str:
    return f"{kind.replace('_', '-')}-{time.strftime('%Y%m%d-%H%M%S')}"


def _load_pair_files(paths: Sequence[Path]):
    if not paths:
        raise JudgeServiceError("give at least one --pairs FILE")
    pairs = []
    for path in map(Path, paths):
        if not path.is_file():
            raise JudgeServiceError(f"pairs file {path} does not exist")
        try:
            pairs += load_pairs(path)
        except (FormatError, ValueError) as exc:
            raise JudgeServiceError(f"cannot read pairs from {path}: {exc}") from exc
    return pairs


def _split(pairs):
    train, heldout = split_by_query(pairs, HELDOUT_FRACTION)
    if not train:
        raise JudgeServiceError(f"all {len(pairs)} pairs fell in the held-out split; give more pairs (more queries)")
    return train, heldout


def _heldout_metrics(heldout, name, judge) -> dict:
    if not heldout:
        return {"heldout_pairs": 0}
    report = evaluate_pairs(heldout, {name: judge})
    return {"heldout_pairs": len(heldout), "heldout": report}


def train_tfidf_judge_version(*, pair_files: Sequence[Path], name: str | None = None, activate: bool = False) -> JudgeVersion:
    """Train the TF-IDF judge on the pairs minus the held-out split by query, record the held-out
    metrics and the training-query hashes, save under var/judges/NAME, register (and activate)."""
    name = name or _default_name("tfidf")
    if JudgeVersion.objects.filter(name=name).exists():
        raise JudgeServiceError(f"a judge named {name!r} is already registered; pick another --name")
    folder = _new_folder(name)
    pairs = _load_pair_files(pair_files)
    train, heldout = _split(pairs)
    try:
        judge = train_tfidf_judge([p.chosen for p in train], [p.rejected for p in train], name=name)
    except ValueError as exc:
        raise JudgeServiceError(f"TF-IDF training failed: {exc}") from exc
    metrics = {"train_pairs": len(train), **_heldout_metrics(heldout, name, judge)}
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        judge.save(tmp)
        write_trained_queries(tmp, [p.query for p in train])
        replace_dir_atomically(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _register_trained(JudgeVersion.Kind.TFIDF, name, folder, metrics,
                             {"pair_files": [str(p) for p in pair_files], "heldout_fraction": HELDOUT_FRACTION},
                             activate)


def train_reward_model_version(*, pair_files: Sequence[Path], preset: str = "small", init_checkpoint: str | None = None,
                               steps: int | None = None, name: str | None = None, activate: bool = False,
                               seed: int = 0, progress_bar: bool = True, on_progress=None) -> JudgeVersion:
    """Train the MoE reward model on the pairs minus the held-out split by query (optionally from a
    registered generator checkpoint), evaluate on the held-out pairs, save and register it."""
    name = name or _default_name("reward_model")
    if JudgeVersion.objects.filter(name=name).exists():
        raise JudgeServiceError(f"a judge named {name!r} is already registered; pick another --name")
    folder = _new_folder(name)
    init_path = None
    if init_checkpoint is not None:
        try:
            checkpoint = resolve_checkpoint(init_checkpoint)
        except RegistryError as exc:
            raise JudgeServiceError(str(exc)) from exc
        problem = checkpoint.missing_files()
        if problem:
            raise JudgeServiceError(f"checkpoint {checkpoint.name}: {problem}")
        init_path = Path(checkpoint.path)
        preset = checkpoint.preset or preset
    pairs = _load_pair_files(pair_files)
    train, heldout = _split(pairs)
    config = RewardModelConfig(preset=preset, init_checkpoint=init_path, max_steps=steps, seed=seed, name=name,
                               progress_bar=progress_bar)
    try:
        result = train_reward_model(train, config, folder, on_progress=on_progress)
    except RewardModelError as exc:
        raise JudgeServiceError(str(exc)) from exc
    if not result.completed:  # stopped through on_progress: nothing was saved, nothing is registered
        raise JudgeJobCancelled(f"reward model {name} stopped at step {result.metrics.get('step', 0)}; not registered")
    metrics = {"train_pairs": len(train), "validation": result.metrics,
               **_heldout_metrics(heldout, name, result.judge)}
    return _register_trained(JudgeVersion.Kind.REWARD_MODEL, name, folder, metrics,
                             {"pair_files": [str(p) for p in pair_files], "preset": preset, "steps": steps,
                              "seed": seed, "init_checkpoint": init_checkpoint,
                              "heldout_fraction": HELDOUT_FRACTION}, activate)


def _register_trained(kind, name, folder, metrics, config, activate) -> JudgeVersion:
    try:
        version = register_judge(kind=kind, name=name, path=folder, config=config, metrics=metrics)
    except (JudgeServiceError, IntegrityError):
        shutil.rmtree(folder, ignore_errors=True)  # nothing half-registered
        raise
    return activate_judge(version) if activate else version


# --------------------------------------------------------------------------------------------
# Evaluation


def tfidf_baseline() -> JudgeVersion:
    """The active judge when it is TF-IDF, else the newest registered TF-IDF judge."""
    active = active_judge()
    if active is not None and active.kind == JudgeVersion.Kind.TFIDF:
        return active
    baseline = JudgeVersion.objects.filter(kind=JudgeVersion.Kind.TFIDF).order_by("-created_at", "-pk").first()
    if baseline is None:
        raise JudgeServiceError("no TF-IDF baseline judge is registered; train one first with "
                                "`python manage.py train_judge --kind tfidf --pairs FILE`")
    return baseline


def _trained_hashes(judge_version: JudgeVersion) -> set[str] | None:
    try:
        return read_trained_queries(Path(judge_version.path)) if judge_version.path else None
    except JudgeLoadError as exc:
        raise JudgeServiceError(f"judge {judge_version.name}: {exc}") from exc


def _leakage_guard(items, versions: Sequence[JudgeVersion]) -> tuple[list, dict]:
    """Drop items whose query any of `versions` was trained on; say how many, per judge."""
    excluded, recorded = {}, {}
    hashes = set()
    for version in versions:
        trained = _trained_hashes(version)
        recorded[version.name] = trained is not None
        if trained:
            hashes |= trained
            excluded[version.name] = sum(query_hash(item.query) in trained for item in items)
    kept = [item for item in items if query_hash(item.query) not in hashes]
    return kept, {"total": len(items), "kept": len(kept), "excluded": len(items) - len(kept),
                  "excluded_per_judge": excluded, "training_queries_recorded": recorded}


def evaluate_judge_on_pairs(judge_version: JudgeVersion, path: Path) -> dict:
    """Accuracy overall / chosen not longer / length matched, beside pick-longer and the TF-IDF baseline."""
    baseline = tfidf_baseline()
    pairs = _load_pair_files([path])
    versions = [judge_version] if baseline.pk == judge_version.pk else [judge_version, baseline]
    kept, leakage = _leakage_guard(pairs, versions)
    if not kept:
        raise JudgeServiceError(f"all {len(pairs)} pairs were excluded: their queries were trained on "
                                f"({leakage['excluded_per_judge']})")
    judges = {judge_version.name: load_judge(judge_version)}
    if baseline.pk != judge_version.pk:
        judges[f"tfidf ({baseline.name})"] = load_judge(baseline)
    return {"file": str(path), "kind": "pairs", "judge": judge_version.name, "baseline": baseline.name,
            "leakage": leakage, "results": evaluate_pairs(kept, judges)}


def evaluate_judge_on_labeled(judge_version: JudgeVersion, path: Path) -> dict:
    """Accuracy, precision, recall, F1, kappa beside the length-threshold baseline (and TF-IDF when registered)."""
    if not Path(path).is_file():
        raise JudgeServiceError(f"labeled file {path} does not exist")
    try:
        items = load_labeled(Path(path))
    except (FormatError, ValueError) as exc:
        raise JudgeServiceError(f"cannot read labeled greetings from {path}: {exc}") from exc
    try:
        baseline = tfidf_baseline()
    except JudgeServiceError:
        baseline = None
    versions = [judge_version] + ([baseline] if baseline and baseline.pk != judge_version.pk else [])
    kept, leakage = _leakage_guard(items, versions)
    if not kept:
        raise JudgeServiceError(f"all {len(items)} items were excluded: their queries were trained on")
    threshold = best_length_threshold([len(i.response) for i in kept], [i.label for i in kept])
    judges = {judge_version.name: load_judge(judge_version)}
    if baseline is not None and baseline.pk != judge_version.pk:
        judges[f"tfidf ({baseline.name})"] = load_judge(baseline)
    judges[f"length>={threshold}"] = LengthJudge(threshold)
    return {"file": str(path), "kind": "labeled", "judge": judge_version.name,
            "baseline": baseline.name if baseline else None, "leakage": leakage,
            "length_threshold": threshold,
            "length_threshold_note": "fitted on the evaluated items themselves: an upper bound for that baseline",
            "results": evaluate_labeled(kept, judges)}
