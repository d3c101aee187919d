"""API keys: created once (only the hash is stored), revoked, read from the Authorization header,
and a per-key rate limit per minute (API_RATE_LIMIT_PER_MINUTE by default)."""
from __future__ import annotations

import hashlib
import os
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from webapp.api.errors import ApiError
from webapp.api.models import ApiKey


KEY_PREFIX = "zf-"
LAST_USED_RESOLUTION = timedelta(seconds=60)  # spares a database write on every request

def default_rate_limit() -> int:
    return int(getattr(settings, "API_RATE_LIMIT_PER_MINUTE", os.environ.get("API_RATE_LIMIT_PER_MINUTE", 60)))


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(user, name: str = "", rate_limit_per_minute: int | None = None) -> tuple[ApiKey, str]:
    """A new key for `user`; the secret is returned once and never stored."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey.objects.create(user=user, name=name, prefix=secret[:10], hashed_key=hash_key(secret),
                                rate_limit_per_minute=rate_limit_per_minute)
    return key, secret


def revoke_api_key(key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])


def authenticate(authorization: str | None) -> ApiKey:
    """The active key named by an `Authorization: Bearer …` header, else 401."""
    scheme, _, secret = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.", "invalid_request_error",
                       code="invalid_api_key")
    key = (ApiKey.objects.select_related("user").filter(hashed_key=hash_key(secret.strip()), revoked_at__isnull=True)
           .first())
    if key is None or not key.user.is_active:
        raise ApiError(401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key")
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key


def check_rate_limit(key: ApiKey) -> None:
    """A fixed one-minute window counted in the shared cache; 429 once the key's limit is used up."""
    limit = key.rate_limit_per_minute or default_rate_limit()
    window = int(time.time() // 60)
    counter = f"api-rate:{key.pk}:{key.prefix}:{window}"  # the prefix keeps reused ids (test flushes) apart
    cache.add(counter, 0, timeout=120)
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.set(counter, 1, timeout=120)
        count = 1
    if count > limit:
        retry = 60 - int(time.time() % 60)
        raise ApiError(429, f"Rate limit reached: {limit} requests per minute for this key.", "rate_limit_exceeded",
                       code="rate_limit_exceeded", headers={"Retry-After": str(retry)})
