"""Shared helpers for the studio tests (a fake backend; a local-memory cache; fixtures)."""
import pytest
from django.core.cache import cache

from generation.backends import GenerationBackend
from generation.engine import StreamEvent


class FakeBackend(GenerationBackend):
    """Streams the given texts character by character, candidate i getting texts[i]."""

    def __init__(self, texts, error: Exception | None = None, checkpoint_name: str = "ckpt-test"):
        self.texts, self.error, self.queries, self.checkpoint_name = texts, error, [], checkpoint_name

    def greeting_prompt(self, query):
        self.queries.append(query)
        return query

    def stream(self, prompt, params):
        for index in range(params.n):
            text = self.texts[index % len(self.texts)]
            for char in text:
                yield StreamEvent("r", index, char, False, None)
                if self.error is not None:
                    raise self.error
            yield StreamEvent("r", index, "", True, "stop")


def use_fake_backend(monkeypatch, texts, error=None, checkpoint="ckpt-test") -> FakeBackend:
    from webapp.checkpoints import serving
    from webapp.studio import services

    backend = FakeBackend(texts, error, checkpoint)
    monkeypatch.setattr(serving, "get_backend", lambda: backend)
    monkeypatch.setattr(serving, "active_checkpoint_name", lambda: checkpoint)
    monkeypatch.setattr(services, "model_status", lambda: "")
    return backend


LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "studio-tests"}}


@pytest.fixture(autouse=True)
def local_cache(settings):
    settings.CACHES = LOCMEM
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    cache.clear()


@pytest.fixture
def enqueued(monkeypatch):
    from webapp.studio import services as studio_services

    ids = []
    monkeypatch.setattr(studio_services, "enqueue", ids.append)
    return ids


@pytest.fixture
def writer(db):
    from webapp.core.roles import WRITER, create_user_with_role

    return create_user_with_role("wen", WRITER, "pw-wen-12345")[0]
