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
    assert "didn't match" in response.content.decode()
