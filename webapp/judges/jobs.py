"""The judges app's kinds of training job: curate_pairs, adversarial_judge, reward_model.

Each run function is plain glue into webapp.judges.services (which wraps training/): parameters
re-validated by the kind's form (a clear error naming the field), progress through
job.on_progress, a JSON result. A stop request (on_progress returning False) ends the run
cleanly with {"cancelled": true}: no pair file, no half-registered judge."""
from __future__ import annotations

import re
from pathlib import Path

from django import forms

from training.curation import CurationConfig, CurationError
from training.judges.adversarial import AdversarialConfig, AdversarialError, PERTURBATIONS
from webapp.checkpoints.choices import CheckpointChoiceField
from webapp.jobs.choices import MultipleRegistryChoiceField, RegistryChoiceField
from webapp.jobs.datafiles import DataFileField, MultipleDataFileField
from webapp.jobs.kinds import FieldError, JobHandle, JobKind, register
from webapp.judges import curation, services
from webapp.judges.choices import JudgeChoiceField
from webapp.judges.models import PrincipleSet

_LIST_SPLIT = re.compile(r"[,，\n]+")


class JobParamsError(FieldError):
    """Parameters a job cannot run with; the message names every bad field, `field` the first of them."""

    def __init__(self, message: str, field: str = "", fix: tuple[str, str] | None = None):
        ValueError.__init__(self, message)
        self.field, self.fix = field, fix


def split_list(text: str) -> list[str]:
    return [item.strip() for item in _LIST_SPLIT.split(text or "") if item.strip()]


def clean_params(form_class, params: dict) -> dict:
    """The form's cleaned data (fields left out take their initial value), or JobParamsError naming every bad field."""
    data = {name: field.initial for name, field in form_class.base_fields.items() if field.initial is not None}
    # the job system stores cleaned data: lists (temperatures, files) come back as lists; bind them as text again
    data.update({key: _bindable(form_class, key, value) for key, value in params.items() if value is not None})
    form = form_class(data=data)
    if not form.is_valid():
        problems = "; ".join(f"{field}: {' '.join(errors)}" for field, errors in form.errors.items())
        first = next(iter(form.errors))
        raise JobParamsError(problems, field=first, fix=getattr(form.fields.get(first), "fix", None))
    return form.cleaned_data


def _bindable(form_class, key: str, value):
    """A stored value as form data: lists stay lists for multiple-choice fields, else comma-joined text."""
    field = form_class.base_fields.get(key)
    if isinstance(value, (list, tuple)) and not isinstance(field, forms.MultipleChoiceField):
        return ",".join(map(str, value))
    return value


class PrincipleSetChoiceField(RegistryChoiceField):
    """A principle set as NAME:VERSION; blank: the active judge's, else the newest 'default'."""

    what = ("原则集", "principle set")

    def rows(self):
        return PrincipleSet.objects.order_by("name", "-version")

    def row_choices(self):
        return [("", "当前评审的原则集 the active judge's, else the newest 'default'")] + [
            (f"{row.name}:{row.version}", f"{row.name} v{row.version}") for row in self.rows()]

    def to_python(self, value):
        return forms.Field.to_python(self, value).strip() if value not in (None, "") else ""

    def validate(self, value):
        forms.Field.validate(self, value)  # resolve_principle_set names a missing one, with the known ones


class CommandJob:
    """A JobHandle for running a kind outside the job system (management commands): progress goes to
    the terminal's tqdm bars and `log` lines to stdout; it is never cancelled."""

    def __init__(self, params: dict, workdir: Path, write=print):
        self.id, self.params, self.workdir, self.resumed = 0, params, Path(workdir), False
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._write = write

    def on_progress(self, payload: dict) -> bool:
        if payload.get("event") == "stage":
            self._write(f"stage: {payload['stage']}")
        return True

    def log(self, message: str) -> None:
        self._write(message)


# --------------------------------------------------------------------------------------------
# curate_pairs


class CuratePairsParams(forms.Form):
    method = forms.ChoiceField(choices=[("score", "score: judges score, clear margins kept"),
                                        ("debate", "debate: retrieve, positive/negative agents, judge, reflect")],
                               initial="score", help_text="debate uses the LLM judge's endpoint (JUDGE_LLM_*).")
    prompts_file = DataFileField(label="Prompt file 请求文件",
                                 help_text="Queries: any importable file (queries, alpaca, pairwise, labeled, verl).")
    max_prompts = forms.IntegerField(min_value=1, max_value=100_000, initial=50)
    checkpoints = MultipleRegistryChoiceField(CheckpointChoiceField(), label="Checkpoints 检查点",
                                              help_text="Generator checkpoints as agents; none chosen: the active one "
                                                        "(unless a remote server is given).")
    remote_url = forms.URLField(required=False, assume_scheme="http", help_text="An OpenAI-compatible server (its /v1/completions) as another agent.")
    remote_model = forms.CharField(required=False)
    temperatures = forms.CharField(initial="0.7,1.1", help_text="One agent per source and temperature.")
    personas = forms.CharField(required=False, help_text="Style hints taken in turn by the agents, e.g. 古风,幽默.")
    candidates_per_agent = forms.IntegerField(min_value=1, max_value=16, initial=2)
    max_new_tokens = forms.IntegerField(min_value=8, max_value=512, initial=96)
    judges = MultipleRegistryChoiceField(JudgeChoiceField(), label="Judges 评审",
                                         help_text="Judge versions; none chosen: the active judge. Method score only.")
    retrieve_k = forms.IntegerField(min_value=0, max_value=8, initial=3,
                                    help_text="Method debate: similar well-rated corpus greetings as few-shot examples.")
    min_margin = forms.FloatField(min_value=0.01, max_value=1.0, initial=0.3)
    max_longer_share = forms.FloatField(min_value=0.0, max_value=1.0, initial=0.5,
                                        help_text="At most this share of pairs whose chosen text is longer.")
    exclude_files = MultipleDataFileField(required=False, label="Exclude files 排除文件",
                                          help_text="Evaluation files whose queries are never used (leakage guard).")
    name = forms.SlugField(required=False, max_length=80)
    import_to_corpus = forms.BooleanField(required=False)
    seed = forms.IntegerField(initial=0)

    def clean_temperatures(self):
        try:
            values = [float(t) for t in split_list(self.cleaned_data["temperatures"])]
        except ValueError:
            raise forms.ValidationError("give numbers separated by commas, e.g. 0.7,1.1") from None
        if not values or any(not 0.0 <= t <= 2.0 for t in values):
            raise forms.ValidationError("give one to several temperatures in [0, 2]")
        return values

    def clean(self):
        data = super().clean()
        if data.get("remote_url") and not data.get("remote_model"):
            self.add_error("remote_model", "name the model the remote server serves")
        return data


def run_curate_pairs(params: dict, job: JobHandle) -> dict:
    p = clean_params(CuratePairsParams, params)
    job.on_progress({"event": "stage", "stage": "load agents"})
    try:
        config = CurationConfig(min_margin=p["min_margin"], max_longer_share=p["max_longer_share"], seed=p["seed"] or 0)
    except CurationError as exc:
        raise JobParamsError(str(exc)) from exc
    agents = curation.build_generator_agents(
        checkpoints=p["checkpoints"], temperatures=p["temperatures"], personas=split_list(p["personas"]),
        n=p["candidates_per_agent"], max_new_tokens=p["max_new_tokens"], remote_url=p["remote_url"],
        remote_model=p["remote_model"])
    name = p["name"] or f"pairs-job{job.id}"
    try:
        if p["method"] == "debate":
            return curation.curate_preference_pairs_by_debate(
                prompts_file=Path(p["prompts_file"]), agents=agents,
                exclude_files=[Path(f) for f in p["exclude_files"]], config=config, max_prompts=p["max_prompts"],
                workdir=Path(job.workdir), name=name, import_to_corpus=p["import_to_corpus"],
                k=p["retrieve_k"] if p["retrieve_k"] is not None else 3, on_progress=job.on_progress,
                progress_bar=True)
        return curation.curate_preference_pairs(
            prompts_file=Path(p["prompts_file"]), agents=agents, judge_names=p["judges"],
            exclude_files=[Path(f) for f in p["exclude_files"]], config=config, max_prompts=p["max_prompts"],
            workdir=Path(job.workdir), name=name, import_to_corpus=p["import_to_corpus"],
            on_progress=job.on_progress, progress_bar=True)
    except services.JudgeJobCancelled as exc:
        return {"cancelled": True, "message": str(exc)}


# --------------------------------------------------------------------------------------------
# adversarial_judge


class AdversarialJudgeParams(forms.Form):
    principle_set = PrincipleSetChoiceField(label="Principle set 原则集")
    labelled_file = DataFileField(label="Labelled file 标注文件", suffixes=(".jsonl", ".json"),
                                  help_text="{query, response, label} JSON Lines: half for reflection, half held out.")
    rounds = forms.IntegerField(min_value=1, max_value=20, initial=3)
    attacks_per_round = forms.IntegerField(min_value=1, max_value=500, initial=24)
    llm_attacks_per_round = forms.IntegerField(min_value=0, max_value=100, initial=0)
    strategies = forms.CharField(required=False, help_text="Perturbations to attack with (blank: all).")
    heldout_fraction = forms.FloatField(min_value=0.05, max_value=0.95, initial=0.5)
    base_url = forms.URLField(required=False, assume_scheme="http", help_text="The LLM endpoint (blank: JUDGE_LLM_BASE_URL).")
    model = forms.CharField(required=False, help_text="blank: JUDGE_LLM_MODEL")
    timeout = forms.FloatField(required=False, min_value=0.1, max_value=600)
    max_retries = forms.IntegerField(required=False, min_value=0, max_value=10)
    register_llm_judge = forms.BooleanField(required=False, help_text="Also register an LLM judge with the new set.")
    seed = forms.IntegerField(initial=0)

    def clean_strategies(self):
        names = split_list(self.cleaned_data.get("strategies", ""))
        unknown = [n for n in names if n not in PERTURBATIONS]
        if unknown:
            raise forms.ValidationError(f"unknown {', '.join(unknown)}; known: {', '.join(PERTURBATIONS)}")
        return names or list(PERTURBATIONS)


def run_adversarial_judge(params: dict, job: JobHandle) -> dict:
    p = clean_params(AdversarialJudgeParams, params)
    try:
        settings_ = AdversarialConfig(rounds=p["rounds"], attacks_per_round=p["attacks_per_round"],
                                      llm_attacks_per_round=p["llm_attacks_per_round"],
                                      strategies=tuple(p["strategies"]), heldout_fraction=p["heldout_fraction"],
                                      seed=p["seed"] or 0)
    except AdversarialError as exc:
        raise JobParamsError(str(exc)) from exc
    llm_config = {key: p[key] for key in ("base_url", "model", "timeout", "max_retries") if p.get(key) not in (None, "")}
    principle_set = curation.resolve_principle_set(p["principle_set"] or None)
    summary = curation.optimise_principle_set(principle_set=principle_set, labelled_file=Path(p["labelled_file"]),
                                              llm_config=llm_config, settings_=settings_,
                                              register_llm_judge=p["register_llm_judge"], on_progress=job.on_progress)
    rounds = summary["rounds"]
    job.log(f"{len(rounds)} round(s); saved {summary['saved']}")
    return summary


# --------------------------------------------------------------------------------------------
# reward_model


class RewardModelParams(forms.Form):
    pair_files = MultipleDataFileField(label="Pair files 偏好对文件", suffixes=(".json", ".jsonl"),
                                       help_text="Pairwise files (LlamaFactory JSON or any pair format).")
    preset = forms.ChoiceField(choices=[("tiny", "tiny"), ("small", "small"), ("base", "base")], initial="small")
    steps = forms.IntegerField(required=False, min_value=1, max_value=1_000_000)
    seed = forms.IntegerField(initial=0)
    init_checkpoint = CheckpointChoiceField(blank_means_active=False, label="Start from 初始检查点",
                                            help_text="Start from this generator checkpoint; none: from scratch.")
    name = forms.SlugField(required=False, max_length=80)
    activate = forms.BooleanField(required=False)

    def clean_pair_files(self):
        if not self.cleaned_data["pair_files"]:
            raise forms.ValidationError("至少选择一个偏好对文件 / give at least one pairs file")
        return self.cleaned_data["pair_files"]


def run_reward_model(params: dict, job: JobHandle) -> dict:
    p = clean_params(RewardModelParams, params)
    try:
        version = services.train_reward_model_version(
            pair_files=[Path(f) for f in p["pair_files"]], preset=p["preset"],
            init_checkpoint=p["init_checkpoint"] or None, steps=p["steps"], seed=p["seed"] or 0,
            name=p["name"] or f"reward-model-job{job.id}", activate=p["activate"], on_progress=job.on_progress)
    except services.JudgeJobCancelled as exc:
        return {"cancelled": True, "message": str(exc)}
    return {"judge": version.name, "path": version.path, "active": version.is_active, "metrics": version.metrics}


CURATE_PAIRS = register(JobKind(
    name="curate_pairs", label="Curate preference pairs", params_form=CuratePairsParams, run=run_curate_pairs,
    description="Multi-agent rejection sampling: several generator agents write; method score: the judges score, "
                "pairs with a clear margin are kept; method debate: retrieved few-shot examples, positive and "
                "negative agents, a 0/1 judge and a reflect agent that overturns only with quoted evidence. "
                "Length-balanced, evaluation queries excluded.",
    summary="整理偏好对 Generator agents write, judges pick: preference pairs for a judge or reward model.",
    resumable=True, tags=("judges", "data")))
ADVERSARIAL_JUDGE = register(JobKind(
    name="adversarial_judge", label="Adversarial judge optimisation", params_form=AdversarialJudgeParams,
    run=run_adversarial_judge,
    description="Attack the LLM judge's principles with flawed greetings, reflect, keep a revised set only when "
                "its held-out agreement holds and its attack success rate falls.",
    summary="加固评审原则 Attack the LLM judge's principles with flawed greetings and keep a set that holds.",
    tags=("judges",)))
REWARD_MODEL = register(JobKind(
    name="reward_model", label="Reward model", params_form=RewardModelParams, run=run_reward_model,
    description="Bradley-Terry reward model on the MoE backbone, held-out metrics beside TF-IDF and length.",
    summary="训练奖励模型 A reward model (a judge) from preference pairs, with held-out metrics.",
    tags=("judges", "training")))
