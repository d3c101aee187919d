"""Dropdowns of registry rows for job forms: a value is a name from the registry (an id is read as
its name), the blank choice means "the active one" and says which one that is, and a form that
needs an active row while none is refuses with a bilingual message and a link to the page that
fixes it (`fix`, shown beside the field)."""
from __future__ import annotations

from django import forms

from webapp.jobs.datafiles import KnowsItsName


class RegistryChoiceField(KnowsItsName, forms.ChoiceField):
    """Subclasses say which rows (`rows`), how to label one (`row_label`) and which is active (`active`)."""

    what = ("记录", "row")  # (Chinese, English) name of what is chosen, for the messages
    fix: tuple[str, str] | None = None

    def __init__(self, *, blank_means_active: bool = True, require_active: bool = False, **kwargs):
        self.blank_means_active, self.require_active = blank_means_active, require_active
        kwargs.setdefault("required", False)
        super().__init__(choices=self.row_choices, **kwargs)

    # --- what subclasses provide
    def rows(self):
        raise NotImplementedError

    def row_label(self, row) -> str:
        return row.name

    def active(self):
        return None

    # --- the dropdown
    def blank_label(self) -> str:
        zh, en = self.what
        if not self.blank_means_active:
            return "不使用 none"
        current = self.active()
        return f"当前启用的{zh} the active {en}: {current.name}" if current else f"— 没有启用的{zh} no {en} is active —"

    def row_choices(self):
        return [("", self.blank_label())] + [(row.name, self.row_label(row)) for row in self.rows()]

    def to_python(self, value):
        value = super().to_python(value).strip()
        if value.isdigit():  # an id, as scripts and the command line give it
            row = self.rows().filter(pk=int(value)).first()
            if row is not None:
                return row.name
        return value

    def validate(self, value):
        forms.Field.validate(self, value)
        zh, en = self.what
        label = self.label or self.field_name
        if value and not self.rows().filter(name=value).exists():
            raise forms.ValidationError(
                f"{label}：没有名为 {value!r} 的{zh}，请从列表中选择。 / {label}: no {en} named {value!r}; pick one from "
                f"the list.", code="invalid_choice")
        if not value and self.blank_means_active and self.require_active and self.active() is None:
            raise forms.ValidationError(self.no_active_message(label), code="no_active")

    def no_active_message(self, label: str) -> str:
        zh, en = self.what
        return (f"{label}：没有启用的{zh}，请在列表中选一个，或在链接的页面上启用一个。 / "
                f"{label}: no {en} is active; pick one in this list, or activate one on the page linked here.")


class MultipleRegistryChoiceField(KnowsItsName, forms.MultipleChoiceField):
    """Several rows of a RegistryChoiceField's kind; none chosen means the active one."""

    def __init__(self, single: RegistryChoiceField, **kwargs):
        self.single = single
        kwargs.setdefault("required", False)
        super().__init__(choices=lambda: self.single.row_choices()[1:], **kwargs)

    @property
    def fix(self):
        return self.single.fix

    def to_python(self, value):
        if isinstance(value, str):  # a stored or typed list: "a,b"
            value = [v for v in value.replace("，", ",").split(",") if v.strip()]
        return [self.single.to_python(v) for v in super().to_python(value)]

    def validate(self, value):
        forms.Field.validate(self, value)
        self.single.label, self.single.field_name = self.label, self.field_name
        for item in value:
            self.single.validate(item)
