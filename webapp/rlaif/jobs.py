"""The RLAIF kinds of training job: "grpo", "evaluate" and "rlaif_round" (the whole pipeline,
also started by the periodic beat task `webapp.train.periodic_job` with kind "rlaif_round")."""
from __future__ import annotations

from pathlib import Path

from django import forms

from training.rl.evaluation import EvalSettings
from webapp.checkpoints.choices import CheckpointChoiceField
from webapp.checkpoints.models import Checkpoint
from webapp.jobs.datafiles import DataFileField
from webapp.jobs.kinds import JobHandle, JobKind, register
from webapp.judges.choices import JudgeChoiceField
from webapp.rlaif import services
from webapp.rlaif.services import RlaifError

PROMPT_SUFFIXES = (".txt", ".parquet", ".jsonl", ".json")


def _prompt_set(label: str, required: bool = False, blank: str = "---------") -> DataFileField:
    return DataFileField(required=required, label=label, suffixes=PROMPT_SUFFIXES, blank_label=blank,
                         help_text="A verl parquet file or one query a line, from the app's data folders or an upload.")


class EvaluateParams(forms.Form):
    prompts_file = _prompt_set("Prompt set 提示词集", required=True)
    checkpoint = CheckpointChoiceField(require_active=True, label="Checkpoint 检查点")
    judge = JudgeChoiceField(require_active=True, label="Judge 评审")
    samples = forms.IntegerField(min_value=1, max_value=16, initial=4, required=False)
    max_prompts = forms.IntegerField(min_value=1, max_value=100_000, required=False)
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0, required=False)



class GRPOParams(forms.Form):
    checkpoint = CheckpointChoiceField(require_active=True, label="Start from 起点检查点")
    judge = JudgeChoiceField(require_active=True, label="Reward judge 奖励评审")
    prompts_file = _prompt_set("Training prompts 训练提示词", blank="入门请求 the starter queries")
    steps = forms.IntegerField(min_value=1, max_value=10_000, initial=50, required=False)
    prompts_per_step = forms.IntegerField(min_value=1, max_value=64, initial=8, required=False)
    lr = forms.FloatField(min_value=1e-8, max_value=1e-3, initial=2e-5, required=False)
    kl_coef = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.001, required=False)
    max_new_tokens = forms.IntegerField(min_value=8, max_value=256, initial=96, required=False)
    max_minutes = forms.FloatField(min_value=0.1, max_value=24 * 60, required=False,
                                   help_text="Stop (and save) after this long.")
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0, required=False)
    # Without these GRPO collapsed onto one template and the gate refused it (README, bench.rlaif).
    diversity_coef = forms.FloatField(min_value=0.0, max_value=10.0, initial=4.0, required=False,
                                      help_text="Reward cost of repeating the group's and recent rollouts' "
                                                "character bigrams (0: off).")
    copy_coef = forms.FloatField(min_value=0.0, max_value=10.0, initial=0.5, required=False,
                                 help_text="Reward cost of a near-copy of a training greeting (0: off).")



class RoundParams(GRPOParams):
    checkpoint = None  # a round starts from the active checkpoint (or trains one first): no choice to make
    heldout_file = _prompt_set("Held-out prompts 留出提示词", blank="一部分训练提示词 a stable 20% of the prompts by query")
    heldout_fraction = forms.FloatField(min_value=0.05, max_value=0.5, initial=0.2, required=False)
    eval_prompts = forms.IntegerField(min_value=2, max_value=10_000, required=False)
    eval_samples = forms.IntegerField(min_value=1, max_value=16, initial=4, required=False)
    sft_preset = forms.ChoiceField(choices=[("tiny", "tiny"), ("small", "small"), ("base", "base")], initial="small",
                                   required=False, help_text="Used only for the cold start (no active checkpoint).")
    sft_steps = forms.IntegerField(min_value=1, max_value=100_000, required=False)


def cleaned(form_class, params: dict) -> dict:
    """The form's cleaned params, blanks dropped; invalid params raise RlaifError naming the field."""
    form = form_class(data=params or {})
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        raise RlaifError(field, "; ".join(errors), fix=getattr(form.fields.get(field), "fix", None))
    return {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}


def run_evaluate(params: dict, job: JobHandle) -> dict:
    params = cleaned(EvaluateParams, params)
    job.on_progress({"event": "stage", "stage": "evaluate"})
    checkpoint = services.checkpoint_for(params.get("checkpoint"))
    version, judge = services.judge_for(params.get("judge"))
    prompts = services.prompts_from(params["prompts_file"])[: params.get("max_prompts")]

    report = services.evaluate_checkpoint(checkpoint, prompts, judge,
                                          EvalSettings(samples=params.get("samples", 4), seed=params.get("seed", 0)))
    report["checkpoint_name"], report["judge_name"] = checkpoint.name, version.name
    job.on_progress({"event": "log", "message": f"{checkpoint.name}: pass rate {report['pass_rate']:.3f} "
                     f"[{report['pass_rate_ci95'][0]:.3f}, {report['pass_rate_ci95'][1]:.3f}]"})
    return {k: v for k, v in report.items() if k != "per_prompt_pass"}


def run_grpo(params: dict, job: JobHandle) -> dict:
    """GRPO from a checkpoint; the result is registered as a candidate, never promoted here."""
    params = cleaned(GRPOParams, params)
    checkpoint = services.checkpoint_for(params.get("checkpoint"))
    version, judge = services.judge_for(params.get("judge"))
    prompts = services.prompts_from(params.get("prompts_file"))
    run_name = f"grpo-job{job.id}"
    result = services.run_grpo(checkpoint=checkpoint, judge=judge, prompts=prompts, run_name=run_name,
                               resume=job.resumed, on_progress=job.on_progress, **services.grpo_fields(params))
    if not result.completed:
        return {"cancelled": True, "step": result.steps}

    candidate = (Checkpoint.objects.filter(name=run_name).first()  # registered before a worker died
                 or services.register_grpo_checkpoint(result, parent=checkpoint, run_name=run_name,
                                                      judge_name=version.name))
    return {"checkpoint": candidate.name, "steps": result.steps, "reward": result.metrics.get("reward"),
            "kl": result.metrics.get("kl"), "pass_rate": result.metrics.get("pass_rate")}


def run_round(params: dict, job: JobHandle) -> dict:
    params = cleaned(RoundParams, params)
    return services.run_round(params=params, workdir=Path(job.workdir), on_progress=job.on_progress, job_id=job.id,
                              resumed=job.resumed)


register(JobKind(name="evaluate", label="Evaluate a generator", params_form=EvaluateParams, run=run_evaluate,
                 description="Judge pass rate with a bootstrap interval, KL to SFT, distinct-n, novelty, lengths.",
                 summary="评估生成模型 Measure a checkpoint: judge pass rate, novelty, diversity, KL to SFT, lengths.",
                 tags=("rlaif",)))
register(JobKind(name="grpo", label="GRPO", params_form=GRPOParams, run=run_grpo, resumable=True,
                 description="GRPO (group of 4, k3 KL 0.001 to the SFT model) with the judge's reward; "
                             "registers a candidate checkpoint.",
                 summary="强化学习 Reinforce a checkpoint with a judge's reward; registers a candidate, never promotes.",
                 tags=("rlaif",)))
register(JobKind(name="rlaif_round", label="RLAIF round", params_form=RoundParams, run=run_round, resumable=True,
                 description="New requests and labels -> GRPO -> evaluation -> gate -> promotion.",
                 summary="完整一轮 The whole round: gather requests and labels, GRPO, evaluate, gate, promote.",
                 tags=("rlaif",)))
