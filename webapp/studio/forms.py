"""Validation of a generation request, shared by the page and the JSON API."""
from django import forms
from django.core import validators

from webapp.corpus.models import QUERY_MAX_LENGTH
from webapp.studio.models import N_DEFAULT, N_MAX, N_MIN, Length, Tone
from generation.greeting import control_characters
from generation.requests import UnknownSlotValue, normalise_slot

TEXT_FIELDS = ("query", "occasion", "recipient", "details", "avoid")


def text_errors(name_zh: str, name_en: str) -> dict:
    """Bilingual messages for a text field (the app's convention; Django's own are Chinese only)."""
    return {"max_length": f"{name_zh}最多 %(limit_value)d 个字（现在 %(show_value)d 个）。 "
                          f"{name_en} may have at most %(limit_value)d characters (it has %(show_value)d).",
            "required": f"请填写{name_zh}。 {name_en} is required."}


def choice_errors(name_zh: str, name_en: str) -> dict:
    return {"invalid_choice": f"「%(value)s」不是可选的{name_zh}。 %(value)s is not one of the {name_en} choices."}


N_RANGE_MESSAGE = f"条数必须在 {N_MIN} 到 {N_MAX} 之间 n must be between {N_MIN} and {N_MAX}"
N_ERRORS = {key: N_RANGE_MESSAGE for key in ("min_value", "max_value", "invalid", "step_size")}


class RequestForm(forms.Form):
    query = forms.CharField(label="想要什么祝福 Request", max_length=QUERY_MAX_LENGTH, strip=True,
                            widget=forms.Textarea(attrs={"rows": 2, "placeholder": "例如：给妈妈的生日祝福", "maxlength": QUERY_MAX_LENGTH}),
                            error_messages={"required": "请写下想要的祝福。 The request cannot be empty."})
    occasion = forms.CharField(label="场合 Occasion", max_length=100, required=False,
                               error_messages=text_errors("场合", "The occasion"))
    recipient = forms.CharField(label="对象/关系 Recipient", max_length=100, required=False,
                                error_messages=text_errors("对象", "The recipient"))
    tone = forms.ChoiceField(label="风格 Tone", choices=[("", "—")] + list(Tone.choices), required=False,
                             error_messages=choice_errors("风格", "tone"))
    length = forms.ChoiceField(label="篇幅 Length", choices=[("", "—")] + list(Length.choices), required=False,
                               error_messages=choice_errors("篇幅", "length"))
    details = forms.CharField(label="要写进的细节 Details", max_length=300, required=False,
                              error_messages=text_errors("细节", "Details"))
    avoid = forms.CharField(label="避免 Avoid", max_length=300, required=False,
                            error_messages=text_errors("避免", "Avoid"))
    n = forms.IntegerField(label="条数 How many", min_value=N_MIN, max_value=N_MAX, initial=N_DEFAULT, required=False,
                           error_messages=N_ERRORS)

    def __init__(self, *args, limit: tuple[int, int | None] = (QUERY_MAX_LENGTH, None), **kwargs):
        """`limit`: (longest request in characters, the model's context in tokens or None)."""
        super().__init__(*args, **kwargs)
        self.limit, context = limit
        query = self.fields["query"]
        query.max_length = self.limit
        query.validators = [v for v in query.validators if not isinstance(v, validators.MaxLengthValidator)]
        query.validators.append(validators.MaxLengthValidator(self.limit, message=(
            f"请求最多 {self.limit} 个字%s。 A request may have at most {self.limit} characters%s (it has "
            "%%(show_value)d)." % ((f"（模型的上下文只有 {context} 个词元）", f" (the model's context holds {context} tokens)")
                                   if context else ("", "")))))
        query.widget.attrs.update(maxlength=self.limit, **{"data-limit": self.limit})

    def clean(self):
        data = super().clean()
        for name in TEXT_FIELDS:
            bad = control_characters(data.get(name) or "")
            if bad:
                self.add_error(name, f"不能包含控制字符 Control characters are not allowed ({', '.join(bad[:3])}).")
        for name, kind in (("occasion", "occasion"), ("recipient", "addressee")):
            if data.get(name) and name not in self.errors:
                try:  # the canonical value, so the card and the guards read what the writer meant
                    data[name] = normalise_slot(kind, data[name])
                except UnknownSlotValue as exc:
                    self.add_error(name, str(exc))
        if data.get("n") is None and "n" not in self.errors:
            data["n"] = N_DEFAULT
        return data


class FeedbackForm(forms.Form):
    action = forms.ChoiceField(choices=[("up", "up"), ("down", "down"), ("used", "used")])

