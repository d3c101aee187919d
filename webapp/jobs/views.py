"""Admin pages of the training platform (/train/): thin views over services.py."""
from django.contrib import messages
from django.core.paginator import Paginator
from urllib.parse import urlencode

from django.http import Http404, QueryDict
from django.urls import reverse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.core.roles import admin_required
from webapp.jobs import datafiles, services
from webapp.jobs.charts import line_chart
from webapp.jobs.kinds import UnknownJobKind, all_kinds, get_kind, one_line
from webapp.jobs.models import TrainingJob

LOG_TAIL = 200


@require_GET
@admin_required
def job_list(request):
    page = Paginator(TrainingJob.objects.select_related("created_by"), 30).get_page(request.GET.get("page"))
    return render(request, "jobs/list.html", {"page": page, "active": services.active_job()})


@require_http_methods(["GET", "POST"])
@admin_required
def start(request):
    """The index of job kinds, one line each, in pipeline order; each links its own page.

    A POST naming a kind (the page's former single form, scripts) is handled as that kind's page."""
    if request.method == "POST":
        name = request.POST.get("kind", "")
        try:
            get_kind(name)
        except UnknownJobKind as exc:
            return render(request, "jobs/start.html", {"kinds": ordered_kinds(), "error": str(exc.args[0]),
                                                       "active": services.active_job()}, status=400)
        return start_kind(request, name)
    return render(request, "jobs/start.html", {"kinds": ordered_kinds(), "active": services.active_job()})


@require_http_methods(["GET", "POST"])
@admin_required
def start_kind(request, kind):
    """One kind's parameter form; POST starts it. GET values (?prompts_file=...) preselect fields."""
    try:
        job_kind = get_kind(kind)
    except UnknownJobKind as exc:
        return render(request, "jobs/start.html", {"kinds": ordered_kinds(), "error": str(exc.args[0]),
                                                   "active": services.active_job()}, status=404)
    error, status = "", 200
    if request.method == "POST":
        form = job_kind.params_form(request.POST, prefix=job_kind.name)
        try:
            job = services.start_job(job_kind.name, _unprefixed(request.POST, job_kind.name), request.user)
        except services.JobBusy as exc:
            error, status = exc.message, 409
        except services.JobError as exc:
            form.is_valid()  # shows the field errors beside the fields
            error, status = exc.message, 400
        else:
            return redirect("jobs:detail", pk=job.pk)
    else:
        form = job_kind.params_form(initial=_preselected(request.GET, job_kind), prefix=job_kind.name)
    return render(request, "jobs/start_kind.html", {
        "kind": job_kind, "form": form, "error": error, "active": services.active_job(),
        "file_fields": file_fields(form), "upload_dir": datafiles.upload_dir(), "suffixes": datafiles.DATA_SUFFIXES,
        "max_upload_mb": datafiles.MAX_UPLOAD_BYTES // 2**20}, status=status)


def file_fields(form) -> list[tuple[str, str]]:
    return [(name, field.label or name) for name, field in form.fields.items()
            if isinstance(field, (datafiles.DataFileField, datafiles.MultipleDataFileField))]


@require_POST
@admin_required
def upload(request, kind):
    """A file into the uploads folder; back to the kind's page with it chosen in the field it was for."""
    job_kind = get_kind_or_404(kind)
    target = reverse("jobs:start-kind", args=[job_kind.name])
    try:
        saved = datafiles.save_upload(request.FILES.get("file"))
    except datafiles.DataFileError as exc:
        messages.error(request, exc.message)
        return redirect(target + "#upload")
    messages.info(request, f"已上传 Uploaded {saved.name}: it is in the file lists now.")
    field = request.POST.get("for_field", "")
    if field in dict(file_fields(job_kind.params_form())):
        target += "?" + urlencode({field: str(saved)})
    return redirect(target)


def get_kind_or_404(name: str):
    try:
        return get_kind(name)
    except UnknownJobKind:
        raise Http404(f"unknown job kind {name!r}") from None


def _preselected(query: QueryDict, kind) -> dict:
    """Initial values from the query string, for the kind's own fields only (links from other pages)."""
    fields = kind.params_form.base_fields
    return {name: (query.getlist(name) if getattr(fields[name].widget, "allow_multiple_selected", False)
                   else query.get(name)) for name in query if name in fields}


def ordered_kinds() -> list:
    return [(kind, one_line(kind)) for kind in sorted(all_kinds(), key=pipeline_position)]


# The index lists kinds in the order a training pipeline runs them; kinds not named here follow.
PIPELINE_ORDER = ("sft", "reward_model", "curate_pairs", "adversarial_judge", "judge_rated", "evaluate", "grpo",
                  "rlaif_round", "marl")


def pipeline_position(kind) -> tuple[int, str]:
    return (PIPELINE_ORDER.index(kind.name) if kind.name in PIPELINE_ORDER else len(PIPELINE_ORDER), kind.name)


# The curves people look at first; any other metric a job reports follows in name order.
FIRST_CURVES = ("loss", "heldout_loss", "reward", "mean_reward", "kl", "pass_rate", "real_experts_per_token")


def _unprefixed(post: QueryDict, prefix: str) -> QueryDict:
    """The kind's fields without their form prefix, every value kept (multiple-choice fields)."""
    params = QueryDict(mutable=True)
    for key in post:
        if key.startswith(prefix + "-"):
            params.setlist(key[len(prefix) + 1:], post.getlist(key))
    return params


def _curves(job: TrainingJob) -> list:
    series: dict[str, list] = {}
    for name, step, value in job.metric_points.order_by("name", "step", "id").values_list("name", "step", "value"):
        series.setdefault(name, []).append((step, value))
    order = sorted(series, key=lambda n: (FIRST_CURVES.index(n) if n in FIRST_CURVES else len(FIRST_CURVES), n))
    return [line_chart(series[name], name) for name in order]


def _live_context(job: TrainingJob) -> dict:
    lines = list(job.log_lines.order_by("-id")[:LOG_TAIL])[::-1]
    return {"job": job, "curves": _curves(job), "log_lines": lines, "retry_query": retry_query(job)}


def retry_query(job: TrainingJob) -> str:
    """The job's parameters as a query string for its kind's page, the field at fault left out."""
    failed = (job.result or {}).get("failed_field")
    pairs = []
    for key, value in (job.params or {}).items():
        if key == failed or value in (None, ""):
            continue
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, str(item).lower() if isinstance(item, bool) else str(item)))
    return urlencode(pairs)


@require_GET
@admin_required
def detail(request, pk):
    job = get_object_or_404(TrainingJob.objects.select_related("created_by"), pk=pk)
    try:
        kind = get_kind(job.kind)
    except UnknownJobKind:
        kind = None
    return render(request, "jobs/detail.html", {**_live_context(job), "kind": kind})


@require_GET
@admin_required
def live(request, pk):
    """The part of the job page that htmx refreshes every second while the job runs."""
    job = get_object_or_404(TrainingJob, pk=pk)
    return render(request, "jobs/_live.html", _live_context(job))


@require_POST
@admin_required
def cancel(request, pk):
    job = get_object_or_404(TrainingJob, pk=pk)
    try:
        services.cancel_job(job)
    except services.JobError as exc:
        messages.error(request, exc.message)
    else:
        messages.info(request, "Cancel requested: the job stops at its next step.")
    return redirect("jobs:detail", pk=job.pk)
