"""The "sft" job kind: supervised fine-tuning of a generator preset, registered as a checkpoint.

Resumable: the run's name is kept in the job's own folder, so a job whose worker died picks
the run up from its last saved state (train_and_register(resume_run=...))."""
from pathlib import Path

from django import forms
from django.conf import settings

from generation.presets import PRESETS
from webapp.checkpoints.training import new_run_name, train_and_register
from webapp.jobs.datafiles import DataFileField, check_data_file
from webapp.jobs.kinds import JobHandle, JobKind, register

RUN_NAME_FILE = "sft_run_name"


class SFTParams(forms.Form):
    preset = forms.ChoiceField(choices=[(name, name) for name in PRESETS], initial="small",
                               help_text="tiny (seconds), small (demo, minutes on CPU), base (GPU)")
    data_source = forms.ChoiceField(choices=[("starter", "the starter corpus"), ("file", "a corpus file (below)")],
                                    initial="starter")
    data_path = DataFileField(required=False, label="Corpus file 语料文件", suffixes=(".json", ".jsonl", ".parquet", ".txt"),
                              help_text="A corpus file from the app's data folders or an upload.")
    max_steps = forms.IntegerField(required=False, min_value=1, max_value=1_000_000,
                                   help_text="Empty: the preset's number of steps.")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)
    promote = forms.BooleanField(required=False, help_text="Make the new checkpoint the active one when done.")

    def clean_seed(self):
        return self.cleaned_data["seed"] or 0

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("data_source") != "file":
            cleaned["data_path"] = ""
        elif "data_path" in cleaned and not cleaned["data_path"]:
            self.add_error("data_path", "语料文件：数据来源是文件时请选择一个文件 / Corpus file (data_path): choose a corpus "
                                        "file when the data source is a file.")
        return cleaned


def run_sft(params: dict, job: JobHandle) -> dict:
    name_file = job.workdir / RUN_NAME_FILE
    run_name = name_file.read_text().strip() if name_file.is_file() else ""
    state_saved = bool(run_name) and (Path(settings.RUNS_DIR) / run_name / "state" / "state.json").is_file()
    if not run_name:
        run_name = f"{new_run_name(params['preset'])}-job{job.id}"
        name_file.write_text(run_name)
    resume_run = run_name if (job.resumed and state_saved) else None
    data_paths = [check_data_file(params["data_path"], "data_path")] if params.get("data_path") else []
    job.log(f"{'resuming' if resume_run else 'starting'} run {run_name}")
    job.on_progress({"event": "stage", "stage": "training"})
    checkpoint = train_and_register(
        preset=params["preset"], data_paths=data_paths,
        resume_run=resume_run, run_name=run_name, seed=params.get("seed") or 0, max_steps=params.get("max_steps"),
        promote=bool(params.get("promote")), on_progress=job.on_progress,
    )
    job.on_progress({"event": "stage", "stage": "registered"})
    return {"checkpoint": checkpoint.name, "checkpoint_id": checkpoint.pk, "status": checkpoint.status,
            "metrics": {k: v for k, v in checkpoint.metrics.items() if isinstance(v, (int, float))}}


SFT = register(JobKind(
    name="sft", label="SFT: train a generator", params_form=SFTParams, run=run_sft, resumable=True,
    description="Supervised fine-tuning of a preset on the starter corpus or a corpus file; the result is "
                "registered as a checkpoint (and promoted when asked).",
    summary="训练生成模型 Train a generator on the starter corpus or a corpus file; it is registered as a checkpoint.",
    tags=("generator",),
))
