import pytest
from django.urls import reverse

from webapp.core.roles import ANNOTATOR, create_user_with_role


@pytest.mark.django_db
def test_an_annotator_signs_in_on_the_site_login_page(client):
    create_user_with_role("ann", ANNOTATOR, password="a-long-passphrase-1")
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b'name="csrfmiddlewaretoken"' in page.content
    response = client.post(reverse("login"), {"username": "ann", "password": "a-long-passphrase-1", "next": "/annotate/"})
    assert response.status_code == 302 and response["Location"] == "/annotate/"
    assert client.get("/annotate/").status_code == 200


@pytest.mark.django_db
def test_wrong_password_says_so(client):
    create_user_with_role("ann", ANNOTATOR, password="a-long-passphrase-1")
    response = client.post(reverse("login"), {"username": "ann", "password": "nope"})
    assert response.status_code == 200
    assert "The username or password is wrong" in response.content.decode()


@pytest.mark.django_db
def test_password_reset_writes_the_mail_to_var_mail_by_default(client, settings, tmp_path):
    # the project's default backend (settings: files under var/mail when no EMAIL_HOST), not the test mailbox
    settings.EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    settings.EMAIL_FILE_PATH = tmp_path / "mail"
    user, _ = create_user_with_role("ann", ANNOTATOR, password="a-long-passphrase-1")
    user.email = "ann@example.test"
    user.save()
    response = client.post(reverse("password_reset"), {"email": "ann@example.test"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    (message,) = list((tmp_path / "mail").iterdir())
    text = message.read_text()
    assert "To: ann@example.test" in text and "/accounts/reset/" in text
