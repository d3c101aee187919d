"""Importing greeting data files (by path or URL) into the corpus tables.

``import_file`` reads one file with ``training.data.formats`` and writes it in ONE transaction:
a malformed record stops the import and nothing of that file is kept (unless ``skip_bad``, which
skips and reports every malformed record). Rows are keyed by content hashes, so a re-import adds
nothing; writes are bulk. alpaca -> Query + Greeting + Label good; pairwise -> Query + 2
Greetings + PreferencePair (a tie imports its greeting, not the pair, and the summary lists it);
labeled -> Query + Greeting (extra keys -> meta) + Label; queries, verl -> Query.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable
from urllib.parse import unquote, urlparse

import requests
from django.conf import settings
from django.db import transaction
from tqdm import tqdm

from training.data.formats import FORMATS, FormatError, detect_format, iter_records
from training.data.records import LabeledRecord, PairRecord, SftRecord
from webapp.corpus.models import QUERY_MAX_LENGTH, Greeting, Label, PreferencePair, Query, normalise_text

KINDS = ("queries", "greetings", "pairs", "labels")
BATCH_RECORDS = 2000  # records written per round of bulk queries
LOOKUP_CHUNK = 500  # hashes per IN (...) lookup, below every backend's parameter limit
DOWNLOAD_TIMEOUT = (10, 60)  # seconds: connect, between bytes
STARTER_FILES = ("greetings.jsonl", "pairs.json")  # required in settings.STARTER_CORPUS_DIR
STARTER_PARTS = ("greetings_*.jsonl", "pairs_*.jsonl")  # the grown corpus, imported when present

# The field a query comes from in each format, to name it in errors.
_QUERY_FIELD = {"alpaca": "instruction", "pairwise": "conversations", "labeled": "query", "queries": None, "verl": "prompt"}


class CorpusImportError(Exception):
    """An import that cannot start or finish for a reason other than a malformed record."""


@dataclass
class KindCount:
    new: int = 0
    existing: int = 0


@dataclass
class ImportSummary:
    """What one file's import did. Counts are over distinct rows of the file."""

    source: str  # the path or URL as given
    origin: str  # the name stored in Greeting.origin / Label.source_name
    fmt: str = ""
    records: int = 0  # well-formed records read
    counts: dict[str, KindCount] = field(default_factory=lambda: {kind: KindCount() for kind in KINDS})
    skipped: list[FormatError] = field(default_factory=list)  # malformed records (skip_bad)
    ties: list[str] = field(default_factory=list)  # where of pairs whose chosen equals rejected
    conflicts: list[str] = field(default_factory=list)  # labels that disagree with a kept label
    seconds: float = 0.0

    @property
    def new_rows(self) -> int:
        return sum(count.new for count in self.counts.values())

    def __str__(self) -> str:
        parts = ", ".join(f"{kind} {c.new:,} new / {c.existing:,} existing" for kind, c in self.counts.items())
        return f"{self.source} ({self.fmt}): {self.records:,} records, {len(self.skipped):,} skipped; {parts}"

    def table(self) -> str:
        """A plain-text table: one row per kind with new / existing, and the skipped records."""
        lines = [
            f"{self.source} ({self.fmt}): {self.records:,} records read, {len(self.skipped):,} skipped, "
            f"{self.seconds:.2f} s",
            f"  {'kind':<10} {'new':>8} {'existing':>9} {'skipped':>8}",
        ]
        for kind in KINDS:
            count = self.counts[kind]
            lines.append(f"  {kind:<10} {count.new:>8,} {count.existing:>9,} {'':>8}")
        lines.append(f"  {'records':<10} {'':>8} {'':>9} {len(self.skipped):>8,}")
        return "\n".join(lines)

    def notes(self) -> list[str]:
        """One line per skipped record, tie and label conflict."""
        out = [f"skipped: {error}" for error in self.skipped]
        if self.ties:
            out.append(f"{len(self.ties)} ties (chosen equals rejected: greeting kept, no pair): "
                       + ", ".join(self.ties))
        out += [f"label conflict: {self.source}: {message}" for message in self.conflicts]
        return out


# --------------------------------------------------------------------------------------------
# Entry points


def import_file(
    path_or_url: str | Path,
    fmt: str = "auto",
    skip_bad: bool = False,
    progress: bool = True,
    *,
    label_source: str = Label.SourceKind.CORPUS,
    origin: str | None = None,
) -> ImportSummary:
    """Import one file (a path or an http(s) URL) into the corpus; see the module docstring.

    Raises ``FormatError`` for a malformed record (nothing of the file is saved) and
    ``CorpusImportError`` for a bad argument or a failed download.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise CorpusImportError(f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    if label_source not in Label.SourceKind.values:
        raise CorpusImportError(
            f"unknown label source {label_source!r}; expected one of {', '.join(Label.SourceKind.values)}"
        )
    source = str(path_or_url)
    scheme = urlparse(source).scheme.lower()
    if scheme in ("http", "https"):
        with tempfile.TemporaryDirectory(prefix="zhufu-import-") as folder:
            local = download(source, Path(folder), progress=progress)
            return _import_local(local, source, fmt, skip_bad, progress, label_source, origin or url_file_name(source))
    if "://" in source:
        raise CorpusImportError(f"{source}: only http:// and https:// URLs can be imported")
    path = Path(source)
    if not path.is_file():
        raise CorpusImportError(f"{source}: no such file")
    return _import_local(path, source, fmt, skip_bad, progress, label_source, origin or path.name)


def import_starter_corpus(progress: bool = False) -> list[ImportSummary]:
    """Import the team's starter corpus (training/data/starter/): greetings, then pairs, then the
    grown parts (greetings_<part>.jsonl, pairs_<part>.jsonl), one summary per file."""
    folder = Path(settings.STARTER_CORPUS_DIR)
    missing = [name for name in STARTER_FILES if not (folder / name).is_file()]
    if missing:
        raise CorpusImportError(f"the starter corpus is incomplete: {', '.join(missing)} missing in {folder}")
    names = list(STARTER_FILES) + sorted(p.name for pattern in STARTER_PARTS for p in folder.glob(pattern))
    return [import_file(folder / name, progress=progress, origin=f"starter/{name}") for name in names]


def url_file_name(url: str) -> str:
    """The last segment of a URL's path ('sft_data.json'), or the URL itself when there is none."""
    name = PurePosixPath(unquote(urlparse(url).path)).name
    return name or url


def download(url: str, folder: Path, progress: bool = True, timeout=DOWNLOAD_TIMEOUT) -> Path:
    """Stream ``url`` into a file in ``folder`` (named like the URL's file) and return its path."""
    name = url_file_name(url)
    target = folder / (name if name != url else "download")
    try:
        with requests.get(url, stream=True, timeout=timeout) as response:
            if response.status_code >= 400:
                raise CorpusImportError(f"{url}: download failed: HTTP {response.status_code} {response.reason}")
            total = int(response.headers.get("Content-Length") or 0) or None
            received = 0
            with open(target, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, desc=f"download {name}", disable=None if progress else True, leave=False
            ) as bar:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        raise CorpusImportError(f"{url}: download failed: {exc}") from exc
    if total is not None and received != total and not response.headers.get("Content-Encoding"):
        raise CorpusImportError(f"{url}: download failed: got {received:,} of {total:,} bytes")
    return target


# --------------------------------------------------------------------------------------------
# The import proper


@dataclass
class _State:
    """Hashes already counted in this import, so each distinct row counts once."""

    seen: dict[str, set] = field(default_factory=lambda: {kind: set() for kind in KINDS})
    labels: dict[int, tuple[str, str]] = field(default_factory=dict)  # greeting id -> (value, where)


def _import_local(path: Path, source: str, fmt: str, skip_bad: bool, progress: bool, label_source: str,
                  origin: str) -> ImportSummary:
    started = time.perf_counter()
    summary = ImportSummary(source=source, origin=origin)
    on_error = summary.skipped.append if skip_bad else None
    if fmt == "auto":
        fmt = detect_format(path, name=source)
    summary.fmt = fmt
    state = _State()
    records = iter_records(path, fmt, on_error=on_error, name=source)
    with transaction.atomic():
        with tqdm(desc=f"import {origin}", unit=" records", disable=None if progress else True, leave=False) as bar:
            batch: list = []
            for record in records:
                record = _checked(record, fmt, source)
                if isinstance(record, FormatError):
                    if on_error is None:
                        raise record
                    on_error(record)
                    continue
                batch.append(record)
                if len(batch) >= BATCH_RECORDS:
                    _write_batch(batch, fmt, summary, state, label_source)
                    bar.update(len(batch))
                    batch = []
            if batch:
                _write_batch(batch, fmt, summary, state, label_source)
                bar.update(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary


def _checked(record, fmt: str, source: str):
    """The record with normalised texts, or a FormatError for what the tables cannot hold."""
    query = normalise_text(record.query)
    if not query:
        return FormatError(source, record.where, _QUERY_FIELD[fmt], "empty")
    if len(query) > QUERY_MAX_LENGTH:
        return FormatError(
            source, record.where, _QUERY_FIELD[fmt], f"longer than {QUERY_MAX_LENGTH} characters ({len(query)})"
        )
    changes = {"query": query}
    for name in ("response", "chosen", "rejected"):
        if hasattr(record, name):
            changes[name] = normalise_text(getattr(record, name))
    return dataclasses.replace(record, **changes)


def _write_batch(batch: list, fmt: str, summary: ImportSummary, state: _State, label_source: str) -> None:
    summary.records += len(batch)
    origin = summary.origin

    query_rows = {}
    for record in batch:
        query_hash = Query.hash_for(record.query)
        query_rows.setdefault(query_hash, Query(text=record.query, content_hash=query_hash))
    query_ids = _upsert(Query, query_rows, summary.counts["queries"], state.seen["queries"])
    if fmt in ("queries", "verl"):
        return

    # Greetings (one per response; two per pair).
    greeting_rows = {}
    greeting_of = []  # per record: hash or (chosen hash, rejected hash)
    for record in batch:
        query_hash = Query.hash_for(record.query)
        texts = (record.chosen, record.rejected) if isinstance(record, PairRecord) else (record.response,)
        meta = record.extra if isinstance(record, LabeledRecord) else {}
        hashes = []
        for text in texts:
            greeting_hash = Greeting.hash_for(query_hash, text)
            greeting_rows.setdefault(
                greeting_hash,
                Greeting(query_id=query_ids[query_hash], text=text, source=Greeting.Source.CORPUS,
                         origin=origin[:300], meta=meta, content_hash=greeting_hash),
            )
            hashes.append(greeting_hash)
        greeting_of.append(hashes)
    greeting_ids = _upsert(Greeting, greeting_rows, summary.counts["greetings"], state.seen["greetings"])

    if fmt == "pairwise":
        pair_rows = {}
        for record, (chosen_hash, rejected_hash) in zip(batch, greeting_of):
            if chosen_hash == rejected_hash:
                summary.ties.append(record.where)
                continue
            query_hash = Query.hash_for(record.query)
            pair_hash = PreferencePair.hash_for(query_hash, record.chosen, record.rejected)
            pair_rows.setdefault(
                pair_hash,
                PreferencePair(query_id=query_ids[query_hash], chosen_id=greeting_ids[chosen_hash],
                               rejected_id=greeting_ids[rejected_hash], source=PreferencePair.Source.CORPUS,
                               origin=origin[:300], content_hash=pair_hash),
            )
        _upsert(PreferencePair, pair_rows, summary.counts["pairs"], state.seen["pairs"])
        return

    # Labels: alpaca outputs are good answers by the corpus; labeled files carry their own.
    kind = Label.SourceKind.CORPUS if fmt == "alpaca" else label_source
    wanted: dict[int, tuple[str, str]] = {}
    for record, (greeting_hash,) in zip(batch, greeting_of):
        value = Label.Value.GOOD if isinstance(record, SftRecord) else Label.value_for(record.label)
        greeting_id = greeting_ids[greeting_hash]
        earlier = state.labels.get(greeting_id) or wanted.get(greeting_id)
        if earlier is not None:
            if earlier[0] != value:
                summary.conflicts.append(
                    f"{record.where}: label {value} disagrees with {earlier[0]} at {earlier[1]}; kept {earlier[0]}"
                )
            continue
        wanted[greeting_id] = (value, record.where)
    _write_labels(wanted, kind, origin[:300], summary, state)


def _write_labels(wanted: dict[int, tuple[str, str]], kind: str, name: str, summary: ImportSummary,
                  state: _State) -> None:
    present: dict[int, str] = {}
    for chunk in _chunks(list(wanted), LOOKUP_CHUNK):
        present.update(
            Label.objects.filter(greeting_id__in=chunk, source_kind=kind, source_name=name).values_list(
                "greeting_id", "value"
            )
        )
    count = summary.counts["labels"]
    new = []
    for greeting_id, (value, where) in wanted.items():
        state.labels[greeting_id] = (value, where)
        if greeting_id in present:
            count.existing += 1
            if present[greeting_id] != value:
                summary.conflicts.append(
                    f"{where}: label {value} disagrees with the stored {present[greeting_id]} "
                    f"by {kind}:{name}; kept {present[greeting_id]}"
                )
        else:
            count.new += 1
            new.append(Label(greeting_id=greeting_id, value=value, source_kind=kind, source_name=name))
    Label.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)


def _upsert(model, rows: dict[str, object], count: KindCount, seen: set) -> dict[str, int]:
    """Insert the rows (keyed by content hash) not yet stored; return every hash's id."""
    hashes = list(rows)
    ids = _ids_by_hash(model, hashes)
    for content_hash in hashes:
        if content_hash in seen:
            continue  # counted when this import first met it
        seen.add(content_hash)
        if content_hash in ids:
            count.existing += 1
        else:
            count.new += 1
    missing = [content_hash for content_hash in hashes if content_hash not in ids]
    if missing:
        model.objects.bulk_create([rows[h] for h in missing], batch_size=1000, ignore_conflicts=True)
        ids.update(_ids_by_hash(model, missing))
        lost = [h for h in missing if h not in ids]
        if lost:  # a unique field other than the hash clashed: a bug, not bad input
            raise CorpusImportError(f"{len(lost)} {model._meta.verbose_name_plural} could not be stored")
    return ids


def _ids_by_hash(model, hashes: list[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in _chunks(hashes, LOOKUP_CHUNK):
        ids.update(model.objects.filter(content_hash__in=chunk).values_list("content_hash", "id"))
    return ids


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
