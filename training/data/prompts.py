"""The one reader that turns a prompt file into queries: GRPO and evaluation prompt sets, annotation
batch prompts, curation prompts and their exclusion lists.

    read_prompts(path, field="prompts_file", formats=PROMPT_FORMATS)  # verl parquet or one query a line

Returns the distinct stripped queries in file order (at most `limit`). `formats` limits which
formats are accepted (None: any importable format, whose records' queries are used); `fmt` forces
one instead of detecting it; `name` is what messages call the file (an upload's own name). Every
refusal is a PromptFileError carrying the form field it belongs to, so callers never parse messages.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from training.data.formats import FormatError, detect_format, iter_records

PROMPT_FORMATS = ("verl", "queries")


class PromptFileError(ValueError):
    """A prompt file that cannot be used; `field` names the input it came from."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}")


def read_prompts(path: Path | str, *, field: str = "prompts", formats: Sequence[str] | None = PROMPT_FORMATS,
                 fmt: str | None = None, name: str | None = None, limit: int | None = None,
                 require: bool = True) -> list[str]:
    """Distinct queries of `path`, in order; PromptFileError(field, why) when it cannot be read, is of a
    format not in `formats`, or (with `require`) holds no query."""
    path = Path(path)
    shown = name or str(path)
    if not path.is_file():
        raise PromptFileError(field, f"file {shown} does not exist")
    queries: dict[str, None] = {}
    try:
        fmt = fmt or detect_format(path, name=name)
        if formats is not None and fmt not in formats:
            raise PromptFileError(field, f"{shown} is {fmt} data; expected a verl parquet file or one query a line")
        for record in iter_records(path, fmt, name=name):
            query = (getattr(record, "query", "") or "").strip()
            if query:
                queries.setdefault(query, None)
            if limit is not None and len(queries) >= limit:
                break
    except FormatError as exc:
        raise PromptFileError(field, str(exc)) from exc
    if require and not queries:
        raise PromptFileError(field, f"{shown} holds no prompts")
    return list(queries)
