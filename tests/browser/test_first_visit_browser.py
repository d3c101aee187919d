"""Each role's first visit in a real Chromium, from the sign-in page on, without typing another
URL (issue 18): a writer signs up, lands on /write/, gets three greetings, regenerates all in
place and copies one; an annotator signs in, lands on the queue, and rates a pointwise batch
and a pairwise batch by keyboard. Screenshots go to var/screenshots/."""
import os
import re

import pytest
from playwright.sync_api import expect

from tests.conftest import REPO
from tests.browser.test_studio_live import start_worker, tiny_checkpoint  # noqa: F401 (fixture)
from webapp.annotation.models import Batch, Item, Kind, Rating
from webapp.core.roles import ANNOTATOR, create_user_with_role
from webapp.corpus.models import Greeting, Query
from webapp.studio.models import GenerationRequest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

SCREENSHOTS = REPO / "var" / "screenshots"
WORKER_TIMEOUT_MS = 120_000


def new_page(browser, live_server, **context_options):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN", **context_options)
    page = context.new_page()
    page.set_default_timeout(20000)
    return context, page


def sign_in(page, username, password):
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("form.stack button[type=submit]")


def mark_page(page):
    """A flag that a full page load would wipe: the writer's swaps must happen in place."""
    page.evaluate("window.notReloaded = true")


def wait_done(page, worker, pk):
    try:
        page.wait_for_selector(f'#cards[data-status=done][data-cards-url="/write/r/{pk}/cards/"] .actions',
                               timeout=WORKER_TIMEOUT_MS)
    except Exception:
        raise AssertionError(f"request {pk} did not finish on the page; worker log:\n{worker.log_tail()}") from None


def test_a_first_time_writer_signs_up_writes_regenerates_in_place_and_copies(tiny_checkpoint, celery_processes,
                                                                             browser, live_server):
    worker = start_worker(celery_processes)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context, page = new_page(browser, live_server)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)

    page.goto(f"{live_server.url}/accounts/login/")  # the one address typed
    page.click("main a[href='/write/signup/']")
    page.fill("#id_username", "xiaomei")
    page.fill("#id_password1", "pw-xiaomei-2024")
    page.fill("#id_password2", "pw-xiaomei-2024")
    page.click("#signup-form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/write/")
    # the menu offers a writer the writing pages only
    assert set(page.locator("#site-nav [data-nav]").evaluate_all("els => els.map(e => e.dataset.nav)")) == {
        "write", "history"}
    page.click("#site-nav button:has-text('Sign out')")
    page.click("#site-nav a[href='/accounts/login/']")
    sign_in(page, "xiaomei", "pw-xiaomei-2024")
    page.wait_for_url(f"{live_server.url}/write/")  # sign-in lands a writer on the writing page
    assert page.locator(".recent").count() == 0  # a first-time writer has no requests yet

    page.fill("#id_query", "给妈妈的生日祝福")
    page.click("#write-form button[type=submit]")
    page.wait_for_selector("#cards")
    assert page.locator("#cards .card").count() == 3
    first = GenerationRequest.objects.get()
    wait_done(page, worker, first.pk)
    first.refresh_from_db()
    assert first.status == "done", first.reason
    page.screenshot(path=str(SCREENSHOTS / "first-visit-writer-cards.png"), full_page=True)

    # Regenerate all: the new request's cards replace these in place, the address follows.
    mark_page(page)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/r/{first.pk}/regenerate/")):
        page.click("#regenerate-all")
    second = GenerationRequest.objects.exclude(pk=first.pk).get()
    page.wait_for_url(f"{live_server.url}/write/r/{second.pk}/")
    wait_done(page, worker, second.pk)
    assert page.evaluate("window.notReloaded") is True
    second.refresh_from_db()
    assert second.status == "done" and second.query == first.query, second.reason
    texts = [page.locator(f"#card-{i} [data-text]").text_content() for i in range(3)]
    assert texts == [c.text for c in second.candidates.all()]
    assert page.locator("#regenerate-all").count() == 1  # offered again on the fresh cards

    index = next(i for i, text in enumerate(texts) if text)
    card = page.locator(f"#card-{index}")
    card.locator("[data-copy]").click()
    card.locator(".copied").wait_for(state="visible")
    assert page.evaluate("navigator.clipboard.readText()") == texts[index]
    page.screenshot(path=str(SCREENSHOTS / "first-visit-writer-regenerated.png"), full_page=True)

    # both requests are in the writer's Recent list, reached by the menu
    page.click("#site-nav [data-nav=write]")
    recent = page.locator(".recent a")
    expect(recent).to_have_count(2)
    # the full request in the title (the textarea keeps what the active model's context allows:
    # the tiny checkpoint's 128 tokens leave room for a one-character request)
    assert recent.first.get_attribute("title") == first.query and "给妈妈的生日祝福".startswith(first.query)
    context.close()


GREETINGS = ["福如东海长流水，寿比南山不老松。祝您七十大寿快乐！",
             "爸爸，七十岁生日快乐！愿您身体硬朗，每天都能去公园下棋、遛弯。",
             "生日快乐。"]


def make_batches() -> tuple[Batch, Batch]:
    query = Query.objects.create(text="给七十岁父亲的生日祝福")
    pointwise = Batch.objects.create(name="生日祝福 单条", kind=Kind.POINTWISE, k=1)
    for position, text in enumerate(GREETINGS):
        Item.objects.create(batch=pointwise, position=position, greeting=Greeting.objects.create(query=query, text=text))
    teacher = Query.objects.create(text="给老师的教师节祝福")
    pairwise = Batch.objects.create(name="教师节 成对", kind=Kind.PAIRWISE, k=1)
    for position in range(3):
        long = Greeting.objects.create(query=teacher, text=f"老师，您辛苦了！感谢您的悉心教导，祝您桃李满天下。（{position}）")
        short = Greeting.objects.create(query=teacher, text=f"节日快乐。（{position}）")
        Item.objects.create(batch=pairwise, position=position, greeting=long, greeting_b=short)
    return pointwise, pairwise


def press_and_wait_next(page, keys):
    before = page.get_attribute("#rate-form", "data-assignment")
    for key in keys:
        page.keyboard.press(key)
    page.wait_for_function(
        "id => !document.querySelector('#rate-form') || document.querySelector('#rate-form').dataset.assignment !== id",
        arg=before)


def open_batch_from_queue(page, name):
    page.locator("tr", has_text=name).locator("a.button").click()
    page.wait_for_selector("#rate-form")


@pytest.mark.django_db(transaction=True)
def test_an_annotator_signs_in_and_rates_a_pointwise_and_a_pairwise_batch_by_keyboard(browser, live_server,
                                                                                      settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    pointwise, pairwise = make_batches()
    create_user_with_role("lin", ANNOTATOR, "pw-lin-123456")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context, page = new_page(browser, live_server)

    page.goto(f"{live_server.url}/accounts/login/")
    sign_in(page, "lin", "pw-lin-123456")
    page.wait_for_url(f"{live_server.url}/annotate/")  # sign-in lands an annotator on the queue
    assert page.locator("#site-nav [data-nav=train]").count() == 0
    page.screenshot(path=str(SCREENSHOTS / "first-visit-annotator-queue.png"), full_page=True)

    open_batch_from_queue(page, pointwise.name)
    page.wait_for_selector("#key-map")
    assert "G" in page.inner_text("#rate-form button[value=good] kbd")
    # a full rubric by keys: the score suggests, it never grades
    for key in "33323":
        page.keyboard.press(key)
    expect(page.locator("#weighted")).to_have_text("2.85")  # .3·3 + .3·3 + .15·3 + .15·2 + .1·3
    suggestion = page.inner_text("#rubric-suggests")
    assert "leans Good" in suggestion and "decides" in suggestion and "优秀" not in suggestion
    page.screenshot(path=str(SCREENSHOTS / "first-visit-annotator-pointwise.png"), full_page=True)
    press_and_wait_next(page, ["g"])
    press_and_wait_next(page, ["b"])  # Bad on its own: no rubric needed
    # a begun rubric is cleared with Delete, then Good stands alone
    page.keyboard.press("2")
    page.keyboard.press("Delete")
    expect(page.locator("#weighted")).to_have_text("—")
    press_and_wait_next(page, ["g"])
    page.wait_for_selector("#batch-finished")
    page.click("#next-batch")
    page.wait_for_url(f"{live_server.url}/annotate/")

    open_batch_from_queue(page, pairwise.name)
    assert page.inner_text(".pair .side:nth-child(1) h2").startswith("左")
    page.screenshot(path=str(SCREENSHOTS / "first-visit-annotator-pairwise.png"), full_page=True)
    # the longer greeting is better; the key depends on the side this annotator sees it on
    for _ in range(2):
        left = page.inner_text(".pair .side:nth-child(1) blockquote")
        press_and_wait_next(page, ["l" if "辛苦" in left else "ArrowRight"])
    press_and_wait_next(page, ["t"])
    page.wait_for_selector("#batch-finished")
    page.screenshot(path=str(SCREENSHOTS / "first-visit-annotator-done.png"), full_page=True)
    context.close()

    point = {r.item.position: r for r in Rating.objects.filter(item__batch=pointwise).select_related("item")}
    assert [point[p].verdict for p in range(3)] == ["good", "bad", "good"]
    assert point[0].rubric == {"language": 3, "creativity": 3, "emotion": 3, "culture": 2, "richness": 3}
    assert point[1].weighted_score is None and point[2].weighted_score is None
    pair = {r.item.position: r.choice for r in Rating.objects.filter(item__batch=pairwise).select_related("item")}
    # stored in the item's own order: A (the long greeting) won twice, whatever side it was shown on
    assert sorted(pair.values()) == ["a", "a", "tie"]
