"""Data at rest: API keys only as hashes, weights only from safetensors (a pickle is never opened),
and no secret committed to the repository."""
import pickle
import re
import shutil
import subprocess

import pytest
from django.db import connection
from django.test import Client

from tests.conftest import GREETINGS, REPO


# --- API keys: the database holds the sha256 and a 10-character prefix, never the secret.

@pytest.mark.django_db
def test_no_table_holds_an_api_key_in_plaintext():
    from django.contrib.auth import get_user_model

    from webapp.api.models import ApiKey
    from webapp.api.keys import create_api_key, hash_key

    user = get_user_model().objects.create_user("keyholder")
    _, secret = create_api_key(user, name="laptop")
    assert Client().get("/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    stored = ApiKey.objects.get()
    assert stored.hashed_key == hash_key(secret) and len(stored.prefix) <= 10

    tail = secret[10:]  # whatever the prefix leaves: must appear nowhere
    tables = connection.introspection.table_names()
    found = []
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            if any(tail in str(value) for row in cursor.fetchall() for value in row):
                found.append(table)
    assert len(tables) > 10 and not found, f"the API key's secret is stored in {found}"


# --- Weights: safetensors only. A pickle that would create a file when unpickled is put where
# weights go; loading must refuse it and the file must never appear.

class _Trap:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))  # runs on unpickling: the proof that a loader opened the pickle


def plant_pickle(path, marker):
    path.write_bytes(pickle.dumps({"weight": _Trap(marker)}))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from generation.checkpoint import save_checkpoint
    from generation.presets import get_preset
    from generation.tokenizer import build_tokenizer
    from training.steps import build_model

    tokenizer = build_tokenizer([text for pair in GREETINGS for text in pair])
    model = build_model(get_preset("tiny"), tokenizer, seed=0)
    return save_checkpoint(model, tokenizer, tmp_path_factory.mktemp("ckpt") / "tiny", {"preset": "tiny"})


@pytest.fixture
def copy_of(tiny_checkpoint, tmp_path):
    def copy(name="copy"):
        return shutil.copytree(tiny_checkpoint, tmp_path / name)
    return copy


def test_the_trap_works(tmp_path):
    """The control: unpickling the planted file does create the marker."""
    marker = tmp_path / "opened"
    plant_pickle(tmp_path / "trap.pkl", marker)
    pickle.loads((tmp_path / "trap.pkl").read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("planted_as", ["pytorch_model.bin", "model.safetensors"])
def test_load_checkpoint_refuses_pickle_weights(copy_of, tmp_path, planted_as):
    from generation.checkpoint import CheckpointError, load_checkpoint

    folder = copy_of()
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "opened"
    plant_pickle(folder / planted_as, marker)
    with pytest.raises(CheckpointError, match="only safetensors|corrupt safetensors"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_a_pickle_beside_safetensors_is_never_read(copy_of, tmp_path):
    from generation.checkpoint import load_checkpoint

    folder = copy_of()
    marker = tmp_path / "opened"
    plant_pickle(folder / "pytorch_model.bin", marker)
    model, _ = load_checkpoint(folder, fast_moe=False)
    assert model is not None and not marker.exists()


def test_judge_loaders_refuse_pickles(copy_of, tmp_path):
    import json

    from training.judges.registry import JudgeLoadError, load_judge
    from training.judges.reward_model import HEAD_FILE, META_FILE
    from training.judges.tfidf import train_tfidf_judge

    marker = tmp_path / "opened"
    # TF-IDF judge: its weights file replaced by a pickle
    tfidf = tmp_path / "tfidf"
    train_tfidf_judge([g for _, g in GREETINGS], ["好。", "快乐。", "祝福。", "嗯。", "好的。", "恭喜。"]).save(tfidf)
    plant_pickle(tfidf / "weights.safetensors", marker)
    with pytest.raises(JudgeLoadError, match="unreadable judge files"):
        load_judge("tfidf", tfidf)
    # reward model: a pickle as its head, then a pickle-only backbone
    reward = copy_of("reward")
    (reward / META_FILE).write_text(json.dumps({"kind": "reward_model", "format_version": 1, "name": "rm",
                                                "threshold": 0.0, "scale": 1.0, "seq_len": 64}))
    plant_pickle(reward / HEAD_FILE, marker)
    with pytest.raises(JudgeLoadError, match="corrupt safetensors"):
        load_judge("reward_model", reward)
    (reward / "model.safetensors").unlink()
    plant_pickle(reward / "pytorch_model.bin", marker)
    with pytest.raises(JudgeLoadError, match="only safetensors"):
        load_judge("reward_model", reward)
    assert not marker.exists()


# --- No secret in the repository: every tracked file is scanned.

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |PGP |ENCRYPTED )?PRIVATE KEY"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}"),
    "OpenAI-style key": re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Zhufu API key": re.compile(r"\bzf-[A-Za-z0-9_-]{40,}"),
    "SECRET_KEY literal": re.compile(r"SECRET_KEY\s*[:=]\s*[\"'][^\"'\s]{16,}[\"']"),
    "password literal": re.compile(r"(?i)\b\w*(?:password|passwd|api_key)\s*[:=]\s*[\"'][^\"'\s{}$]{6,}[\"']"),
    "password in a URL": re.compile(r"\b[a-z+]+://[^/\s:@\"']+:([^/\s@\"'$]+)@"),
}
# Placeholders that documentation and settings tests use in URLs (not real credentials).
URL_PASSWORD_PLACEHOLDERS = {"pass", "p", "password", "PASSWORD", "pw", "secret", "***"}
# Tests and benchmarks sign in throwaway accounts on private test stacks: their files may hold password literals.
FIXTURE_PATTERNS = {"password literal", "SECRET_KEY literal"}
FIXTURE_FOLDERS = ("tests/", "bench/")
SECRET_FILE_NAMES = re.compile(r"(^|/)(\.env|id_rsa|id_ed25519|.*\.pem|.*\.key|.*\.p12|secret_key)$")


def tracked_files() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def secrets_in(path: str, text: str) -> list[str]:
    hits = []
    for kind, pattern in SECRET_PATTERNS.items():
        if kind in FIXTURE_PATTERNS and path.startswith(FIXTURE_FOLDERS):
            continue
        for match in pattern.finditer(text):
            if kind == "password in a URL" and match.group(1) in URL_PASSWORD_PLACEHOLDERS:
                continue
            line = text.count("\n", 0, match.start()) + 1
            hits.append(f"{path}:{line}: {kind}: {match.group(0)[:40]}")
    return hits


def test_the_scanner_finds_planted_secrets():
    """The control: each pattern fires on a sample."""
    # assembled from pieces so that this file does not trip the scan of the repository itself
    planted = ("-----BEGIN OPENSSH " + "PRIVATE KEY-----\nAKIA" + "ABCDEFGHIJKLMNOP\nghp_" + "a" * 36 + "\nsk-" + "b" * 40
               + "\nhf_" + "c" * 34 + "\nxoxb" + "-1234567890-abc\nzf-" + "d" * 43 + "\nSECRET_KEY = " + "'abcdefghijklmnopqrstuv'"
               + "\nDB_PASSWORD = " + "'hunter22'\npostgres://zhufu:" + "s3cr3t@db:5432/zhufu\n")
    kinds = {hit.split(": ")[1] for hit in secrets_in("webapp/x.py", planted)}
    assert kinds == set(SECRET_PATTERNS)
    assert not secrets_in("README.md", "DATABASE_URL=postgres://user:pass@host:5432/zhufu, password=${POSTGRES_PASSWORD}")


def test_no_secret_is_committed():
    files = tracked_files()
    assert len(files) > 100
    hits = [f"{path}: a secret-looking file name" for path in files if SECRET_FILE_NAMES.search(path)]
    for path in files:
        try:
            text = (REPO / path).read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue  # binary, or deleted in the working tree
        hits += secrets_in(path, text)
    assert not hits, "\n".join(hits)


def test_the_generated_secret_key_and_var_are_ignored():
    ignored = subprocess.run(["git", "check-ignore", "var/secret_key", "var/zhufu.sqlite3", ".env"], cwd=REPO,
                             capture_output=True, text=True).stdout.split()
    assert ignored == ["var/secret_key", "var/zhufu.sqlite3", ".env"]
