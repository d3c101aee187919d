"""Settings come from the environment, with embedded defaults for the demo."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO

PRINT_SETTINGS = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'broker': s.CELERY_BROKER_URL, 'kind': s.BROKER_KIND, 'debug': s.DEBUG, "
    "'engine': s.DATABASES['default']['ENGINE'], 'db': str(s.DATABASES['default']['NAME']), "
    "'mail': s.EMAIL_BACKEND, 'mail_dir': str(getattr(s, 'EMAIL_FILE_PATH', ''))}))"
)


def read_settings(tmp_path, **env) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "SECRET_KEY",
                          "DEBUG", "ZHUFU_DEMO", "ZHUFU_TESTING"}}
    clean.update(DJANGO_SETTINGS_MODULE="webapp.settings", ZHUFU_VAR_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", PRINT_SETTINGS], cwd=REPO, env=clean, capture_output=True, text=True)


def test_secret_key_is_required_when_debug_is_off(tmp_path):
    result = read_settings(tmp_path)
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr


def test_demo_defaults_are_embedded(tmp_path):
    result = read_settings(tmp_path, ZHUFU_DEMO="1", REDIS_URL="off")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["debug"] is True
    assert values["broker"] == f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"
    assert values["engine"].endswith("sqlite3") and values["db"] == str(tmp_path / "zhufu.sqlite3")
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    # password-reset mail goes to files under var/ unless a mail server is configured
    assert values["mail"].endswith("filebased.EmailBackend") and values["mail_dir"] == str(tmp_path / "mail")
    smtp = json.loads(read_settings(tmp_path, ZHUFU_DEMO="1", REDIS_URL="off", EMAIL_HOST="mail.example").stdout)
    assert smtp["mail"].endswith("smtp.EmailBackend")


def test_explicit_urls_win(tmp_path):
    result = read_settings(tmp_path, SECRET_KEY="x" * 50, DATABASE_URL="postgres://u:p@db.example:5432/zhufu",
                           REDIS_URL="redis://cache.example:6379/2")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["debug"] is False
    assert values["kind"] == "redis" and values["broker"] == "redis://cache.example:6379/2"
    assert values["engine"].endswith("postgresql") and values["db"] == "zhufu"


POOL_SETTINGS = ("import json, os, django; {import_asgi} django.setup(); from django.conf import settings as s; "
                 "d = s.DATABASES['default']; print(json.dumps({{'pool': d.get('OPTIONS', {{}}).get('pool'), "
                 "'age': d['CONN_MAX_AGE']}}))")


def pool_settings(tmp_path, import_asgi: bool, database_url: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DB_POOL", "ZHUFU_DEMO", "DEBUG"}}
    clean.update(DJANGO_SETTINGS_MODULE="webapp.settings", ZHUFU_VAR_DIR=str(tmp_path), SECRET_KEY="x" * 50,
                 DATABASE_URL=database_url)
    code = POOL_SETTINGS.format(import_asgi="import webapp.asgi;" if import_asgi else "")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=clean, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_web_server_pools_postgres_connections_and_other_processes_do_not(tmp_path):
    postgres = "postgres://u:p@db.example:5432/zhufu"
    web = pool_settings(tmp_path, import_asgi=True, database_url=postgres)
    assert web["pool"]["max_size"] >= 4 and web["age"] == 0  # Django refuses a pool with persistent connections
    assert pool_settings(tmp_path, import_asgi=False, database_url=postgres)["pool"] is None  # Celery, manage.py
