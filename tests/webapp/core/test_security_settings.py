"""Security headers on every page, `manage.py check --deploy` clean in production, sign-in throttling
against the real Redis cache, and pages that a strict Content-Security-Policy does not break."""
import os
import re
import secrets
import subprocess
import sys

import pytest
from django.core.cache import cache
from django.test import Client

from tests.conftest import REPO
from webapp.core import security
from webapp.core.roles import ANNOTATOR, create_user_with_role


@pytest.mark.django_db
def test_pages_carry_the_security_headers(client):
    for url in ("/", "/accounts/login/", "/write/signup/", "/healthz"):
        response = client.get(url)
        assert response["X-Frame-Options"] == "DENY", url
        assert response["X-Content-Type-Options"] == "nosniff", url
        assert response["Referrer-Policy"] == "same-origin", url
        assert response["Cross-Origin-Opener-Policy"] == "same-origin", url
        policy = response["Content-Security-Policy"]
        scripts = policy.split("script-src", 1)[1].split(";", 1)[0]
        assert "'self'" in scripts and "'unsafe-inline'" not in scripts and "'unsafe-eval'" not in scripts and "frame-ancestors 'none'" in policy


@pytest.mark.django_db
def test_htmx_is_served_by_the_app_not_a_cdn(client):
    page = client.get("/accounts/login/").content.decode()
    scripts = re.findall(r'<script[^>]*src="([^"]+)"', page)
    assert scripts and all(src.startswith("/static/") for src in scripts), scripts
    assert client.get(scripts[0]).status_code == 200


TEMPLATE_DIRS = [REPO / "templates", *sorted((REPO / "webapp").glob("*/templates"))]
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=\s*[\"']|javascript:|\bhx-on[:-]", re.I)


def test_templates_have_no_inline_script_the_policy_would_block():
    """script-src 'self' refuses inline <script> blocks, on*= handlers and hx-on: keep scripts in static/js/."""
    offenders = []
    for folder in TEMPLATE_DIRS:
        for path in folder.rglob("*.html"):
            text = path.read_text(encoding="utf-8")
            for pattern in (INLINE_SCRIPT, INLINE_HANDLER):
                offenders += [f"{path.relative_to(REPO)}: {m.group(0).strip()}" for m in pattern.finditer(text)]
    assert not offenders, "\n".join(offenders)


def production_env(tmp_path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in {"DEBUG", "ZHUFU_DEMO", "ZHUFU_TESTING", "SECRET_KEY", "ZHUFU_HTTPS", "SECURE_COOKIES",
                        "DJANGO_ALLOW_ASYNC_UNSAFE"}}  # the browser tests set it in this process
    env.update(DJANGO_SETTINGS_MODULE="webapp.settings", ZHUFU_VAR_DIR=str(tmp_path), REDIS_URL="off",
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", SECRET_KEY=secrets.token_urlsafe(60),
               ALLOWED_HOSTS="zhufu.example.com", **extra)
    return env


PRODUCTION_CHECKS = """
import django; django.setup()
from django.core.management import call_command
from django.test import Client
call_command("check", deploy=True, fail_level="WARNING")  # raises SystemCheckError on any warning
client = Client()
response = client.get("/write/", HTTP_HOST="zhufu.example.com")
print("write", response.status_code, response.get("Location"))
print("healthz", client.get("/healthz", HTTP_HOST="zhufu.example.com").status_code)
"""


def test_check_deploy_is_clean_in_production_settings(tmp_path):
    """DEBUG off, a real SECRET_KEY, ALLOWED_HOSTS: no deploy warning; plain HTTP is sent to https
    except the container's health check."""
    result = subprocess.run([sys.executable, "-c", PRODUCTION_CHECKS], cwd=REPO, env=production_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "write 301 https://zhufu.example.com/write/" in result.stdout
    assert "healthz 301" not in result.stdout


def test_deploy_checks_catch_a_weakened_production(settings):
    """The control: the same checks warn once HTTPS hardening is off or DEBUG is on."""
    from django.core import checks

    settings.DEBUG = True
    settings.SECURE_SSL_REDIRECT = False
    settings.SECURE_HSTS_SECONDS = 0
    ids = {message.id for message in checks.run_checks(include_deployment_checks=True, tags=["security"])}
    assert {"security.W004", "security.W008", "security.W018"} <= ids


# --- Sign-in throttling, on the real Redis cache (REDIS_URL).

@pytest.fixture
def throttle(settings):
    from django.conf import settings as live

    if "redis" not in live.CACHES["default"]["BACKEND"].lower():
        if os.environ.get("CI") == "true":
            pytest.fail("sign-in throttling is tested against Redis; set REDIS_URL")
        pytest.skip("no Redis cache configured")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.LOGIN_THROTTLE_ATTEMPTS = 3
    settings.LOGIN_THROTTLE_WINDOW = 600
    cache.clear()
    yield settings
    cache.clear()


def sign_in(client, username, password, ip="10.0.0.1", url="/accounts/login/"):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=ip)


@pytest.mark.django_db
def test_sign_in_is_throttled_per_username_and_address(throttle):
    create_user_with_role("ann", ANNOTATOR, password="a-long-passphrase-1")
    client = Client()
    for _ in range(3):
        assert sign_in(client, "ann", "wrong").status_code == 200  # the ordinary "didn't match"
    refused = sign_in(client, "ann", "a-long-passphrase-1")  # even the right password waits now
    assert refused.status_code == 429
    assert "Too many failed sign-in attempts" in refused.content.decode() and "try again in 10 minute" in refused.content.decode()
    assert 590 <= int(refused["Retry-After"]) <= 600
    assert "_auth_user_id" not in client.session
    # another address, and another username from this address, are not affected
    assert sign_in(Client(), "ann", "a-long-passphrase-1", ip="10.0.0.2").status_code == 302
    assert sign_in(Client(), "ANN ", "wrong").status_code == 429  # the same account, spelled differently
    assert sign_in(Client(), "bob", "wrong").status_code == 200
    # the admin's sign-in page counts against the same throttle
    assert sign_in(Client(), "ann", "a-long-passphrase-1", url="/admin/login/").status_code == 429


@pytest.mark.django_db
def test_a_successful_sign_in_clears_the_count(throttle):
    create_user_with_role("ann", ANNOTATOR, password="a-long-passphrase-1")
    client = Client()
    for _ in range(2):
        sign_in(client, "ann", "wrong")
    assert sign_in(client, "ann", "a-long-passphrase-1").status_code == 302
    client.logout()
    for _ in range(2):
        assert sign_in(client, "ann", "wrong").status_code == 200  # counting starts again from zero
    assert security.seconds_locked("ann", "10.0.0.1") == 0


@pytest.mark.django_db
def test_the_lock_ends_with_its_window(throttle):
    throttle.LOGIN_THROTTLE_WINDOW = 2
    create_user_with_role("ann", ANNOTATOR, password="a-long-passphrase-1")
    for _ in range(3):
        sign_in(Client(), "ann", "wrong")
    assert 1 <= security.seconds_locked("ann", "10.0.0.1") <= 2
    assert "2 second(s)" in security.lockout_message(2) and "1 minute(s)" in security.lockout_message(60)
    import time

    time.sleep(2.5)  # Redis expires the counter with the window
    assert security.seconds_locked("ann", "10.0.0.1") == 0
    assert sign_in(Client(), "ann", "a-long-passphrase-1").status_code == 302
