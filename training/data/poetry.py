"""Documents of npm ``chinese-poetry`` (JSON under the tarball's package/dist/): one per poem, ci or
text, its title and author then its lines, editors' notes dropped. Also the archive readers the
idiom extractor shares."""
from __future__ import annotations

import fnmatch
import json
import re
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

from training.data.registry_downloads import Document, RegistryError


# Paths under the tarball's package/dist/ and the source each one feeds. Left out on purpose:
# yudingquantangshi (a second edition of the same Tang poems), quantangshi/error (entries the
# project flags as broken), strains (tone patterns), rank (search-engine counts), authors.
POETRY_SOURCES = (
    ("quantangshi/poet.tang.*.json", "chinese-poetry/tang"),
    ("quantangshi/poet.song.*.json", "chinese-poetry/song"),
    ("songci/ci.song.*.json", "chinese-poetry/songci"),
    ("shijing/*.json", "chinese-poetry/shijing"),
    ("lunyu/*.json", "chinese-poetry/lunyu"),
    ("mengxue/*.json", "chinese-poetry/mengxue"),
    ("sishuwujing/*.json", "chinese-poetry/sishu"),
    ("chuci/*.json", "chinese-poetry/chuci"),
    ("wudaishici/*/*.json", "chinese-poetry/wudai"),
    ("yuanqu/*.json", "chinese-poetry/yuanqu"),
    ("nalanxingde/*.json", "chinese-poetry/nalan"),
    ("caocaoshiji/*.json", "chinese-poetry/caocao"),
    ("shuimotangshi/*.json", "chinese-poetry/shuimo"),
    ("youmengying/*.json", "chinese-poetry/youmengying"),
)
POETRY_ROOT = "package/dist/"
TITLE_KEYS = ("title", "subchapter", "chapter", "rhythmic")
BODY_KEYS = ("paragraphs", "content", "para")
# Editors' notes inside the text: variant readings （一作…）, （题拟）, stage directions (正末唱),
# footnote marks [一]; and ○, a separator the data leaves in titles. None of it is the poem.
_EDITORIAL_NOTE_RE = re.compile(r"（[^（）]*）|\([^()]*\)|\[[^\[\]]*\]|○")


def poetry_source(member_name: str) -> Optional[str]:
    if not member_name.startswith(POETRY_ROOT):
        return None
    inner = member_name[len(POETRY_ROOT):]
    for pattern, source in POETRY_SOURCES:
        if fnmatch.fnmatchcase(inner, pattern) and inner.count("/") == pattern.count("/"):
            return source
    return None


def body_lines(node: dict) -> Optional[list[str]]:
    """The node's own text, when it has some (not a list of nested sections)."""
    for key in BODY_KEYS:
        value = node.get(key)
        if isinstance(value, str) and value.strip():
            return [value]
        if isinstance(value, list) and value and all(isinstance(line, str) for line in value):
            return value
    return None


def clean_lines(lines: Iterable[str]) -> tuple[str, ...]:
    stripped = (_EDITORIAL_NOTE_RE.sub("", line).strip() for line in lines if line)
    return tuple(line for line in stripped if line)


def node_heading(node: dict) -> tuple[str, ...]:
    title = next((node[k].strip() for k in TITLE_KEYS if isinstance(node.get(k), str) and node[k].strip()), "")
    author = node.get("author").strip() if isinstance(node.get("author"), str) else ""
    return clean_lines((title, author))


def poetry_nodes(node: Any, source: str) -> Iterator[Document]:
    """Walk one JSON file: every dict with its own lines is a document; sections are walked into."""
    if isinstance(node, list):
        for item in node:
            yield from poetry_nodes(item, source)
        return
    if not isinstance(node, dict):
        return
    lines = body_lines(node)
    if lines is not None:
        body = clean_lines(lines)
        if body:
            yield Document(source, node_heading(node), body)
        return
    for key in BODY_KEYS:
        if isinstance(node.get(key), (list, dict)):
            yield from poetry_nodes(node[key], source)


def poetry_documents(archive: Path, progress: bool = True) -> Iterator[Document]:
    from tqdm import tqdm

    with open(archive, "rb") as raw, tqdm(
        total=archive.stat().st_size, unit="B", unit_scale=True, desc="chinese-poetry",
        leave=False, disable=not progress,
    ) as bar:
        for name, data in archive_members(archive, raw, suffix=".json"):
            bar.update(raw.tell() - bar.n)
            source = poetry_source(name)
            if source is None:
                continue
            yield from poetry_nodes(parse_json(data, archive, name), source)


def parse_json(data: bytes, archive: Path, name: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RegistryError(f"{archive}: {name} is not UTF-8 JSON ({exc})") from exc


def archive_members(archive: Path, raw, suffix: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the regular files in a .tgz/.tar.gz or a zip (wheel), in archive order."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(raw) as bundle:
                for info in bundle.infolist():
                    if not info.is_dir() and info.filename.endswith(suffix):
                        yield info.filename, bundle.read(info)
            return
        raw.seek(0)
        with tarfile.open(fileobj=raw, mode="r:*") as bundle:
            for member in bundle:
                if member.isfile() and member.name.endswith(suffix):
                    yield member.name, bundle.extractfile(member).read()
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error) as exc:
        raise RegistryError(
            f"{archive} is not a readable archive ({type(exc).__name__}: {exc}); "
            "delete it and its .release.json and run fetch again"
        ) from exc
