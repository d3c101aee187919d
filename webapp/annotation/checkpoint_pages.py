"""Admin pages for checkpoints (/train/checkpoints/): the registry with each checkpoint's training
judge and that judge's agreement with people, promotion, one-click rollback, and a blind
side-by-side comparison that can feed the annotation queue. They live in the annotation app
because they show its alignment figures and feed its queue; the registry itself is
webapp.checkpoints."""
from django import forms
from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from webapp.annotation import comparison, judged
from webapp.annotation.services import AnnotationError
from webapp.checkpoints import services as registry
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.services import RegistryError, active_checkpoint, promote_checkpoint
from webapp.core.roles import admin_required

SHOWN_METRICS = ("loss", "heldout_loss", "real_experts_per_token", "pass_rate", "mean_reward", "kl")
DEFAULT_PROMPTS = "七十岁生日祝福语\n给老师的教师节祝福\n同事乔迁之喜的祝福\n春节给客户的拜年短信"


@require_GET
@admin_required
def checkpoint_list(request):
    checkpoints = list(Checkpoint.objects.all())
    judges = judged.training_judges(checkpoints)
    for checkpoint in checkpoints:
        checkpoint.judge_alignment = judges.get(checkpoint.name)
        checkpoint.shown_metrics = [(name, checkpoint.metrics[name]) for name in SHOWN_METRICS
                                    if isinstance(checkpoint.metrics.get(name), (int, float))]
    return render(request, "checkpoints/list.html", {
        "checkpoints": checkpoints, "active": active_checkpoint(),
        "previous": registry.previous_active_checkpoint(), "metric_names": SHOWN_METRICS})


@require_POST
@admin_required
def promote(request, pk):
    checkpoint = get_object_or_404(Checkpoint, pk=pk)
    try:
        promote_checkpoint(checkpoint)
    except RegistryError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"{checkpoint.name} is now active; workers switch on their next request.")
    return redirect("checkpoints:list")


@require_POST
@admin_required
def rollback(request):
    try:
        restored = registry.rollback()
    except RegistryError as exc:
        messages.error(request, str(exc))
    else:
        messages.info(request, f"Rolled back: {restored.name} is active again.")
    return redirect("checkpoints:list")


class CompareForm(forms.Form):
    a = forms.ModelChoiceField(queryset=Checkpoint.objects.filter(family=Checkpoint.Family.GENERATOR), label="Checkpoint A")
    b = forms.ModelChoiceField(queryset=Checkpoint.objects.filter(family=Checkpoint.Family.GENERATOR), label="Checkpoint B")
    prompts = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), initial=DEFAULT_PROMPTS,
                              help_text=f"One request a line, at most {comparison.MAX_PROMPTS}.")
    seed = forms.IntegerField(initial=0, min_value=0, max_value=2**31 - 1)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("a") and cleaned.get("b") and cleaned["a"].pk == cleaned["b"].pk:
            self.add_error("b", "Choose a checkpoint other than A.")
        lines = [line.strip() for line in cleaned.get("prompts", "").splitlines() if line.strip()]
        if "prompts" in cleaned and not lines:
            self.add_error("prompts", "Give at least one request.")
        elif len(lines) > comparison.MAX_PROMPTS:
            self.add_error("prompts", f"At most {comparison.MAX_PROMPTS} requests, got {len(lines)}.")
        cleaned["prompt_lines"] = lines
        return cleaned


@require_http_methods(["GET", "POST"])
@admin_required
def compare(request):
    form = CompareForm(request.POST if request.method == "POST" else None, initial=_default_pair())
    result, error, status = None, "", 200
    if request.method == "POST":
        if form.is_valid():
            try:
                result = comparison.compare(form.cleaned_data["a"], form.cleaned_data["b"],
                                            form.cleaned_data["prompt_lines"], seed=form.cleaned_data["seed"])
            except RegistryError as exc:
                error, status = str(exc), 400
            except Exception as exc:  # noqa: BLE001 - a folder that does not load: say which and why
                error, status = f"could not generate: {type(exc).__name__}: {exc}", 400
        else:
            status = 400
    return render(request, "checkpoints/compare.html", {"form": form, "result": result, "error": error},
                  status=status)


def _default_pair() -> dict:
    active = active_checkpoint()
    other = Checkpoint.objects.filter(family=Checkpoint.Family.GENERATOR).exclude(pk=getattr(active, "pk", None)).first()
    return {"a": active, "b": other}


@require_POST
@admin_required
def send_to_annotation(request):
    """The compared pair, same prompts and seed, as a blind pairwise annotation batch."""
    form = CompareForm(request.POST)
    if not form.is_valid():
        messages.error(request, "; ".join(f"{name}: {' '.join(errs)}" for name, errs in form.errors.items()))
        return redirect("checkpoints:compare")
    try:
        batch = comparison.send_to_annotation(form.cleaned_data["a"], form.cleaned_data["b"],
                                              form.cleaned_data["prompt_lines"], form.cleaned_data["seed"], request.user)
    except AnnotationError as exc:
        messages.error(request, f"{exc.field or 'batch'}: {exc.message}")
        return redirect("checkpoints:compare")
    messages.info(request, f"Annotation batch {batch.name!r} is being built from both checkpoints' outputs.")
    return redirect("annotation:home")
