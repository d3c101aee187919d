from django import forms

from webapp.annotation.models import Batch, Choice, Kind, Verdict
from webapp.annotation.rubric import RUBRIC, RUBRIC_MAX, RUBRIC_MIN
from webapp.annotation.services import SOURCE_TYPES
from webapp.checkpoints.models import Checkpoint
from webapp.corpus.models import Greeting, PreferencePair
from webapp.judges.models import JudgeVersion


VERDICT_ERROR = "请选择好或不好。 Choose Good or Bad."
CHOICE_ERROR = "请选择左边更好、右边更好、一样或都不好。 Choose left better, right better, tie or both bad."
COMMENT_ERRORS = {"max_length": "备注最多 %(limit_value)d 个字。 A comment may have at most %(limit_value)d characters."}


def rubric_errors(part) -> dict:
    message = f"{part.title}：请打 {RUBRIC_MIN} 到 {RUBRIC_MAX} 分。 {part.key} must be {RUBRIC_MIN} to {RUBRIC_MAX}."
    return dict.fromkeys(("min_value", "max_value", "invalid", "step_size"), message)


class PointwiseRatingForm(forms.Form):
    verdict = forms.ChoiceField(choices=Verdict.choices,
                                error_messages=dict.fromkeys(("required", "invalid_choice"), VERDICT_ERROR))
    comment = forms.CharField(required=False, max_length=2000, error_messages=COMMENT_ERRORS)
    seconds = forms.FloatField(required=False, min_value=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for part in RUBRIC:
            # optional: Good/Bad stands alone; services.checked_rubric takes all five parts or none
            self.fields[part.key] = forms.IntegerField(min_value=RUBRIC_MIN, max_value=RUBRIC_MAX, label=part.title,
                                                       required=False, error_messages=rubric_errors(part))


class PairwiseRatingForm(forms.Form):
    choice = forms.ChoiceField(choices=Choice.choices,
                               error_messages=dict.fromkeys(("required", "invalid_choice"), CHOICE_ERROR))
    comment = forms.CharField(required=False, max_length=2000, error_messages=COMMENT_ERRORS)
    seconds = forms.FloatField(required=False, min_value=0)


class BatchForm(forms.Form):
    name = forms.CharField(max_length=200)
    kind = forms.ChoiceField(choices=Kind.choices)
    k = forms.IntegerField(min_value=1, max_value=20, initial=2, label="Annotators per item (k)")
    lease_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=15, label="Lease (minutes)")
    source_type = forms.ChoiceField(choices=list(SOURCE_TYPES.items()), label="Source")
    origin = forms.CharField(required=False, max_length=300, label="Origin contains")
    checkpoint_name = forms.CharField(required=False, max_length=100, label="Checkpoint (for its outputs)")
    generation_source = forms.ChoiceField(
        required=False, label="Generations by",
        choices=[("", "human and model"), (Greeting.Source.HUMAN, "human"), (Greeting.Source.MODEL, "model")])
    pair_source = forms.ChoiceField(required=False, label="Pairs from",
                                    choices=[("", "any")] + list(PreferencePair.Source.choices))
    limit = forms.IntegerField(min_value=1, max_value=5000, initial=100, label="At most this many items")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if Batch.objects.filter(name=name).exists():
            raise forms.ValidationError("A batch with this name exists already.")
        return name


class GuidelinesForm(forms.Form):
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 14}), max_length=20000)


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSON Lines as exported here.")


class AlignmentForm(forms.Form):
    judge = forms.ModelChoiceField(queryset=JudgeVersion.objects.order_by("-created_at"), required=False)
    batch = forms.ModelChoiceField(queryset=Batch.objects.all(), required=False, empty_label="all batches")


class CheckpointBatchForm(forms.Form):
    """A batch of one checkpoint's outputs, or a blind comparison of two (services.create_*)."""

    checkpoint = forms.ModelChoiceField(queryset=Checkpoint.objects.filter(family=Checkpoint.Family.GENERATOR),
                                        label="Checkpoint (side A)")
    checkpoint_b = forms.ModelChoiceField(queryset=Checkpoint.objects.filter(family=Checkpoint.Family.GENERATOR), required=False,
                                          label="Compare with (side B, optional: makes a blind pairwise batch)")
    kind = forms.ChoiceField(choices=Kind.choices, initial=Kind.POINTWISE,
                             help_text="With one checkpoint, pairwise compares its outputs two by two.")
    n_per_prompt = forms.IntegerField(min_value=1, max_value=20, initial=2, label="Outputs per prompt")
    k = forms.IntegerField(min_value=1, max_value=20, initial=2, label="Annotators per item (k)")
    lease_minutes = forms.IntegerField(min_value=1, max_value=24 * 60, initial=15, label="Lease (minutes)")
    name = forms.CharField(required=False, max_length=200,
                           help_text="Annotators see it: keep model names out. Empty: a dated default.")
    prompts_file = forms.FileField(required=False, label="Prompt file",
                                   help_text="One query a line (.txt), or a verl .parquet (its prompt column).")
    prompts_text = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 8}), label="Or paste prompts",
                                   help_text="One query a line.")

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if name and Batch.objects.filter(name=name).exists():
            raise forms.ValidationError("A batch with this name exists already.")
        return name

    def clean(self):
        data = super().clean()
        if not data.get("prompts_file") and not (data.get("prompts_text") or "").strip():
            self.add_error("prompts_text", "Give prompts: upload a file or paste one query a line.")
        a, b = data.get("checkpoint"), data.get("checkpoint_b")
        if a is not None and b is not None and a.pk == b.pk:
            self.add_error("checkpoint_b", "Compare two different checkpoints.")
        return data
