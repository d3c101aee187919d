"""API keys: made by the command (printed once, stored hashed), authenticated, revoked."""
import hashlib
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from webapp.api.models import ApiKey
from webapp.api.errors import ApiError
from webapp.api.keys import authenticate, revoke_api_key


@pytest.mark.django_db
def test_create_api_key_prints_the_secret_once_and_stores_its_hash():
    user = get_user_model().objects.create_user("keyholder")
    out = StringIO()
    call_command("create_api_key", "keyholder", name="laptop", stdout=out, stderr=StringIO())
    secret = out.getvalue().strip()
    key = ApiKey.objects.get()
    assert key.user == user and key.name == "laptop" and secret.startswith(key.prefix)
    assert key.hashed_key == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiKey.objects.values().get())  # only the hash and prefix are kept

    assert authenticate(f"Bearer {secret}") == key
    assert ApiKey.objects.get().last_used_at is not None
    revoke_api_key(key)
    with pytest.raises(ApiError) as caught:
        authenticate(f"Bearer {secret}")
    assert caught.value.status == 401


@pytest.mark.django_db
def test_create_api_key_refuses_an_unknown_user():
    with pytest.raises(CommandError, match="no user"):
        call_command("create_api_key", "ghost", stdout=StringIO())


@pytest.mark.django_db
def test_admin_add_shows_the_new_key_once(client):
    admin = get_user_model().objects.create_superuser("root", password="pw-123456")
    client.force_login(admin)
    response = client.post("/admin/api/apikey/add/", {"user": admin.pk, "name": "ci"}, follow=True)
    key = ApiKey.objects.get()
    shown = [str(m) for m in response.context["messages"] if "copy it now" in str(m)]
    assert len(shown) == 1
    secret = shown[0].rsplit(" ", 1)[-1]
    assert authenticate(f"Bearer {secret}") == key
