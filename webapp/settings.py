"""Django settings for Zhufu, read from the environment.

Defaults are embedded so that `make demo` runs with Python alone: SQLite under var/, and
the local Redis when one answers on 127.0.0.1:6379, otherwise a broker kept in SQLite.
"""
import os
import secrets
import socket
import sys
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("ZHUFU_VAR_DIR", BASE_DIR / "var")).resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)
CHECKPOINT_DIR = VAR_DIR / "checkpoints"
RUNS_DIR = VAR_DIR / "runs"
# The one committed generator (training/ship.py writes it); make demo serves it instead of training.
SHIPPED_MODEL_DIR = Path(os.environ.get("ZHUFU_SHIPPED_MODEL", BASE_DIR / "models" / "zhufu-small"))
STARTER_CORPUS_DIR = BASE_DIR / "training" / "data" / "starter"
# The folders a training job may read besides the starter corpus and VAR_DIR/uploads (webapp/jobs/datafiles.py).
# Unset: VAR_DIR's imports, jobs, rlaif and curation folders and ../shared/data.
if os.environ.get("ZHUFU_TRAINING_DATA_DIRS"):
    TRAINING_DATA_DIRS = [Path(p) for p in os.environ["ZHUFU_TRAINING_DATA_DIRS"].split(os.pathsep) if p]


def env_flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEMO = env_flag("ZHUFU_DEMO")
DEBUG = env_flag("DEBUG", default=DEMO)
TESTING = env_flag("ZHUFU_TESTING") or "pytest" in sys.modules
# Production: neither a debug/demo run nor the test suite. HTTPS hardening below applies only there.
PRODUCTION = not (DEBUG or DEMO or TESTING)


def load_secret_key() -> str:
    """SECRET_KEY from the environment; a demo or debug run keeps a generated one under var/."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    key_file = VAR_DIR / "secret_key"
    if PRODUCTION:
        if key_file.exists():  # the demo's key: lets `manage.py` commands run beside the demo
            return key_file.read_text().strip()
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = load_secret_key()
ALLOWED_HOSTS = [h for h in os.environ.get("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]").split(",") if h]
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "django_celery_beat",
    "webapp.core",
    "webapp.corpus",
    "webapp.checkpoints",
    "webapp.judges",
    "webapp.annotation",
    "webapp.studio",
    "webapp.api",
    "webapp.jobs",
    "webapp.rlaif",
    "webapp.marl",
    "webapp.site",  # the top: the demo runner, which wires every app together
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "webapp.core.security.ContentSecurityPolicyMiddleware",
    "webapp.core.security.LoginThrottleMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "webapp.core.outage.ServiceOutageMiddleware",  # a database or Redis outage answers 503, not 500
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
ASGI_APPLICATION = "webapp.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "webapp.core.context_processors.navigation",
            ],
        },
    },
]

# --- Database: SQLite under var/ unless DATABASE_URL says otherwise.
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'zhufu.sqlite3'}"
# No persistent connections by default: under ASGI (uvicorn) every request runs in a thread of its own, so a
# kept connection is left behind with its thread and PostgreSQL runs out of connections under load (bench.load
# saw 503s at 60 users). Django's advice for ASGI; a pooler (PgBouncer) is the way to reuse connections.
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
                                              conn_health_checks=True)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several processes (web, worker, beat) share the file: wait for locks instead of failing,
    # and keep the test database on disk so a worker subprocess can open it too.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
elif env_flag("DB_POOL") and DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # A bounded pool (psycopg_pool) reuses connections across uvicorn's request threads instead of starting a
    # PostgreSQL backend per request; each request hands its connection back when it ends, and a broken one
    # (PostgreSQL restarted) is checked and replaced. webapp/asgi.py turns it on for the web server only.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # Django refuses a pool with persistent connections
    # timeout: a request waits at most 3 s for a connection (then 503); reconnect_timeout: a failed connection
    # attempt is given up after 2 s, so once PostgreSQL is back the next request connects at once instead of
    # waiting out the pool's exponential back-off (minutes by default).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 2, "max_size": int(os.environ.get("DB_POOL_SIZE", "16")), "timeout": 3, "reconnect_timeout": 2}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"


# --- Broker: an explicit URL, else the local Redis if it answers, else SQLite (no server).
def local_redis_answers(host: str = "127.0.0.1", port: int = 6379, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL.lower() in {"off", "none", "0"}:
    REDIS_URL = ""  # explicitly no Redis: the embedded broker, even when a local Redis answers
elif not REDIS_URL and local_redis_answers():
    REDIS_URL = "redis://127.0.0.1:6379/0"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'broker.sqlite3'}"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or (
    REDIS_URL or f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
)
BROKER_KIND = "redis" if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else CELERY_BROKER_URL.split(":", 1)[0]

CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Starting a scheduled round must not wait behind a running training job on the train queue.
    "webapp.train.periodic_job": {"queue": "default"},
    "webapp.generate.*": {"queue": "generate"},
    "webapp.train.*": {"queue": "train"},
}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Redis only: kombu's SQLAlchemy transport hands every option to create_engine, which refuses this one.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600} if BROKER_KIND == "redis" else {}
CELERY_BEAT_SCHEDULER = "webapp.core.beat:HeartbeatScheduler"
CELERY_BEAT_MAX_LOOP_INTERVAL = 5
# No generation request is lost (webapp/studio/recovery.py): beat re-enqueues queued requests not enqueued for
# STUDIO_QUEUED_GRACE_SECONDS and restarts running ones whose worker's lease is older than STUDIO_LEASE_SECONDS.
STUDIO_RECOVERY_SECONDS = float(os.environ.get("STUDIO_RECOVERY_SECONDS", "15"))
STUDIO_QUEUED_GRACE_SECONDS = float(os.environ.get("STUDIO_QUEUED_GRACE_SECONDS", "120"))
STUDIO_LEASE_SECONDS = float(os.environ.get("STUDIO_LEASE_SECONDS", "60"))
CELERY_BEAT_SCHEDULE = {
    "studio-recover-lost-requests": {"task": "webapp.studio.recover_lost_requests", "schedule": STUDIO_RECOVERY_SECONDS,
                                     "options": {"expires": STUDIO_RECOVERY_SECONDS}},
}
CELERY_TIMEZONE = "UTC"

# --- Cache: Redis when there is one, else files under var/ (shared by all processes).
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": str(VAR_DIR / "cache")}
    }

AUTH_PASSWORD_VALIDATORS = [  # Django's rules with bilingual messages
    {"NAME": "webapp.core.accounts.UserAttributeSimilarityValidator"},
    {"NAME": "webapp.core.accounts.MinimumLengthValidator"},
    {"NAME": "webapp.core.accounts.CommonPasswordValidator"},
    {"NAME": "webapp.core.accounts.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "landing"  # core.views.landing: each role's own first page
LOGOUT_REDIRECT_URL = "/"

LANGUAGE_CODE = "zh-hans"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
# Serve straight from the app folders when nothing was collected (demo, tests); production runs collectstatic.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# --- Safe by default.
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_flag("SECURE_COOKIES", default=True)
    CSRF_COOKIE_SECURE = env_flag("SECURE_COOKIES", default=True)
# HTTPS in production: ZHUFU_HTTPS=on (default: redirect to https, HSTS), proxy (the same behind a TLS-terminating
# proxy that sets X-Forwarded-Proto; only then is that header trusted), off (plain HTTP on a private network).
HTTPS = os.environ.get("ZHUFU_HTTPS", "on" if PRODUCTION else "off").strip().lower()
if HTTPS not in {"on", "proxy", "off"}:
    raise ImproperlyConfigured(f"ZHUFU_HTTPS must be on, proxy or off, not {HTTPS!r}")
if HTTPS != "off":
    SECURE_SSL_REDIRECT = True
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the container health check calls it over plain HTTP
    SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_flag("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env_flag("SECURE_HSTS_PRELOAD", default=True)
if HTTPS == "proxy":
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Sign-in throttling (webapp/core/security.py): failures per username and client address, in the cache.
LOGIN_THROTTLE_ATTEMPTS = int(os.environ.get("LOGIN_THROTTLE_ATTEMPTS", "5"))
LOGIN_THROTTLE_WINDOW = int(os.environ.get("LOGIN_THROTTLE_WINDOW", "900"))  # seconds

# --- Mail (password resets): SMTP when EMAIL_HOST is set, else files under var/mail, so a reset
# never fails on a missing mail server and nothing leaves the machine by default.
if os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = env_flag("EMAIL_USE_TLS", default=True)
    EMAIL_TIMEOUT = 10
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "zhufu@localhost")

# --- Generation: the local engine (default) or a remote OpenAI-compatible server (vLLM, SGLang).
GENERATION_BACKEND = os.environ.get("GENERATION_BACKEND", "local")  # local | openai
GENERATION_REMOTE_URL = os.environ.get("GENERATION_REMOTE_URL", "")
GENERATION_REMOTE_MODEL = os.environ.get("GENERATION_REMOTE_MODEL", "")
GENERATION_REMOTE_API_KEY = os.environ.get("GENERATION_REMOTE_API_KEY", "")
# Empty: every studio request samples afresh. Tests set it so that a worker's output is reproducible.
GENERATION_SEED = int(os.environ["ZHUFU_GENERATION_SEED"]) if os.environ.get("ZHUFU_GENERATION_SEED") else None
ENGINE_MAX_SLOTS = int(os.environ.get("ENGINE_MAX_SLOTS", "32"))
# The engine's cache budget (MiB; empty: max_slots full-context slots) and how many prompt
# tokens one step may prefill beside the running decodes (chunked prefill).
ENGINE_MEMORY_BUDGET_MB = float(os.environ.get("ENGINE_MEMORY_BUDGET_MB") or 0) or None
ENGINE_PREFILL_TOKENS = int(os.environ.get("ENGINE_PREFILL_TOKENS", "512"))
API_RATE_LIMIT_PER_MINUTE = int(os.environ.get("API_RATE_LIMIT_PER_MINUTE", "60"))  # per API key

# --- Judges: trained judge folders, and the LLM judge's OpenAI-compatible endpoint (none by default).
JUDGES_DIR = VAR_DIR / "judges"
# The principled judge `make demo` registers (webapp/judges/default.py), and what an LLM judge falls back to.
DEFAULT_JUDGE_NAME = "principled-team-v1"
JUDGE_LLM_BASE_URL = os.environ.get("JUDGE_LLM_BASE_URL", "")
JUDGE_LLM_MODEL = os.environ.get("JUDGE_LLM_MODEL", "")
JUDGE_LLM_API_KEY = os.environ.get("JUDGE_LLM_API_KEY", "")
JUDGE_LLM_TIMEOUT = float(os.environ.get("JUDGE_LLM_TIMEOUT", "30"))
JUDGE_LLM_MAX_CONCURRENCY = int(os.environ.get("JUDGE_LLM_MAX_CONCURRENCY", "4"))

# Seconds after which a worker or beat heartbeat counts as stale on the status page.
HEARTBEAT_STALE_AFTER = int(os.environ.get("ZHUFU_HEARTBEAT_STALE_AFTER", "20"))
# Seconds without a heartbeat after which a running training job's worker counts as dead (the reaper then resumes or fails it).
JOBS_HEARTBEAT_STALE_AFTER = int(os.environ.get("JOBS_HEARTBEAT_STALE_AFTER", "60"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
