"""Sign-up and sign-in speak both languages (Django's own messages are Chinese only here)."""
import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

pytestmark = pytest.mark.django_db

ENGLISH = re.compile(r"[A-Za-z]{3,}")
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def signup_errors(**data):
    response = Client().post("/write/signup/", data)
    assert response.status_code == 400
    return response.context["form"].errors


def assert_bilingual(messages):
    assert messages
    for message in messages:
        assert CHINESE.search(message) and ENGLISH.search(message), message


@pytest.mark.parametrize("password, code_words", [
    ("ab1", "too short"),
    ("password123", "too common"),
    ("83920174659", "entirely numeric"),
])
def test_each_password_rule_explains_itself_in_both_languages(password, code_words):
    errors = signup_errors(username="newwriter", password1=password, password2=password)
    assert_bilingual(errors["password2"])
    assert any(code_words in m for m in errors["password2"])


def test_a_password_like_the_username_is_refused_in_both_languages():
    errors = signup_errors(username="moonlight7", password1="moonlight7", password2="moonlight7")
    assert any("similar to the username" in m for m in errors["password2"])
    assert_bilingual(errors["password2"])


def test_mismatched_passwords_and_a_taken_username_in_any_case():
    User.objects.create_user("Meimei", password="x-9f83kd!a")
    errors = signup_errors(username="meimei", password1="x-9f83kd!a1", password2="x-9f83kd!a2")
    assert any("taken" in m for m in errors["username"])
    assert any("do not match" in m for m in errors["password2"])
    assert_bilingual(errors["username"] + errors["password2"])


def test_empty_and_invalid_usernames():
    assert_bilingual(signup_errors(username="", password1="", password2="")["username"])
    errors = signup_errors(username="有 空格", password1="x-9f83kd!a", password2="x-9f83kd!a")
    assert any("letters, digits" in m for m in errors["username"])


def test_the_signup_page_explains_its_rules_in_both_languages():
    html = Client().get("/write/signup/").content.decode()
    assert "At least 8 characters" in html and "至少 8 个字符" in html
    assert "Not entirely numeric" in html


def test_a_good_signup_still_signs_the_writer_in():
    response = Client().post("/write/signup/", {"username": "writer42", "password1": "hj4-ks92-lq",
                                                 "password2": "hj4-ks92-lq"})
    assert response.status_code == 302 and User.objects.filter(username="writer42").exists()


def test_a_wrong_sign_in_says_so_in_both_languages():
    User.objects.create_user("lanlan", password="hj4-ks92-lq")
    response = Client().post("/accounts/login/", {"username": "lanlan", "password": "wrong-one"})
    assert response.status_code == 200
    messages = response.context["form"].non_field_errors()
    assert_bilingual(messages)
    assert any("username or password is wrong" in m for m in messages)
    ok = Client().post("/accounts/login/", {"username": "lanlan", "password": "hj4-ks92-lq"})
    assert ok.status_code == 302
