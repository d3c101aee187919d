"""scripts/backup.sh and scripts/restore.sh against the real PostgreSQL: a database with rows and a var
folder with a real checkpoint are backed up, restored into a fresh database and folder, and compared
table by table and file by file; damaged backups and non-empty targets are refused."""
import hashlib
import os
import shutil
import subprocess
import uuid

import psycopg
import pytest
from django.db import connection

from tests.conftest import GREETINGS, REPO, database_url_for_subprocesses
from tests.webapp.api.test_security_data import tiny_checkpoint  # noqa: F401  (a saved tiny checkpoint, module-scoped)
from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role

BACKUP, RESTORE = REPO / "scripts" / "backup.sh", REPO / "scripts" / "restore.sh"

pytestmark = pytest.mark.skipif(shutil.which("pg_dump") is None, reason="needs pg_dump and pg_restore")


@pytest.fixture
def source(transactional_db, tmp_path, tiny_checkpoint, settings):  # noqa: F811
    """A committed database with rows in several apps, and a var folder with a checkpoint, runs and a judge."""
    if connection.vendor != "postgresql":
        pytest.skip("backups are of PostgreSQL; set DATABASE_URL")
    from webapp.api.keys import create_api_key
    from webapp.checkpoints.models import Checkpoint
    from webapp.corpus.models import Greeting, Query

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    var = tmp_path / "var-source"
    folder = var / "checkpoints" / "tiny-1"
    shutil.copytree(tiny_checkpoint, folder)
    (var / "runs" / "tiny-1" / "state").mkdir(parents=True)
    (var / "runs" / "tiny-1" / "state" / "state.json").write_text('{"step": 3}')
    (var / "judges" / "tfidf-1").mkdir(parents=True)
    (var / "judges" / "tfidf-1" / "judge.json").write_text('{"kind": "tfidf", "名字": "评审"}')
    (var / "checkpoints" / ".tiny-2.tmp-0000").mkdir()  # an unfinished write: not part of a backup
    (var / "checkpoints" / ".tiny-2.tmp-0000" / "partial").write_text("x")

    for role in (WRITER, ANNOTATOR, ADMIN):
        user, _ = create_user_with_role(f"user-{role}", role)
    create_api_key(user, name="ops")
    for query, text in GREETINGS:
        q, _ = Query.objects.get_or_create(text=query)
        Greeting.objects.create(query=q, text=text)
    Checkpoint.objects.create(name="tiny-1", run_name="tiny-1", path=str(folder), preset="tiny",
                              data={"files": [str(folder / "model.safetensors")]})
    return var


def run(script, *args, env=None):
    return subprocess.run(["bash", str(script), *map(str, args)], cwd=REPO, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=300)


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def checksums(folder) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def fresh_database():
    url = database_url_for_subprocesses().rsplit("/", 1)[0] + f"/zhufu_restore_{uuid.uuid4().hex[:8]}"
    yield url
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def test_backup_then_restore_into_a_fresh_database_and_folder(source, tmp_path, fresh_database):
    source_url = database_url_for_subprocesses()
    backup = run(BACKUP, tmp_path / "backups", env={"DATABASE_URL": source_url, "ZHUFU_VAR_DIR": str(source)})
    assert backup.returncode == 0, backup.stderr
    folder = tmp_path / "backups" / backup.stdout.strip().rsplit("/", 1)[-1]
    assert sorted(p.name for p in folder.iterdir()) == ["SHA256SUMS", "db.dump", "files.sha256", "files.tar",
                                                         "manifest.txt", "row_counts.tsv"]
    recorded = dict(line.split("\t") for line in (folder / "row_counts.tsv").read_text().splitlines())
    expected = row_counts(source_url)
    assert {t: int(n) for t, n in recorded.items()} == expected
    assert expected["corpus_greeting"] == len(GREETINGS) and expected["checkpoints_checkpoint"] == 1

    target = tmp_path / "var-restored"
    restore = run(RESTORE, folder, env={"DATABASE_URL": fresh_database, "ZHUFU_VAR_DIR": str(target)})
    assert restore.returncode == 0, restore.stderr
    assert "tables and" in restore.stderr and "match the backup" in restore.stderr

    assert row_counts(fresh_database) == expected  # every table, row for row
    source_files = {k: v for k, v in checksums(source).items() if ".tmp-" not in k}
    assert checksums(target) == source_files and len(source_files) >= 6
    with psycopg.connect(fresh_database) as conn:
        path, data = conn.execute("SELECT path, data FROM checkpoints_checkpoint").fetchone()
        hashed = conn.execute("SELECT hashed_key FROM api_apikey").fetchone()[0]
    assert path == str(target / "checkpoints" / "tiny-1") and data["files"][0].startswith(str(target))
    from webapp.api.models import ApiKey

    assert hashed == ApiKey.objects.get().hashed_key
    from generation.checkpoint import check_checkpoint

    assert check_checkpoint(target / "checkpoints" / "tiny-1")["model_type"] == "longcat_flash"

    # a second restore into the now non-empty database and folder is refused, and changes nothing
    again = run(RESTORE, folder, env={"DATABASE_URL": fresh_database, "ZHUFU_VAR_DIR": str(tmp_path / "other")})
    assert again.returncode != 0 and "restore into a fresh database" in again.stderr
    busy = run(RESTORE, folder, env={"DATABASE_URL": fresh_database + "x", "ZHUFU_VAR_DIR": str(target)})
    assert busy.returncode != 0 and "not empty" in busy.stderr
    assert row_counts(fresh_database) == expected


def test_a_damaged_backup_is_refused_before_anything_is_written(source, tmp_path, fresh_database):
    backup = run(BACKUP, tmp_path / "backups",
                 env={"DATABASE_URL": database_url_for_subprocesses(), "ZHUFU_VAR_DIR": str(source)})
    assert backup.returncode == 0, backup.stderr
    folder = tmp_path / "backups" / backup.stdout.strip().rsplit("/", 1)[-1]
    tar = folder / "files.tar"
    data = bytearray(tar.read_bytes())
    data[600] ^= 0xFF  # one flipped byte inside the first file
    tar.write_bytes(bytes(data))
    target = tmp_path / "var-restored"
    restore = run(RESTORE, folder, env={"DATABASE_URL": fresh_database, "ZHUFU_VAR_DIR": str(target)})
    assert restore.returncode != 0 and "damaged" in restore.stderr
    assert not (target / "checkpoints").exists()
    with psycopg.connect(fresh_database.rsplit("/", 1)[0] + "/postgres") as conn:
        name = fresh_database.rsplit("/", 1)[1]
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname = %s", [name]).fetchone()[0] == 0


def test_backup_refuses_sqlite(tmp_path):
    result = run(BACKUP, tmp_path, env={"DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3", "ZHUFU_VAR_DIR": str(tmp_path)})
    assert result.returncode != 0 and "postgres://" in result.stderr
