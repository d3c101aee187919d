"""RLAIF in the web app: gather the round's prompts and labels, run GRPO and the evaluation on
registry checkpoints and judge versions, and promote only through the gate.

The algorithms live in training/rl (no Django); this module connects them to the checkpoint
registry, the judge versions, the studio's requests and the corpus labels. Nothing here changes
the active checkpoint except `promote_through_gate`, and only for a finished round whose gate
decision says promote: a failed or cancelled round leaves the registry as it was.
"""
from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone as dt_timezone
from pathlib import Path
from typing import Callable, Sequence

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from training.data.prompts import PromptFileError, read_prompts
from training.judges.evaluation import in_heldout
from training.rl.evaluation import EvalSettings, EvaluationError, evaluate_generation
from training.rl.gate import GateConfig, GateDecision, gate
from training.rl.grpo import GRPOConfig, GRPOError, GRPOResult, train_grpo
from generation.checkpoint import read_metadata
from generation.conditioning import DEFAULT_FORMAT
from training.rl.pipeline import lineage, training_greetings
from training.rl.request_judge import RequestJudge, prompts_for
from training.rl.rewards import RewardConfig
from training.runs import jsonable
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, promote_checkpoint, register_checkpoint, resolve_checkpoint
from webapp.checkpoints.training import train_and_register
from webapp.corpus.models import Label
from webapp.jobs.datafiles import DataFileError, check_data_file
from webapp.jobs.kinds import FieldError
from webapp.judges.services import JudgeServiceError, active_judge, load_judge, resolve_judge
from webapp.rlaif.models import RlaifRound
from webapp.studio.models import GenerationRequest

STARTER_QUERIES = Path(__file__).resolve().parents[2] / "training" / "data" / "starter" / "queries.txt"


class RlaifError(FieldError):
    """Bad input or a state the round cannot run in; ``field`` names the parameter at fault, ``fix`` the
    page that fixes it (url, label) when there is one."""


def rlaif_dir() -> Path:
    return Path(settings.VAR_DIR) / "rlaif"


# --------------------------------------------------------------------------------------------
# Lookups with errors that name the field


def checkpoints_page() -> tuple[str, str]:
    from django.urls import reverse

    return (reverse("checkpoints:list"), "检查点页面 Checkpoints page")


def judges_page() -> tuple[str, str]:
    from django.urls import reverse

    return (reverse("judges:list"), "评审页面 Judges page")


def checkpoint_for(identifier: str | None) -> Checkpoint:
    if not identifier and not Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).exists():
        raise RlaifError("checkpoint", "没有启用的检查点：请选择一个，或在检查点页面启用一个 / no checkpoint is active: "
                                       "choose one in the Checkpoint field, or promote one on the Checkpoints page",
                         fix=checkpoints_page())
    try:
        checkpoint = resolve_checkpoint(identifier or None)
    except RegistryError as exc:
        raise RlaifError("checkpoint", str(exc), fix=checkpoints_page()) from exc
    problem = checkpoint.missing_files()
    if problem:
        raise RlaifError("checkpoint", f"{checkpoint.name} cannot be loaded: {problem}", fix=checkpoints_page())
    return checkpoint


def judge_for(identifier: str | None):
    """(JudgeVersion, judge object) by name or id, or the active judge."""
    if not identifier and active_judge() is None:
        raise RlaifError("judge", "没有启用的评审：请在评审字段中选择一个，或在评审页面启用一个 / no judge is active: choose "
                                  "one in the Judge field, or activate one on the Judges page", fix=judges_page())
    try:
        version = resolve_judge(identifier or None)
        return version, load_judge(version)
    except JudgeServiceError as exc:
        raise RlaifError("judge", str(exc), fix=judges_page()) from exc


def prompts_from(path: str | Path | None, field: str = "prompts_file") -> list[str]:
    """A prompt file (verl parquet or one query a line) inside the app's data folders, or the starter
    corpus's queries. The folder check is made again here, where the job reads the file."""
    try:
        path = check_data_file(path, field) if path else STARTER_QUERIES
    except DataFileError as exc:
        raise RlaifError(field, exc.message, fix=("#upload", "上传文件 Upload a file")) from exc
    try:
        return read_prompts(path, field=field)
    except PromptFileError as exc:
        raise RlaifError(exc.field, exc.message) from exc


def sft_reference(checkpoint: Checkpoint) -> Path:
    """The SFT checkpoint at the root of this checkpoint's lineage: the KL anchor."""
    return lineage(Path(checkpoint.path))[-1]


def split_heldout(prompts: Sequence[str], fraction: float) -> tuple[list[str], list[str]]:
    """(train, held-out) by a stable hash of the query, so a query stays on its side across rounds."""
    train = [p for p in prompts if not in_heldout(p, fraction)]
    heldout = [p for p in prompts if in_heldout(p, fraction)]
    if not train or not heldout:
        raise RlaifError("heldout_fraction", f"{len(prompts)} prompts leave an empty side with fraction {fraction}")
    return train, heldout


# --------------------------------------------------------------------------------------------
# What users did since the last round


def last_round_time() -> datetime | None:
    """When the last finished round started (its data cut-off); None before the first."""
    return RlaifRound.objects.filter(status=RlaifRound.Status.DONE).order_by("-started_at").values_list(
        "started_at", flat=True).first()


def gather_round_data(since: datetime | None, out_dir: Path) -> dict:
    """Studio request queries and human/click labels newer than ``since``, written to ``out_dir``:
    prompts.txt (one query a line), labeled.jsonl ({query, response, label}) and pairs.json
    (LlamaFactory pairwise: a good and a bad greeting of the same query) for `train_judge --pairs`."""

    requests = GenerationRequest.objects.filter(status=GenerationRequest.Status.DONE)
    labels = Label.objects.filter(source_kind__in=[Label.SourceKind.HUMAN, Label.SourceKind.CLICK])
    if since is not None:
        requests, labels = requests.filter(created_at__gt=since), labels.filter(created_at__gt=since)
    prompts = list(dict.fromkeys(q.strip() for q in requests.values_list("query", flat=True) if q and q.strip()))
    labeled = [{"query": query, "response": text, "label": int(value == Label.Value.GOOD), "source": kind}
               for query, text, value, kind in labels.values_list("greeting__query__text", "greeting__text", "value",
                                                                  "source_kind")]
    good: dict[str, list[str]] = {}
    bad: dict[str, list[str]] = {}
    for item in labeled:
        (good if item["label"] else bad).setdefault(item["query"], []).append(item["response"])
    pairs = [{"conversations": [{"from": "human", "value": q}], "chosen": {"from": "gpt", "value": g},
              "rejected": {"from": "gpt", "value": b}}
             for q in good if q in bad for g in dict.fromkeys(good[q]) for b in dict.fromkeys(bad[q]) if g != b]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"prompts_file": out_dir / "prompts.txt", "labeled_file": out_dir / "labeled.jsonl",
             "pairs_file": out_dir / "pairs.json"}
    files["prompts_file"].write_text("".join(p.replace("\n", " ") + "\n" for p in prompts), encoding="utf-8")
    files["labeled_file"].write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in labeled), encoding="utf-8")
    files["pairs_file"].write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    return {"since": since.isoformat() if since else None, "prompts": prompts, "labels": len(labeled),
            "good_labels": sum(i["label"] for i in labeled), "pairs": len(pairs),
            **{k: str(v) for k, v in files.items()}}


# --------------------------------------------------------------------------------------------
# GRPO, evaluation, gate, promotion on registry objects


def new_run_name(prefix: str = "grpo") -> str:
    return f"{prefix}-{datetime.now(dt_timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def as_served(checkpoint: Checkpoint, requests: Sequence[str], judge) -> tuple[list[str], RequestJudge]:
    """The model prompts `checkpoint` is served with for `requests` (the slot prefix for a slots
    checkpoint) and `judge` reading the request behind each prompt, so GRPO and evaluation sample
    the model as the studio does and judge what the writer asked."""
    fmt = read_metadata(Path(checkpoint.path)).get("prompt_format", DEFAULT_FORMAT)
    by_prompt = prompts_for(requests, fmt)
    return list(by_prompt), RequestJudge(judge, by_prompt)


def run_grpo(*, checkpoint: Checkpoint, judge, prompts: Sequence[str], run_name: str, resume: bool = False,
             on_progress: Callable | None = None, **grpo_fields) -> GRPOResult:
    """GRPO from ``checkpoint`` with KL to its SFT root, into RUNS_DIR/<run_name> (resumable there)."""
    out_dir = Path(settings.RUNS_DIR) / run_name
    resume = resume and (out_dir / "state" / "state.json").is_file()
    reference = sft_reference(checkpoint)
    if grpo_fields.get("reward") is not None and grpo_fields["reward"].copy_coef and "training_greetings" not in grpo_fields:
        grpo_fields["training_greetings"] = training_greetings(reference)  # what the copy penalty compares with
    prompts, judge = as_served(checkpoint, prompts, judge)
    cfg = GRPOConfig(init_checkpoint=Path(checkpoint.path), reference_checkpoint=reference,
                     out_dir=out_dir, prompts=prompts, progress_bar=False, **grpo_fields)
    try:
        return train_grpo(cfg, judge, resume=resume, on_progress=on_progress)
    except GRPOError as exc:
        raise RlaifError(FORM_FIELD_OF_GRPO.get(exc.field, exc.field or "grpo"), str(exc)) from exc


# The job form's name for a GRPOConfig field, where the two differ.
FORM_FIELD_OF_GRPO = {"max_steps": "steps", "max_seconds": "max_minutes", "prompts": "prompts_file"}


def register_grpo_checkpoint(result: GRPOResult, *, parent: Checkpoint, run_name: str, judge_name: str,
                             extra_metrics: dict | None = None) -> Checkpoint:
    """A finished GRPO run as a candidate checkpoint (never active by itself)."""
    if result.checkpoint_dir is None or not result.completed:
        raise RlaifError("grpo", "the GRPO run did not finish; nothing to register")
    folder = Path(result.checkpoint_dir)
    return register_checkpoint(
        name=run_name, run_name=run_name, path=str(folder), preset=parent.preset,
        model_config=json.loads((folder / "config.json").read_text(encoding="utf-8")),
        data={"parent": parent.name, "judge": judge_name, "grpo_steps": result.steps},
        metrics=jsonable({**result.metrics, **(extra_metrics or {})}),
    )


def evaluate_checkpoint(checkpoint: Checkpoint, prompts: Sequence[str], judge, settings_: EvalSettings | None = None) -> dict:
    """evaluate_generation on a registry checkpoint: KL to its SFT root, novelty against its SFT data."""
    try:
        prompts, judge = as_served(checkpoint, prompts, judge)
        return evaluate_generation(Path(checkpoint.path), prompts, judge, reference=sft_reference(checkpoint),
                                   training_greetings=training_greetings(Path(checkpoint.path)), settings=settings_)
    except EvaluationError as exc:
        raise RlaifError(exc.field, exc.message) from exc


def promote_through_gate(candidate: Checkpoint, decision: GateDecision) -> bool:
    """Promote ``candidate`` only when the gate said so; returns whether it is now active."""
    if not decision.promote:
        return False
    promote_checkpoint(candidate)
    return True


# --------------------------------------------------------------------------------------------
# The whole round


def finish_round(round_: RlaifRound, status: str, **fields) -> RlaifRound:
    for key, value in fields.items():
        setattr(round_, key, value)
    round_.status, round_.finished_at = status, timezone.now()
    round_.save()
    return round_


def run_round(*, params: dict, workdir: Path, on_progress: Callable[[dict], bool], job_id: int | None = None,
              resumed: bool = False) -> dict:
    """gather -> (SFT cold start when nothing is active) -> GRPO -> evaluation of candidate and
    active on the same held-out prompts -> gate -> promotion. Returns the round's report."""
    def stage(name: str) -> bool:
        return on_progress({"event": "stage", "stage": name}) is not False

    version, judge = judge_for(params.get("judge"))  # fail before any work when the judge is unusable
    if job_id is not None:  # a resumed job: its earlier attempt's worker died mid-round
        RlaifRound.objects.filter(job_id=job_id, status=RlaifRound.Status.RUNNING).update(
            status=RlaifRound.Status.FAILED, finished_at=timezone.now(), reason="the worker died; the job was resumed")
    since = last_round_time()
    round_ = RlaifRound.objects.create(job_id=job_id, since=since)
    try:
        stage("gather")
        gathered = gather_round_data(since, Path(workdir) / "gathered")
        base = prompts_from(params.get("prompts_file"))
        prompts = list(dict.fromkeys(base + gathered["prompts"]))
        if params.get("heldout_file"):
            heldout = prompts_from(params["heldout_file"], "heldout_file")
            train = [p for p in prompts if p not in set(heldout)]
        else:
            train, heldout = split_heldout(prompts, params.get("heldout_fraction", 0.2))
        max_eval = params.get("eval_prompts")
        heldout = heldout[:max_eval] if max_eval else heldout
        round_.prompts_gathered, round_.labels_gathered = len(gathered["prompts"]), gathered["labels"]
        round_.save(update_fields=["prompts_gathered", "labels_gathered"])

        active = Checkpoint.objects.filter(status=Checkpoint.Status.ACTIVE).first()
        if active is None:
            if not stage("sft"):
                return _cancelled(round_, "cancelled before SFT")

            active = train_and_register(preset=params.get("sft_preset") or "small", data_paths=[],
                                        max_steps=params.get("sft_steps") or None, on_progress=on_progress)
        round_.active_before = active.name
        round_.save(update_fields=["active_before"])

        if not stage("grpo"):
            return _cancelled(round_, "cancelled before GRPO")
        run_name = f"grpo-round{round_.pk}" if job_id is None else f"grpo-job{job_id}"
        result = run_grpo(checkpoint=active, judge=judge, prompts=train, run_name=run_name, resume=resumed,
                          on_progress=on_progress, **grpo_fields(params))
        if not result.completed:
            return _cancelled(round_, f"cancelled during GRPO at step {result.steps}")

        if not stage("evaluate"):
            return _cancelled(round_, "cancelled before the evaluation")
        candidate = (Checkpoint.objects.filter(name=run_name).first()  # registered before a worker died
                     or register_grpo_checkpoint(result, parent=active, run_name=run_name, judge_name=version.name))
        round_.candidate = candidate.name
        round_.save(update_fields=["candidate"])
        eval_settings = EvalSettings(samples=params.get("eval_samples", 4), max_new_tokens=params.get("max_new_tokens", 96),
                                     seed=params.get("seed", 0))
        after = evaluate_checkpoint(candidate, heldout, judge, eval_settings)
        before = evaluate_checkpoint(active, heldout, judge, eval_settings)

        if not stage("gate"):
            return _cancelled(round_, "cancelled before the gate")
        decision = gate(after, before, GateConfig(seed=params.get("seed", 0)))
        with transaction.atomic():
            promoted = promote_through_gate(candidate, decision)
            report = jsonable({
                "round": round_.pk, "judge": version.name, "active_before": active.name, "candidate": candidate.name,
                "promoted": promoted, "decision": decision.as_dict(), "gathered": {k: v for k, v in gathered.items()
                                                                                  if k != "prompts"},
                "prompts": {"train": len(train), "heldout": len(heldout)},
                "grpo": {"steps": result.steps, "wall_s": result.wall_s, **result.metrics},
                "before": _summary(before), "after": _summary(after),
            })
            Checkpoint.objects.filter(pk=candidate.pk).update(metrics={**candidate.metrics, "evaluation": report["after"],
                                                                       "gate": report["decision"]})
            finish_round(round_, RlaifRound.Status.DONE, promoted=promoted, decision=report["decision"], report=report)
        on_progress({"event": "log", "message": ("promoted " if promoted else "kept ") +
                     (candidate.name if promoted else active.name) + ": " + "; ".join(decision.reasons)})
        return report
    except BaseException as exc:
        finish_round(round_, RlaifRound.Status.FAILED, reason=f"{type(exc).__name__}: {exc}"[:2000])
        raise


def _cancelled(round_: RlaifRound, reason: str) -> dict:
    finish_round(round_, RlaifRound.Status.CANCELLED, reason=reason)
    return {"round": round_.pk, "cancelled": True, "reason": reason, "promoted": False}


def _summary(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("per_prompt_pass", "settings")}


GRPO_FIELDS = ("max_steps", "prompts_per_step", "lr", "kl_coef", "max_new_tokens", "seed", "max_seconds", "group_size")


# The anti-collapse reward terms that let GRPO pass the gate on the paper's data (bench.rlaif).
DEFAULT_DIVERSITY_COEF, DIVERSITY_NGRAM, DEFAULT_COPY_COEF = 4.0, 2, 0.5


def grpo_fields(params: dict) -> dict:
    """The GRPOConfig fields a job's params carry (`steps` -> max_steps, `max_minutes` -> max_seconds;
    `diversity_coef`/`copy_coef` -> the reward's anti-collapse terms, on by default)."""
    fields = {k: params[k] for k in GRPO_FIELDS if params.get(k) is not None}
    fields["reward"] = RewardConfig(
        diversity_coef=params.get("diversity_coef", DEFAULT_DIVERSITY_COEF), diversity_ngram=DIVERSITY_NGRAM,
        copy_coef=params.get("copy_coef", DEFAULT_COPY_COEF))
    if params.get("steps") is not None:
        fields["max_steps"] = params["steps"]
    if params.get("max_minutes"):
        fields["max_seconds"] = params["max_minutes"] * 60
    return fields
