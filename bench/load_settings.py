"""Settings for the load and soak benchmarks' private server: the app's own, with the per-user and
per-address generation limits raised (every simulated user comes from 127.0.0.1) and a fast password
hasher (sixty sign-ins at start-up are not what is measured)."""
from webapp.settings import *  # noqa: F401,F403

STUDIO_RATE_LIMITS = {"user": 100_000, "ip": 1_000_000, "window": 60}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
