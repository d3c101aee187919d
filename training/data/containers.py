"""The containers a format's records come in: a JSON array (streamed), JSON Lines, text lines, a
verl parquet's prompt column; each yields (where, raw object) for the parsers."""
from __future__ import annotations

import codecs
import json
from pathlib import Path
from typing import Any, Iterator

from training.data.parsers import _type_name
from training.data.records import FormatError, _PEEK, _VERL_PREFIX_RE

_CHUNK = 1 << 20  # bytes read at a time


def _decode_head(head: bytes, shown: str) -> str:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        return decoder.decode(head, final=False)  # a character cut at the end is not an error
    except UnicodeDecodeError as exc:
        line = head[: exc.start].count(b"\n") + 1
        raise FormatError(shown, f"line {line}", None, "not UTF-8 text") from None


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
