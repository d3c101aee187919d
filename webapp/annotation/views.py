"""Thin views: check the role, parse the form, call services, render."""
import json

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.annotation import alignment as alignment_service
from webapp.annotation import checkpoint_batches, exchange, services
from webapp.annotation.keys import KEY_MAP, button_keys
from webapp.annotation.forms import (AlignmentForm, BatchForm, CheckpointBatchForm, GuidelinesForm, ImportForm,
                                     PairwiseRatingForm, PointwiseRatingForm)
from webapp.annotation.models import Batch, BatchBuild, Kind
from webapp.annotation.rubric import RUBRIC, RUBRIC_KEYS
from webapp.core.svg import bar_chart, principles_chart
from webapp.core.roles import ADMIN, ANNOTATOR, admin_required, has_role, role_required


annotator_required = role_required(ANNOTATOR, ADMIN)


def _error(request, error: services.AnnotationError):
    """A refusal as a small fragment; annotate.js swaps it into the message area."""
    response = render(request, "annotation/_message.html", {"error": error}, status=error.status)
    response["HX-Retarget"] = "#messages"
    response["HX-Reswap"] = "innerHTML"
    return response


def _item_context(request, batch: Batch, notice: str = "") -> dict:
    assignment = services.next_assignment(batch, request.user)
    left = right = None
    if assignment is not None and batch.kind == Kind.PAIRWISE:
        a, b = assignment.item.sides
        left, right = (b, a) if assignment.swapped else (a, b)
    return {"batch": batch, "assignment": assignment, "left": left, "right": right, "rubric": RUBRIC,
            "progress": services.progress(batch, request.user), "notice": notice, "keys": button_keys(),
            "is_admin": has_role(request.user, ADMIN)}


@require_GET
@annotator_required
def home(request):
    batches = Batch.objects.filter(is_open=True) if not has_role(request.user, ADMIN) else Batch.objects.all()
    rows = [(batch, services.progress(batch, request.user)) for batch in batches]
    has_work = any(batch.is_open and services.has_work(batch, request.user) for batch, _ in rows)
    shared = services.guidelines_for(None)
    return render(request, "annotation/home.html", {
        "rows": rows, "is_admin": has_role(request.user, ADMIN), "has_work": has_work,
        "default_guidelines": shared.text if shared else services.DEFAULT_GUIDELINES})


@require_GET
@annotator_required
def annotate(request, batch_id):
    batch = get_object_or_404(Batch, pk=batch_id, is_open=True)
    context = _item_context(request, batch)
    context["guidelines"] = services.guidelines_for(batch)
    context["default_guidelines"] = services.DEFAULT_GUIDELINES
    context["key_map"] = KEY_MAP
    return render(request, "annotation/annotate.html", context)


@require_POST
@annotator_required
def submit(request, assignment_id):
    assignment = services.Assignment.objects.filter(pk=assignment_id, annotator=request.user).select_related(
        "item__batch").first()
    if assignment is None:
        return _error(request, services.AnnotationError("This item is not assigned to you.", status=403))
    batch = assignment.item.batch
    form_class = PointwiseRatingForm if batch.kind == Kind.POINTWISE else PairwiseRatingForm
    form = form_class(request.POST)
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        return _error(request, services.AnnotationError(f"{field}: {' '.join(errors)}", field=field))
    data = form.cleaned_data
    try:
        result = services.submit_rating(
            assignment_id=assignment.pk, user=request.user, verdict=data.get("verdict", ""),
            rubric={key: data[key] for key in RUBRIC_KEYS} if batch.kind == Kind.POINTWISE else None,
            shown_choice=data.get("choice", ""), comment=data.get("comment", ""), seconds=data.get("seconds"))
    except services.AnnotationError as error:
        return _error(request, error)
    notice = "Saved." if result.created else "That rating was saved already; it counts once."
    return _next(request, batch, notice)


def _next(request, batch, notice):
    if request.htmx:
        return render(request, "annotation/_item.html", _item_context(request, batch, notice))
    messages.info(request, notice)
    return redirect("annotation:annotate", batch_id=batch.pk)


@require_POST
@annotator_required
def skip(request, assignment_id):
    assignment = get_object_or_404(services.Assignment.objects.select_related("item__batch"), pk=assignment_id)
    try:
        services.skip(assignment_id=assignment_id, user=request.user)
    except services.AnnotationError as error:
        return _error(request, error)
    return _next(request, assignment.item.batch, "Skipped.")


@require_POST
@annotator_required
def undo(request, batch_id):
    batch = get_object_or_404(Batch, pk=batch_id)
    try:
        services.undo_last(batch=batch, user=request.user)
    except services.AnnotationError as error:
        return _error(request, error)
    return _next(request, batch, "Your last rating was taken back; rate it again.")


@require_http_methods(["GET", "POST"])
@admin_required
def batch_create(request):
    form = BatchForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            batch = services.create_batch(
                name=data["name"], kind=data["kind"], k=data["k"], source_type=data["source_type"],
                limit=data["limit"], lease_seconds=data["lease_minutes"] * 60, created_by=request.user,
                origin=data["origin"], checkpoint_name=data["checkpoint_name"],
                **({"pair_source": data["pair_source"]} if data["source_type"] == "pairs"
                   else {"generation_source": data["generation_source"]} if data["source_type"] == "generations"
                   else {}))
        except services.AnnotationError as error:
            form.add_error(error.field if error.field in form.fields else None, error.message)
        else:
            messages.success(request, f"Batch {batch.name} has {batch.items.count()} items.")
            return redirect("annotation:home")
    return render(request, "annotation/batch_form.html", {"form": form}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@admin_required
def guidelines_edit(request, batch_id=None):
    batch = get_object_or_404(Batch, pk=batch_id) if batch_id else None
    current = services.guidelines_for(batch)
    initial = {"text": current.text if current else services.DEFAULT_GUIDELINES}
    form = GuidelinesForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.save_guidelines(batch=batch, text=form.cleaned_data["text"], user=request.user)
        messages.success(request, "Guidelines saved.")
        return redirect("annotation:annotate", batch_id=batch.pk) if batch else redirect("annotation:home")
    return render(request, "annotation/guidelines.html", {"form": form, "batch": batch},
                  status=400 if form.errors else 200)


@require_GET
@admin_required
def review(request):
    batch = get_object_or_404(Batch, pk=request.GET["batch"]) if request.GET.get("batch", "").isdigit() else None
    show_settled = request.GET.get("settled") == "1"
    rows = services.disagreements(batch, include_settled=show_settled)
    return render(request, "annotation/review.html", {"rows": rows, "batch": batch, "batches": Batch.objects.all(),
                                                      "show_settled": show_settled, "rubric_keys": RUBRIC_KEYS})


@require_POST
@admin_required
def settle(request, item_id):
    try:
        settlement = services.settle(item_id=item_id, user=request.user, answer_value=request.POST.get("answer", ""),
                                     note=request.POST.get("note", ""))
    except services.AnnotationError as error:
        return _error(request, error)
    if request.htmx:
        return render(request, "annotation/_settled.html", {"settlement": settlement})
    messages.success(request, "Settled.")
    return redirect("annotation:review")


@require_GET
@admin_required
def alignment(request):
    form = AlignmentForm(request.GET or None)
    judge = batch = None
    if form.is_valid():
        judge, batch = form.cleaned_data["judge"], form.cleaned_data["batch"]
    context = {"form": form, "judge": judge, "batch": batch}
    items = alignment_service.pointwise_items(batch)
    context["baseline"] = alignment_service.human_baseline(batch)
    if judge is not None:
        result = alignment_service.judge_alignment(judge, items)
        context["result"] = result
        context["pairwise"] = alignment_service.pairwise_judge_alignment(judge, batch)
        context["length_chart"] = bar_chart(
            [{"label": name, "value": e.value, "low": e.low, "high": e.high, "n": e.n} for name, e in
             result["by_length"]], "Judge–human agreement by greeting length (characters)")
        context["principles"] = alignment_service.principle_alignment(judge, items)
        context["principles_chart"] = principles_chart(context["principles"])
    versions = alignment_service.agreement_over_versions(items)
    context["versions"] = versions
    if versions:
        context["versions_chart"] = bar_chart(
            [{"label": v["judge"].name, "value": v["agreement"].value, "low": v["agreement"].low,
              "high": v["agreement"].high, "n": v["agreement"].n} for v in versions],
            "Agreement with people over judge versions (oldest first)")
    return render(request, "annotation/alignment.html", context)


@require_GET
@admin_required
def export_batch(request, batch_id):
    batch = get_object_or_404(Batch, pk=batch_id)
    response = HttpResponse(exchange.export_jsonl(batch), content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="annotations-{batch.pk}.jsonl"'
    return response


@require_GET
@admin_required
def export_preferences(request):
    batch = get_object_or_404(Batch, pk=request.GET["batch"]) if request.GET.get("batch", "").isdigit() else None
    body = json.dumps(exchange.llamafactory_pairs(batch), ensure_ascii=False, indent=1)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="human_preferences.json"'
    return response


@require_http_methods(["GET", "POST"])
@admin_required
def import_ratings(request):
    form = ImportForm(request.POST if request.method == "POST" else None, request.FILES if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            text = form.cleaned_data["file"].read().decode("utf-8")
            summary = exchange.import_jsonl(text, request.user)
        except UnicodeDecodeError:
            form.add_error("file", "The file is not UTF-8 text.")
        except services.AnnotationError as error:
            form.add_error("file", error.message)
        else:
            messages.success(request, f"Imported {summary.created} ratings ({summary.already_present} were there "
                                      f"already) into {', '.join(sorted(summary.batches))}.")
            return redirect("annotation:home")
    return render(request, "annotation/import.html", {"form": form}, status=400 if form.errors else 200)


@require_http_methods(["GET", "POST"])
@admin_required
def checkpoint_batch_create(request):
    """Start generating a batch from a checkpoint's outputs (or two checkpoints', blind)."""
    form = CheckpointBatchForm(request.POST if request.method == "POST" else None, request.FILES if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            prompts = checkpoint_batches.prompts_from_upload(data["prompts_file"]) if data["prompts_file"] else []
            prompts += (data["prompts_text"] or "").splitlines()
            common = {"prompts": prompts, "n_per_prompt": data["n_per_prompt"], "k": data["k"], "name": data["name"],
                      "created_by": request.user, "lease_seconds": data["lease_minutes"] * 60}
            if data["checkpoint_b"] is not None:
                batch = checkpoint_batches.create_pairwise_batch_from_checkpoints(
                    data["checkpoint"], data["checkpoint_b"], **common)
            else:
                batch = checkpoint_batches.create_batch_from_checkpoint(data["checkpoint"], kind=data["kind"], **common)
        except services.AnnotationError as error:
            only_file = data["prompts_file"] and not (data["prompts_text"] or "").strip()
            field = {"prompts": "prompts_file" if only_file else "prompts_text",
                     "checkpoint_a": "checkpoint"}.get(error.field, error.field)
            form.add_error(field if field in form.fields else None, error.message)
        else:
            return redirect("annotation:build", build_id=batch.build.pk)
    builds = BatchBuild.objects.select_related("batch", "checkpoint_a", "checkpoint_b")[:10]
    return render(request, "annotation/checkpoint_batch_form.html", {"form": form, "builds": builds},
                  status=400 if form.errors else 200)


@require_GET
@admin_required
def build_detail(request, build_id):
    """The build's progress; the partial polls itself while the build runs."""
    build = get_object_or_404(BatchBuild.objects.select_related("batch", "checkpoint_a", "checkpoint_b"), pk=build_id)
    template = "annotation/_build.html" if request.htmx else "annotation/build.html"
    return render(request, template, {"build": build})


@require_POST
@admin_required
def record_preferences(request):
    """Turn a pairwise batch's decided votes into corpus preference pairs (exchange.record_human_preferences)."""
    batch = get_object_or_404(Batch, pk=request.POST["batch"]) if request.POST.get("batch", "").isdigit() else None
    summary = exchange.record_human_preferences(batch)
    left_out = ", ".join(f"{count} {why}" for why, count in sorted(summary.left_out.items())) or "none"
    messages.success(request, f"Human preference pairs: {summary.created} new, {summary.linked} already in the "
                              f"corpus, {summary.updated} changed, "
                              f"{summary.unchanged} unchanged; left out: {left_out}.")
    return redirect("annotation:home")
