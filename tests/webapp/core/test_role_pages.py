"""Each role's first visit: where sign-in lands, what the menu offers, the 403 page, the favicon."""
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role

PASSWORD = "a-long-passphrase-1"


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def sign_in(username: str, next_url: str | None = None):
    client = Client()
    data = {"username": username, "password": PASSWORD}
    if next_url is not None:
        data["next"] = next_url
    return client, client.post(reverse("login"), data)


def final_location(client, response) -> str:
    """Follow the sign-in's redirects to the page the user ends on."""
    hops = 0
    while response.status_code in (301, 302) and hops < 5:
        location = response["Location"]
        response = client.get(location)
        hops += 1
    assert response.status_code == 200, (location, response.status_code)
    return location


@pytest.mark.django_db
@pytest.mark.parametrize("role, page", [(WRITER, "/write/"), (ANNOTATOR, "/annotate/"), (ADMIN, "/train/")])
def test_sign_in_lands_each_role_on_its_own_first_page(role, page):
    create_user_with_role(f"user-{role}", role, PASSWORD)
    client, response = sign_in(f"user-{role}")
    assert response.status_code == 302
    assert final_location(client, response) == page


@pytest.mark.django_db
def test_a_next_parameter_still_wins_over_the_landing_page():
    create_user_with_role("wen", WRITER, PASSWORD)
    client, response = sign_in("wen", next_url="/write/history/")
    assert response.status_code == 302 and response["Location"] == "/write/history/"


@pytest.mark.django_db
def test_staff_without_a_role_and_users_without_a_role_land_on_the_status_page():
    get_user_model().objects.create_user("ops", password=PASSWORD, is_staff=True)
    client, response = sign_in("ops")
    assert final_location(client, response) == "/"
    get_user_model().objects.create_user("nobody", password=PASSWORD)
    client, response = sign_in("nobody")
    assert final_location(client, response) == "/"


@pytest.mark.django_db
def test_the_landing_page_sends_anonymous_users_to_sign_in():
    response = Client().get(reverse("landing"))
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def menu_links(html: str) -> set[str]:
    nav = re.search(r'<nav id="site-nav">(.*?)</nav>', html, re.S).group(1)
    return set(re.findall(r'data-nav="([a-z]+)"', nav))


def page_for(user, url="/"):
    client = Client()
    client.force_login(user)
    return client, client.get(url)


@pytest.mark.django_db
@pytest.mark.parametrize("role, links", [
    (WRITER, {"write", "history"}),
    (ANNOTATOR, {"write", "history", "annotate"}),
    (ADMIN, {"write", "history", "annotate", "train", "status", "admin"}),
])
def test_the_menu_shows_only_what_the_role_may_open(role, links):
    user, _ = create_user_with_role(f"user-{role}", role)
    client, response = page_for(user)
    shown = menu_links(response.content.decode())
    assert shown == links
    targets = {"write": "/write/", "history": "/write/history/", "annotate": "/annotate/", "train": "/train/",
               "status": "/", "admin": "/admin/"}
    for name in shown:  # every link offered opens for this role
        assert client.get(targets[name]).status_code == 200, name


@pytest.mark.django_db
def test_the_menu_of_a_signed_out_visitor_offers_sign_in_and_sign_up():
    html = Client().get("/").content.decode()
    assert menu_links(html) == set()
    assert 'href="/accounts/login/"' in html and 'href="/write/signup/"' in html


@pytest.mark.django_db
def test_the_403_page_names_the_roles_that_may_open_it_and_links_home():
    writer, _ = create_user_with_role("wen", WRITER)
    client, response = page_for(writer, "/annotate/")
    html = response.content.decode()
    assert response.status_code == 403
    roles = re.search(r'id="forbidden-roles">(.*?)</p>', html, re.S).group(1)
    assert "标注员 annotator" in roles and "管理员 admin" in roles and "writer" not in roles
    assert re.search(r'id="back-to-landing" href="/write/"', html)
    assert "This page is not open to your role" in html and 'id="site-nav"' in html  # the site's own page
    client, response = page_for(writer, "/train/")
    roles = re.search(r'id="forbidden-roles">(.*?)</p>', response.content.decode(), re.S).group(1)
    assert response.status_code == 403 and "管理员 admin" in roles and "annotator" not in roles


@pytest.mark.django_db
def test_the_403_page_of_a_user_without_a_role_says_so():
    nobody = get_user_model().objects.create_user("nobody", password=PASSWORD)
    client, response = page_for(nobody, "/write/")
    html = response.content.decode()
    assert response.status_code == 403 and "写手 writer" in html and "no role yet" in html
    assert 'id="back-to-landing" href="/"' in html


@pytest.mark.django_db
def test_favicon_is_served_and_linked():
    response = Client().get("/favicon.ico")
    body = b"".join(response.streaming_content)
    assert response.status_code == 200 and response["Content-Type"] == "image/x-icon"
    assert body[:4] == b"\x00\x00\x01\x00" and b"PNG" in body[:64]  # an ICO holding a PNG
    html = Client().get(reverse("login")).content.decode()
    svg = re.search(r'<link rel="icon" href="([^"]+\.svg)"', html).group(1)
    icon = Client().get(svg)
    assert icon.status_code == 200 and b"<svg" in b"".join(icon.streaming_content)
