"""One parser per format: a raw object (or line) into its record, refusing what cannot be stored
with a FormatError that names the record and the field."""
from __future__ import annotations

import re
from typing import Any

from training.data.records import FormatError, LabeledRecord, PairRecord, QueryRecord, SftRecord


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
