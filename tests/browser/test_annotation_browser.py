"""Two annotators rate an overlapping batch with the keyboard only, in a real Chromium; the
admin's alignment page then shows their agreement. Screenshots go to var/screenshots/."""
import os

import pytest
from django.conf import settings as django_settings
from django.test import Client

from tests.conftest import REPO
from webapp.annotation.models import Rating
from webapp.core.roles import ADMIN, ANNOTATOR, create_user_with_role
from webapp.corpus.models import Greeting, Label, Query
from webapp.judges.models import JudgeVersion

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

SCREENSHOTS = REPO / "var" / "screenshots"
GREETINGS = ["福如东海长流水，寿比南山不老松。祝您七十大寿快乐！",
             "爸爸，七十岁生日快乐！愿您身体硬朗，每天都能去公园下棋、遛弯，儿孙常回家陪您吃饭。",
             "生日快乐。"]


def logged_in_page(browser, live_server, user):
    """A page carrying the user's session (signing in is the core app's job, not tested here)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME,
                          "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                          "url": live_server.url}])
    page = context.new_page()
    page.set_default_timeout(15000)
    return page


def rate_current_item_by_keyboard(page, parts: str, verdict_key: str):
    before = page.get_attribute("#rate-form", "data-assignment")
    for key in parts:
        page.keyboard.press(key)
    page.keyboard.press(verdict_key)
    page.wait_for_function(
        "id => !document.querySelector('#rate-form') || document.querySelector('#rate-form').dataset.assignment !== id",
        arg=before)


@pytest.mark.django_db(transaction=True)
def test_two_annotators_by_keyboard_then_alignment(browser, live_server, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from webapp.annotation import services

    query = Query.objects.create(text="给七十岁父亲的生日祝福")
    greetings = [Greeting.objects.create(query=query, text=text) for text in GREETINGS]
    batch = services.create_batch(name="生日祝福 第一批", kind="pointwise", k=2, source_type="corpus", limit=10)
    alice, _ = create_user_with_role("alice", ANNOTATOR, "pw-alice-123")
    bob, _ = create_user_with_role("bob", ANNOTATOR, "pw-bob-1234")
    admin, _ = create_user_with_role("boss", ADMIN, "pw-admin-123")
    url = f"{live_server.url}/annotate/batch/{batch.pk}/"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # Alice: Good, Good, Bad — but her first try on item 1 is a slip (B), taken back with U.
    page = logged_in_page(browser, live_server, alice)
    page.goto(url)
    page.wait_for_selector("#rate-form")
    page.screenshot(path=str(SCREENSHOTS / "annotate-pointwise.png"), full_page=True)
    rate_current_item_by_keyboard(page, "32231", "b")
    page.keyboard.press("u")
    page.wait_for_selector("text=taken back")
    rate_current_item_by_keyboard(page, "32231", "g")
    rate_current_item_by_keyboard(page, "33322", "g")
    # an incomplete rubric is refused on the page, nothing is sent
    page.keyboard.press("1")
    page.keyboard.press("g")
    page.wait_for_selector("#messages .error")
    for key in "ArrowUp", "ArrowDown":
        page.keyboard.press(key)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("1")
    for key in "1111":
        page.keyboard.press(key)
    page.keyboard.press("b")
    page.wait_for_selector("text=nothing left for you")
    page.context.close()

    # Bob agrees on two greetings and disagrees on the second.
    page = logged_in_page(browser, live_server, bob)
    page.goto(url)
    page.wait_for_selector("#rate-form")
    for parts, verdict in (("33333", "g"), ("11211", "b"), ("11111", "b")):
        rate_current_item_by_keyboard(page, parts, verdict)
    page.wait_for_selector("text=nothing left for you")
    page.context.close()

    ratings = {(r.annotator.username, r.item.greeting.text): r for r in Rating.objects.select_related("item__greeting", "annotator")}
    assert len(ratings) == 6
    alice_first = ratings[("alice", GREETINGS[0])]
    assert alice_first.verdict == "good" and alice_first.rubric == {
        "language": 3, "creativity": 2, "emotion": 2, "culture": 3, "richness": 1}
    assert [ratings[("alice", g)].verdict for g in GREETINGS] == ["good", "good", "bad"]
    assert [ratings[("bob", g)].verdict for g in GREETINGS] == ["good", "bad", "bad"]

    judge = JudgeVersion.objects.create(name="length-v0", kind="length")
    for greeting in greetings:  # a judge that likes long greetings
        long = len(greeting.text) >= 30
        Label.objects.create(greeting=greeting, value="good" if long else "bad", source_kind="judge",
                             source_name=judge.name, score=min(1.0, len(greeting.text) / 50))
    page = logged_in_page(browser, live_server, admin)
    page.goto(f"{live_server.url}/annotate/alignment/?judge={judge.pk}&batch={batch.pk}")
    page.wait_for_selector("svg.chart")
    text = page.inner_text("main")
    # pairs of annotators agreeing on Good/Bad: 2 of 3 items
    row = page.locator("tr", has_text="Pairwise agreement, Good/Bad").inner_text()
    assert "0.667" in row
    assert "length-v0" in text and "Cohen" in text
    page.screenshot(path=str(SCREENSHOTS / "alignment.png"), full_page=True)
    page.goto(f"{live_server.url}/annotate/review/")
    page.wait_for_selector(".review-item")
    page.screenshot(path=str(SCREENSHOTS / "review.png"), full_page=True)
    page.context.close()
