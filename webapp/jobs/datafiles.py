"""The files a training job may read: only those inside the app's own data folders.

The folders: the starter corpus (training/data/starter), uploads (VAR_DIR/uploads), imported
files (VAR_DIR/imports), what earlier jobs and rounds wrote (VAR_DIR/jobs, rlaif, curation) and
the shared data folder; settings.TRAINING_DATA_DIRS replaces all but the first two. A path is
resolved (symlinks and `..` followed) before the check, so /etc/passwd, ../../etc and a link
out of a data folder are refused. Forms offer these files as dropdowns (DataFileField); run
functions check again (check_data_file) when the job starts."""
from __future__ import annotations

import os
from pathlib import Path

from django import forms
from django.conf import settings

from webapp.jobs.kinds import FieldError

DATA_SUFFIXES = (".txt", ".json", ".jsonl", ".parquet", ".csv")
MAX_LISTED = 300  # files per dropdown; the newest job folders would otherwise crowd out the starter files
MAX_DEPTH = 4


class DataFileError(FieldError):
    """A path outside the data folders, or no file there."""


def upload_dir() -> Path:
    return (Path(settings.VAR_DIR) / "uploads").resolve()


def shared_data_dir() -> Path:
    return Path(getattr(settings, "SHARED_DATA_DIR", Path(settings.BASE_DIR).parent / "shared" / "data")).resolve()


def data_dirs() -> list[tuple[str, Path]]:
    """(short name, folder) for every folder a job may read from, in the order the dropdowns list them."""
    fixed = [("starter", Path(settings.STARTER_CORPUS_DIR).resolve()), ("uploads", upload_dir())]
    configured = getattr(settings, "TRAINING_DATA_DIRS", None)
    if configured is not None:
        return fixed + [(Path(p).name or str(p), Path(p).resolve()) for p in configured]
    var = Path(settings.VAR_DIR)
    return fixed + [(name, (var / name).resolve()) for name in ("imports", "jobs", "rlaif", "curation")] + [
        ("shared", shared_data_dir())]


def inside_data_dirs(path: Path) -> bool:
    return any(path.is_relative_to(root) for _, root in data_dirs())


def folders_text() -> str:
    return ", ".join(str(root) for _, root in data_dirs())


def outside_message(name: str, raw: str) -> str:
    return (f"{name}：只能使用应用数据文件夹里的文件，{raw!r} 不在其中。请从列表中选择或上传文件。 / "
            f"{name}: only files inside the app's data folders can be used ({folders_text()}); {raw!r} is "
            f"outside them. Pick one from the list or upload it.")


def resolve(raw: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():  # relative to the app, so ../../etc climbs out of it and is refused
        path = Path(settings.BASE_DIR) / path
    return path.resolve()


def check_data_file(value, field: str, label: str | None = None) -> Path:
    """The resolved file, or DataFileError naming the field: outside the data folders, or missing."""
    raw = str(value or "").strip()
    name = f"{label} ({field})" if label and label != field else field
    path = resolve(raw)
    if not inside_data_dirs(path):
        raise DataFileError(field, outside_message(name, raw))
    if not path.is_file():
        raise DataFileError(field, f"{name}：文件 {raw} 不存在 / {name}: {raw} does not exist")
    return path


def list_data_files(suffixes=DATA_SUFFIXES) -> list[tuple[str, str]]:
    """(absolute path, "folder / relative path") of the readable files in the data folders."""
    rows: list[tuple[str, str]] = []
    for short, root in data_dirs():
        if not root.is_dir():
            continue
        for folder, dirs, files in os.walk(root):
            depth = len(Path(folder).relative_to(root).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
            for name in sorted(files):
                path = Path(folder) / name
                if name.startswith(".") or path.suffix.lower() not in suffixes or not path.resolve().is_file() \
                        or not inside_data_dirs(path.resolve()):
                    continue
                rows.append((str(path.resolve()), f"{short} / {path.relative_to(root)}"))
                if len(rows) >= MAX_LISTED:
                    return rows
    return rows


class KnowsItsName:
    """A form field that knows the name the form gives it, so its error messages can name the field."""

    field_name = "file"

    def get_bound_field(self, form, field_name):
        self.field_name = field_name  # fields are copied per form instance: no sharing between forms
        return super().get_bound_field(form, field_name)


class DataFileField(KnowsItsName, forms.ChoiceField):
    """A dropdown of the data folders' files. A value from elsewhere (an API caller, a stored job) is
    accepted when it resolves to a file inside the folders; anything else is refused naming the field."""

    fix = ("#upload", "上传文件 Upload a file")

    def __init__(self, *, suffixes=DATA_SUFFIXES, blank_label: str = "---------", **kwargs):
        self.suffixes, self.blank_label = tuple(suffixes), blank_label
        super().__init__(choices=self.file_choices, **kwargs)

    def file_choices(self):
        return [("", self.blank_label)] + list_data_files(self.suffixes)

    def validate(self, value):
        forms.Field.validate(self, value)  # required; membership is the folder check below, not the list
        if value:
            self.checked(value)

    def checked(self, value) -> Path:
        try:
            return check_data_file(value, self.field_name, self.label)
        except DataFileError as exc:
            raise forms.ValidationError(exc.message, code="outside_data_dirs") from None

    def clean(self, value):
        value = super().clean(value)
        return str(self.checked(value)) if value else ""


class MultipleDataFileField(KnowsItsName, forms.MultipleChoiceField):
    """Several files of the data folders (pairs files, evaluation files to exclude)."""

    fix = DataFileField.fix

    def __init__(self, *, suffixes=DATA_SUFFIXES, **kwargs):
        self.suffixes = tuple(suffixes)
        super().__init__(choices=self.file_choices, **kwargs)

    def file_choices(self):
        return list_data_files(self.suffixes)

    def to_python(self, value):
        if isinstance(value, str):  # a stored or typed list: "a.json,b.json"
            value = [v for v in value.replace("，", ",").split(",") if v.strip()]
        return super().to_python(value)

    def validate(self, value):
        forms.Field.validate(self, value)
        for item in value:
            DataFileField.checked(self, item)

    def clean(self, value):
        return [str(DataFileField.checked(self, item)) for item in super().clean(value)]




MAX_UPLOAD_BYTES = 50 * 2**20


def save_upload(uploaded) -> Path:
    """An uploaded file saved in the uploads folder under a safe, unused name; DataFileError when refused."""
    from django.utils.text import get_valid_filename

    if uploaded is None:
        raise DataFileError("file", "请选择要上传的文件 / choose a file to upload")
    name = get_valid_filename(Path(uploaded.name).name)
    if Path(name).suffix.lower() not in DATA_SUFFIXES:
        raise DataFileError("file", f"文件类型不支持 / {name}: only {', '.join(DATA_SUFFIXES)} files can be used")
    if uploaded.size > MAX_UPLOAD_BYTES:
        raise DataFileError("file", f"文件太大 / {name} is over {MAX_UPLOAD_BYTES // 2**20} MB")
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / name, 1
    while target.exists():
        target, n = folder / f"{Path(name).stem}-{n}{Path(name).suffix}", n + 1
    with target.open("xb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    return target
