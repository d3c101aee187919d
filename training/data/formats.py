"""Readers for the greeting data formats the project imports and trains on.

Pure Python (pyarrow only for parquet); no Django. Every reader streams its records and names
the exact place of a malformed one:

    >>> for record in iter_records("sft_data.json"):   # format detected from the content
    ...     record.query, record.response, record.where

Formats (``FORMATS``):

* ``alpaca``   JSON array (or JSON Lines) of ``{instruction, input, output}``  -> ``SftRecord``
* ``pairwise`` LlamaFactory ``{conversations:[{from:"human",value}], chosen, rejected}`` -> ``PairRecord``
* ``verl``     parquet with a ``prompt`` column of chat messages                -> ``QueryRecord``
* ``labeled``  JSON Lines (or JSON array) of ``{query, response, label}``       -> ``LabeledRecord``
* ``queries``  plain text, one query a line                                     -> ``QueryRecord``
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from training.data.containers import (_decode_head, _iter_json_array, _iter_objects, _iter_parquet_prompts,
                                      _iter_query_lines)
from training.data.parsers import _PARSERS, _type_name
from training.data.records import FormatError, FORMATS, OnError, PathLike, _PEEK, Record, _TEXT_SUFFIXES


def detect_format(path: PathLike, *, name: str | None = None) -> str:
    """The format of ``path``: by extension (parquet) and by peeking at the content.

    ``name`` is what error messages call the file (defaults to ``path``); a URL import passes
    the URL here. Raises ``FormatError`` when the format cannot be told.
    """
    path = Path(path)
    shown = name or str(path)
    suffix = path.suffix.lower()
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK)
    except OSError as exc:
        raise FormatError(shown, None, None, f"cannot read the file: {exc.strerror or exc}") from exc

    if head.startswith(b"PAR1") or suffix == ".parquet":
        return "verl"
    if not head.strip():
        raise FormatError(shown, None, None, "the file is empty; cannot tell its format")
    text = _decode_head(head, shown)
    if suffix in _TEXT_SUFFIXES:
        return "queries"  # a .txt file is a query list even when a line starts like JSON
    stripped = text.lstrip("\ufeff \t\r\n")

    if stripped.startswith("["):
        first = next(_iter_json_array(path, shown), None)
        if first is None:
            raise FormatError(shown, None, None, "the JSON array is empty; cannot tell its format")
        return _format_of_object(first[1], shown, first[0])
    if stripped.startswith("{"):
        first_line = stripped.split("\n", 1)[0].strip()
        try:
            obj = json.loads(first_line)
        except json.JSONDecodeError:
            raise FormatError(
                shown, "line 1", None,
                "starts like JSON but its first line is not one complete JSON object "
                "(expected JSON Lines: one object a line); cannot tell its format",
            ) from None
        return _format_of_object(obj, shown, "line 1")
    if suffix in {".json", ".jsonl", ".ndjson", ".parquet"}:
        raise FormatError(
            shown, None, None,
            f"a {suffix} file that is neither a JSON array nor JSON Lines; cannot tell its format",
        )
    return "queries"


def _format_of_object(obj: Any, shown: str, where: str) -> str:
    if not isinstance(obj, dict):
        raise FormatError(shown, where, None, f"expected a JSON object, got {_type_name(obj)}; cannot tell its format")
    keys = set(obj)
    # Lenient on purpose: a first record missing one field is detected, then reported precisely.
    if len(keys & {"conversations", "chosen", "rejected"}) >= 2:
        return "pairwise"
    if "instruction" in keys:
        return "alpaca"
    if len(keys & {"query", "response", "label"}) >= 2:
        return "labeled"
    shown_keys = ", ".join(sorted(map(str, keys))) or "none"
    raise FormatError(
        shown, where, None,
        f"cannot tell the format from its keys ({shown_keys}); expected instruction/output (alpaca), "
        "conversations/chosen/rejected or query/chosen/rejected (pairwise) or query/response/label (labeled)",
    )


def iter_records(
    path: PathLike,
    fmt: str = "auto",
    *,
    on_error: OnError | None = None,
    name: str | None = None,
) -> Iterator[Record]:
    """Stream the records of ``path`` in format ``fmt`` (``"auto"`` detects it).

    A malformed record raises ``FormatError`` unless ``on_error`` is given: then the error is
    passed to ``on_error`` and the record skipped. Errors that make the rest of the file
    unreadable (invalid JSON inside an array, non-UTF-8 bytes, a broken parquet file) always
    raise. ``name`` is what error messages call the file (defaults to ``path``).
    """
    shown = name or str(path)
    if fmt == "auto":
        fmt = detect_format(path, name=name)
    if fmt not in FORMATS:
        raise FormatError(shown, None, None, f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if fmt == "verl":
        source = _iter_parquet_prompts(Path(path), shown)
    elif fmt == "queries":
        source = _iter_query_lines(Path(path), shown)
    else:
        source = _iter_objects(Path(path), shown)
    parse = _PARSERS[fmt]
    for where, raw in source:
        try:
            if isinstance(raw, FormatError):
                raise raw
            yield parse(raw, where, shown)
        except FormatError as exc:
            if on_error is None:
                raise
            on_error(exc)
