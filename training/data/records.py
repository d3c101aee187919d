"""The record types the greeting data formats yield (SftRecord, PairRecord, LabeledRecord,
QueryRecord), FORMATS, and FormatError, which names the exact place of a malformed record."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union


FORMATS = ("alpaca", "pairwise", "verl", "labeled", "queries")

# The instruction verl prompts in the paper's data start with; the query follows it.
VERL_PROMPT_PREFIX = "请只生成一条祝福语："
_VERL_PREFIX_RE = re.compile(r"^\s*请只生成一条祝福语\s*[：:]\s*")

_PEEK = 1 << 16  # bytes looked at to detect a format
_TEXT_SUFFIXES = {".txt", ".text", ".lst", ".list"}

PathLike = Union[str, Path]


@dataclass(frozen=True)
class SftRecord:
    query: str
    response: str
    where: str


@dataclass(frozen=True)
class PairRecord:
    """A preference. ``chosen`` may equal ``rejected`` (12 of the paper's 6,310 pairs do): a tie
    that carries no preference; consumers decide what to do with it (the importer skips it)."""

    query: str
    chosen: str
    rejected: str
    where: str


@dataclass(frozen=True)
class LabeledRecord:
    query: str
    response: str
    label: int  # 1 good, 0 bad
    where: str
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class QueryRecord:
    query: str
    where: str


Record = Union[SftRecord, PairRecord, LabeledRecord, QueryRecord]

RECORD_TYPES = {
    "alpaca": SftRecord,
    "pairwise": PairRecord,
    "verl": QueryRecord,
    "labeled": LabeledRecord,
    "queries": QueryRecord,
}


class FormatError(ValueError):
    """A file or one of its records is not what its format says.

    ``str()`` reads like ``sft.json: index 37, field "output": missing`` (the path as given, or
    the ``name`` passed to the reader, e.g. a URL). ``where`` and ``field`` are ``None`` for
    problems with the whole file.
    """

    def __init__(self, path: PathLike, where: str | None, field: str | None, message: str):
        self.path = str(path)
        self.where = where
        self.field = field
        self.message = message
        super().__init__(str(self))

    @property
    def name(self) -> str:
        """The file's name as shown in messages (the last part of a path or URL)."""
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
        return name or self.path

    def __str__(self) -> str:
        location = ", ".join(
            part for part in (self.where, f'field "{self.field}"' if self.field else None) if part
        )
        return f"{self.path}: {location}: {self.message}" if location else f"{self.path}: {self.message}"

    def __reduce__(self):
        return (type(self), (self.path, self.where, self.field, self.message))


OnError = Callable[[FormatError], Any]
