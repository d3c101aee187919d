"""Two annotators vote on blind A/B comparisons in a real Chromium, keyboard only (L/R for the
left/right side, T, X, U: one key map with the pointwise page, where B means Bad). Each sees
the sides in their own order and never the model names; both mean the same greeting, so the
stored choices (in the item's order) agree, and the votes become human pairs."""
import os

import pytest

from tests.conftest import REPO
from tests.browser.test_annotation_browser import logged_in_page
from webapp.annotation import exchange
from webapp.annotation.models import Assignment, Batch, HumanPreference, Item, Kind, Rating
from webapp.core.roles import ANNOTATOR, create_user_with_role
from webapp.corpus.models import Greeting, Query

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

SCREENSHOTS = REPO / "var" / "screenshots"
N_ITEMS = 8


def comparison_batch() -> tuple[Batch, list[Item]]:
    query = Query.objects.create(text="给老师的教师节祝福")
    batch = Batch.objects.create(name="教师节 盲评", kind=Kind.PAIRWISE, k=2)
    items = []
    for i in range(N_ITEMS):
        a = Greeting.objects.create(query=query, source="model", checkpoint_name="ckpt-alpha",
                                    text=f"老师，您辛苦了！感谢您多年的悉心教导，祝您节日快乐、桃李满天下。（{i}）")
        b = Greeting.objects.create(query=query, source="model", checkpoint_name="ckpt-beta", text=f"节日快乐。（{i}）")
        items.append(Item.objects.create(batch=batch, position=i, greeting=a, greeting_b=b))
    return batch, items


def vote_by_keyboard(page, item_texts, wanted):
    """Press the key for `wanted[position]` ('long', 'short', 't', 'x'): which key (L or R) means the
    long greeting depends on the side this annotator was shown it on. Returns what was seen."""
    seen = []
    while page.locator("#rate-form").count():
        assignment = page.get_attribute("#rate-form", "data-assignment")
        left = page.inner_text(".pair .side:nth-child(1) blockquote").strip()
        right = page.inner_text(".pair .side:nth-child(2) blockquote").strip()
        position = next(p for p, (a, b) in item_texts.items() if {a, b} == {left, right})
        seen.append((int(assignment), position, left))
        want = wanted[position]
        long_side = "l" if left == item_texts[position][0] else "r"
        key = {"long": long_side, "short": "r" if long_side == "l" else "l"}.get(want, want)
        page.keyboard.press(key)
        page.wait_for_function(
            "id => !document.querySelector('#rate-form') || document.querySelector('#rate-form').dataset.assignment !== id",
            arg=str(assignment))
    assert "nothing left for you" in page.inner_text("#item")
    return seen


@pytest.mark.django_db(transaction=True)
def test_two_annotators_vote_blind_pairs_by_keyboard(browser, live_server, settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    batch, items = comparison_batch()
    item_texts = {item.position: (item.greeting.text, item.greeting_b.text) for item in items}
    wanted = {p: "long" for p in range(N_ITEMS)} | {5: "t", 6: "x", 7: "short"}
    url = f"{live_server.url}/annotate/batch/{batch.pk}/"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    swaps = []
    for name in ("lin", "zhao"):
        user, _ = create_user_with_role(name, ANNOTATOR, "pw-ann-12345")
        page = logged_in_page(browser, live_server, user)
        page.goto(url)
        page.wait_for_selector("#rate-form[data-kind=pairwise]")
        html = page.content()
        assert "ckpt-alpha" not in html and "ckpt-beta" not in html  # blind to the models
        if name == "lin":
            page.screenshot(path=str(SCREENSHOTS / "annotate-pairwise.png"), full_page=True)
            # a slip, taken back with U, then voted again below
            first_left = page.inner_text(".pair .side:nth-child(1) blockquote").strip()
            page.keyboard.press("x")
            page.wait_for_selector("text=Saved.")
            page.keyboard.press("u")
            page.wait_for_selector("text=taken back")
            assert page.inner_text(".pair .side:nth-child(1) blockquote").strip() == first_left
        seen = vote_by_keyboard(page, item_texts, wanted)
        assert sorted(position for _, position, _ in seen) == list(range(N_ITEMS))
        for assignment_id, position, left in seen:  # the page showed the sides the lease recorded
            swapped = Assignment.objects.get(pk=assignment_id).swapped
            assert left == item_texts[position][1 if swapped else 0]
            swaps.append(swapped)
        page.context.close()
    assert True in swaps and False in swaps  # sides differ between annotators and items

    stored = {}
    for rating in Rating.objects.select_related("item", "annotator"):
        stored.setdefault(rating.item.position, set()).add(rating.choice)
    # in the item's order: A is the long greeting whatever side each person saw it on
    assert stored == {p: {"a"} for p in range(5)} | {5: {"tie"}, 6: {"both_bad"}, 7: {"b"}}
    assert Rating.objects.count() == 2 * N_ITEMS and all(r.seconds_spent >= 0 for r in Rating.objects.all())

    summary = exchange.record_human_preferences(batch)
    assert summary.created == 6 and summary.left_out == {"tie": 1, "both_bad": 1}
    assert {h.pair.chosen.checkpoint_name for h in HumanPreference.objects.select_related("pair__chosen")} == {
        "ckpt-alpha", "ckpt-beta"}
