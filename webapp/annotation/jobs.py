"""The annotation app's kind of training job: judge_rated, the judge's verdicts on the greetings
people rated (stored as judge labels), so the alignment page can compare the judge with people.
Plain glue into webapp.judges.services; parameters re-validated by the kind's form."""
from __future__ import annotations

from django import forms

from webapp.annotation.alignment import rated_greetings
from webapp.jobs.kinds import JobHandle, JobKind, register
from webapp.judges import services as judge_services
from webapp.judges.choices import JudgeChoiceField
from webapp.judges.jobs import JobParamsError, clean_params


class JudgeRatedParams(forms.Form):
    judge = JudgeChoiceField(require_active=True, label="Judge 评审")
    overwrite = forms.BooleanField(required=False, help_text="Judge again the greetings this version already judged.")


def run_judge_rated(params: dict, job: JobHandle) -> dict:
    from django.urls import reverse

    p = clean_params(JudgeRatedParams, params)
    try:
        version = judge_services.resolve_judge(p["judge"] or None)
    except judge_services.JudgeServiceError as exc:
        raise JobParamsError(f"judge: {exc}", field="judge", fix=JudgeRatedParams.base_fields["judge"].fix) from exc
    greetings = list(rated_greetings())
    alignment = f"{reverse('annotation:alignment')}?judge={version.pk}"
    if not greetings:
        job.log("no greeting rated by people yet: nothing to judge")
        return {"judge": version.name, "judged": 0, "note": "还没有人评分的祝福 no greeting is rated by people yet: "
                                                            "ratings come from annotation batches"}
    job.on_progress({"event": "stage", "stage": f"judging {len(greetings)} rated greetings"})
    counts = judge_services.judge_greetings(version, greetings, overwrite=p["overwrite"])
    job.log(f"{version.name} judged {counts['judged']} rated greetings ({counts['skipped']} already judged)")
    return {"judge": version.name, **counts, "alignment": alignment}


JUDGE_RATED = register(JobKind(
    name="judge_rated", label="Judge the rated greetings", params_form=JudgeRatedParams, run=run_judge_rated,
    description="The judge gives its verdict on every greeting people rated in annotation batches (verdicts stored "
                "as judge labels; already judged ones are skipped), so the alignment page can compare it with people.",
    summary="评审已评分的祝福 The judge judges the greetings people rated, for the alignment page.",
    tags=("judges",)))
