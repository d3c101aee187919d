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

import codecs
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Union

FORMATS = ("alpaca", "pairwise", "verl", "labeled", "queries")

# The instruction verl prompts in the paper's data start with; the query follows it.
VERL_PROMPT_PREFIX = "请只生成一条祝福语："
_VERL_PREFIX_RE = re.compile(r"^\s*请只生成一条祝福语\s*[：:]\s*")

_CHUNK = 1 << 20  # bytes read at a time
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


# --------------------------------------------------------------------------------------------
# Detection


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


def _decode_head(head: bytes, shown: str) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        return decoder.decode(head, final=False)  # a character cut at the end is not an error
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise FormatError(shown, f"line {line}", None, "not UTF-8 text") from None


# --------------------------------------------------------------------------------------------
# Records


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


def _parse_alpaca(obj: Any, where: str, shown: str) -> SftRecord:
    obj = _require_object(obj, where, shown)
    instruction = _required_text(obj, "instruction", where, shown)
    extra_input = obj.get("input")
    if extra_input is None:
        extra_input = ""
    if not isinstance(extra_input, str):
        raise FormatError(shown, where, "input", f"must be a string, got {_type_name(extra_input)}")
    extra_input = extra_input.strip()
    query = f"{instruction}\n{extra_input}" if extra_input else instruction
    return SftRecord(query=query, response=_required_text(obj, "output", where, shown), where=where)


def _parse_pairwise(obj: Any, where: str, shown: str) -> PairRecord:
    obj = _require_object(obj, where, shown)
    if "conversations" not in obj and "query" in obj:  # the flat form: {query, chosen, rejected}
        query = _required_text(obj, "query", where, shown)
        return PairRecord(query=query, chosen=_answer_text(obj, "chosen", where, shown),
                          rejected=_answer_text(obj, "rejected", where, shown), where=where)
    if "conversations" not in obj:
        raise FormatError(shown, where, "conversations", "missing")
    conversations = obj["conversations"]
    if not isinstance(conversations, list) or not conversations:
        raise FormatError(shown, where, "conversations", "must be a non-empty list of messages")
    query = None
    for index in range(len(conversations) - 1, -1, -1):
        message = conversations[index]
        if not isinstance(message, dict):
            raise FormatError(shown, where, f"conversations[{index}]", f"must be an object, got {_type_name(message)}")
        if message.get("from", message.get("role")) in ("human", "user"):
            query = _required_text(message, "value" if "value" in message else "content", where, shown,
                                   label=f"conversations[{index}].value")
            break
    if query is None:
        raise FormatError(shown, where, "conversations", 'no message from "human"')
    chosen = _answer_text(obj, "chosen", where, shown)
    rejected = _answer_text(obj, "rejected", where, shown)
    return PairRecord(query=query, chosen=chosen, rejected=rejected, where=where)


def _answer_text(obj: dict, key: str, where: str, shown: str) -> str:
    if key not in obj or obj[key] is None:
        raise FormatError(shown, where, key, "missing")
    value = obj[key]
    if isinstance(value, str):  # tolerate a bare string
        return _required_text(obj, key, where, shown)
    if not isinstance(value, dict):
        raise FormatError(shown, where, key, f'must be an object {{from, value}}, got {_type_name(value)}')
    return _required_text(value, "value", where, shown, label=f"{key}.value")


def _parse_labeled(obj: Any, where: str, shown: str) -> LabeledRecord:
    obj = _require_object(obj, where, shown)
    query = _required_text(obj, "query", where, shown)
    response = _required_text(obj, "response", where, shown)
    if "label" not in obj or obj["label"] is None:
        raise FormatError(shown, where, "label", "missing")
    label = _parse_label(obj["label"])
    if label is None:
        raise FormatError(shown, where, "label", f"must be 0 or 1 (or true/false), got {obj['label']!r}")
    extra = {key: value for key, value in obj.items() if key not in ("query", "response", "label")}
    for key, value in extra.items():
        _storable_json(value, where, shown, _storable(key, where, shown, key))
    return LabeledRecord(query=query, response=response, label=label, where=where, extra=extra)


_LABEL_WORDS = {"0": 0, "1": 1, "false": 0, "true": 1, "bad": 0, "good": 1}


def _parse_label(value: Any) -> int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value in (0, 1):
        return value
    if isinstance(value, float) and value in (0.0, 1.0):
        return int(value)
    if isinstance(value, str):
        return _LABEL_WORDS.get(value.strip().lower())
    return None


def _parse_query_line(text: str, where: str, shown: str) -> QueryRecord:
    return QueryRecord(query=_storable(text, where, shown, None), where=where)


def _parse_verl(query: str, where: str, shown: str) -> QueryRecord:
    return QueryRecord(query=_storable(query, where, shown, "prompt"), where=where)


_PARSERS = {
    "alpaca": _parse_alpaca,
    "pairwise": _parse_pairwise,
    "labeled": _parse_labeled,
    "queries": _parse_query_line,
    "verl": _parse_verl,
}


def _require_object(obj: Any, where: str, shown: str) -> dict:
    if not isinstance(obj, dict):
        raise FormatError(shown, where, None, f"expected a JSON object, got {_type_name(obj)}")
    return obj


def _required_text(obj: dict, key: str, where: str, shown: str, label: str | None = None) -> str:
    label = label or key
    if key not in obj or obj[key] is None:
        raise FormatError(shown, where, label, "missing")
    value = obj[key]
    if not isinstance(value, str):
        raise FormatError(shown, where, label, f"must be a string, got {_type_name(value)}")
    value = value.strip()
    if not value:
        raise FormatError(shown, where, label, "empty")
    return _storable(value, where, shown, label)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(text: str, where: str, shown: str, label: str | None) -> str:
    """Refuse what no text column can hold: NUL (PostgreSQL refuses it) and lone surrogates
    (JSON escapes like \\ud800 that are not Unicode: they cannot be encoded as UTF-8)."""
    bad = _UNSTORABLE.search(text)
    if bad:
        what = "a NUL character" if bad.group(0) == "\x00" else f"a lone surrogate {bad.group(0)!a} (invalid Unicode)"
        raise FormatError(shown, where, label, f"contains {what} at character {bad.start() + 1}")
    return text


def _storable_json(value: Any, where: str, shown: str, label: str) -> None:
    """_storable for every key and string inside a JSON value (kept as JSON metadata)."""
    if isinstance(value, str):
        _storable(value, where, shown, label)
    elif isinstance(value, list):
        for item in value:
            _storable_json(item, where, shown, label)
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, where, shown, label)
            _storable_json(item, where, shown, label)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Containers: JSON array, JSON Lines, text lines, parquet


def _iter_objects(path: Path, shown: str) -> Iterator[tuple[str, Any]]:
    """(where, value) for each element of a JSON array or each line of a JSON Lines file."""
    first = _first_text_char(path, shown)
    if first == "[":
        yield from _iter_json_array(path, shown)
    elif first == "{":
        yield from _iter_json_lines(path, shown)
    elif first is None:
        return
    else:
        raise FormatError(shown, "line 1", None, "expected a JSON array or JSON Lines (one object a line)")


def _first_text_char(path: Path, shown: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            head = handle.read(_PEEK)
    except OSError as exc:
        raise FormatError(shown, None, None, f"cannot read the file: {exc.strerror or exc}") from exc
    text = _decode_head(head, shown).lstrip("\ufeff \t\r\n")
    return text[0] if text else None


def _iter_lines(path: Path, shown: str) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line, decoded strictly as UTF-8."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise FormatError(shown, None, None, f"cannot read the file: {exc.strerror or exc}") from exc
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise FormatError(shown, f"line {number}", None, "not UTF-8 text") from None
            if number == 1:
                text = text.lstrip("\ufeff")
            yield number, text


def _iter_json_lines(path: Path, shown: str) -> Iterator[tuple[str, Any]]:
    for number, text in _iter_lines(path, shown):
        if not text.strip():
            continue
        where = f"line {number}"
        try:
            yield where, json.loads(text)
        except json.JSONDecodeError as exc:
            # One bad line does not spoil the others: a record-level error.
            yield where, FormatError(shown, where, None, f"invalid JSON: {exc.msg} (column {exc.colno})")


def _iter_query_lines(path: Path, shown: str) -> Iterator[tuple[str, str]]:
    for number, text in _iter_lines(path, shown):
        text = text.strip()
        if text:
            yield f"line {number}", text


def _iter_json_array(path: Path, shown: str) -> Iterator[tuple[str, Any]]:
    """(where, element) for each element of a top-level JSON array, read incrementally."""
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise FormatError(shown, None, None, f"cannot read the file: {exc.strerror or exc}") from exc

    with handle:
        buf = ""
        pos = 0
        line_base = 1  # line number of buf[0]
        eof = False

        def fill() -> bool:
            nonlocal buf, eof
            if eof:
                return False
            chunk = handle.read(_CHUNK)
            try:
                text = utf8.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                line = line_base + buf.count("\n") + chunk[: exc.start].count(b"\n")
                raise FormatError(shown, f"line {line}", None, "not UTF-8 text") from None
            if not chunk:
                eof = True
            buf += text
            return bool(chunk)

        def line_at(offset: int) -> int:
            return line_base + buf.count("\n", 0, offset)

        def skip_ws() -> str | None:
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                    pos += 1
                if pos < len(buf):
                    return buf[pos]
                if not fill():
                    return None

        def fail(message: str) -> FormatError:
            return FormatError(shown, f"line {line_at(pos)}", None, message)

        fill()
        if skip_ws() != "[":
            raise FormatError(shown, None, None, "expected a JSON array at the top level")
        pos += 1
        index = 0
        if skip_ws() == "]":
            pos += 1
        else:
            while True:
                if skip_ws() is None:
                    raise fail("invalid JSON: the array is not closed (file truncated?)")
                while True:
                    try:
                        value, end = decoder.raw_decode(buf, pos)
                    except json.JSONDecodeError as exc:
                        if fill():
                            continue
                        raise FormatError(
                            shown, f"line {line_at(exc.pos)}", None,
                            f"invalid JSON in element {index}: {exc.msg} (column {exc.colno})",
                        ) from None
                    if end == len(buf) and fill():  # a number or literal may go on in the next chunk
                        continue
                    break
                pos = end
                yield f"index {index}", value
                index += 1
                separator = skip_ws()
                if separator == ",":
                    pos += 1
                elif separator == "]":
                    pos += 1
                    break
                elif separator is None:
                    raise fail("invalid JSON: the array is not closed (file truncated?)")
                else:
                    raise fail(f"invalid JSON: expected ',' or ']' after element {index - 1}, got {separator!r}")
                if pos > _CHUNK:  # drop what was read, keep line numbers right
                    line_base += buf.count("\n", 0, pos)
                    buf = buf[pos:]
                    pos = 0
        if skip_ws() is not None:
            raise fail("invalid JSON: extra content after the top-level array")


def _iter_parquet_prompts(path: Path, shown: str) -> Iterator[tuple[str, Any]]:
    """(where, query) for each row of a verl parquet file; bad rows come as FormatError values."""
    try:
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise FormatError(shown, None, None, "reading parquet needs pyarrow") from exc
    except Exception as exc:  # pyarrow raises several types for broken files
        raise FormatError(shown, None, None, f"unreadable parquet file: {exc}") from None
    if "prompt" not in parquet.schema_arrow.names:
        columns = ", ".join(parquet.schema_arrow.names) or "none"
        raise FormatError(shown, None, "prompt", f"missing column (columns: {columns})")
    row = 0
    try:
        batches = parquet.iter_batches(columns=["prompt"], batch_size=4096)
        for batch in batches:
            for prompt in batch.column(0).to_pylist():
                where = f"row {row}"
                row += 1
                try:
                    yield where, _verl_query(prompt, where, shown)
                except FormatError as exc:
                    yield where, exc
    except FormatError:
        raise
    except Exception as exc:
        raise FormatError(shown, f"row {row}", None, f"unreadable parquet data: {exc}") from None


def _verl_query(prompt: Any, where: str, shown: str) -> str:
    if prompt is None:
        raise FormatError(shown, where, "prompt", "missing")
    if isinstance(prompt, str):
        content = prompt
    elif isinstance(prompt, (list, tuple)):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if not users:
            raise FormatError(shown, where, "prompt", "no message with role \"user\"")
        content = users[-1].get("content")
        if not isinstance(content, str):
            raise FormatError(shown, where, "prompt.content", "missing" if content is None else
                              f"must be a string, got {_type_name(content)}")
    else:
        raise FormatError(shown, where, "prompt", f"must be a list of messages, got {_type_name(prompt)}")
    query = strip_verl_prefix(content)
    if not query:
        raise FormatError(shown, where, "prompt.content", "empty query")
    return query


def strip_verl_prefix(content: str) -> str:
    """The query inside a verl prompt: without the "请只生成一条祝福语：" instruction (either colon)."""
    return _VERL_PREFIX_RE.sub("", content, count=1).strip()
