"""The studio end to end: a real Celery worker on the real broker generates with a tiny
checkpoint trained into the test database; then a real Chromium signs in and writes.
Screenshots go to var/screenshots/ (desktop and a 390 px phone)."""
import json
import os
from io import StringIO

import pytest
import torch
from playwright.sync_api import expect
from django.core.management import call_command
from django.test import Client

from tests.conftest import REPO, wait_until
from webapp.checkpoints.models import Checkpoint
from webapp.checkpoints.serving import reset_backend
from webapp.core.roles import WRITER, create_user_with_role
from webapp.corpus.models import Greeting, Label
from webapp.studio.models import GenerationRequest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

SCREENSHOTS = REPO / "var" / "screenshots"
PAIRS = [("七十生日祝福语", "愿您福如东海，寿比南山，身体康健，笑口常开。"),
         ("给妈妈的生日祝福", "妈妈，生日快乐！谢谢您一路的温柔与陪伴，愿您永远年轻美丽。"),
         ("古风新年祝福语", "岁序更新，瑞雪迎春；愿君新岁皆顺遂，长安常乐。")]


@pytest.fixture
def tiny_checkpoint(transactional_db, tmp_path, settings):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    settings.RUNS_DIR = tmp_path / "runs"
    settings.STUDIO_RATE_LIMITS = {"user": 100, "ip": 100, "window": 60}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    data = tmp_path / "sft.json"
    data.write_text(json.dumps([{"instruction": q, "input": "", "output": r} for q, r in PAIRS * 3], ensure_ascii=False))
    call_command("train_model", preset="tiny", data=[str(data)], max_steps=3, stdout=StringIO())
    reset_backend()
    yield Checkpoint.objects.get(status="active")
    torch.set_num_threads(threads)


def start_worker(celery_processes):
    # a fixed seed: what the tiny model writes, and so what these tests meet, is the same on every run
    return celery_processes("worker", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", ZHUFU_GENERATION_SEED="20")


def wait_finished(pk, worker, timeout=120):
    def finished():
        return GenerationRequest.objects.get(pk=pk).is_finished
    try:
        wait_until(finished, timeout, describe=f"request {pk} to finish")
    except AssertionError:
        raise AssertionError(f"request {pk} did not finish; worker log:\n{worker.log_tail()}") from None
    return GenerationRequest.objects.get(pk=pk)


def test_real_worker_generates_a_request_made_through_the_api(tiny_checkpoint, celery_processes):
    writer, _ = create_user_with_role("wen", WRITER, "pw-wen-12345")
    client = Client()
    client.force_login(writer)
    worker = start_worker(celery_processes)
    response = client.post("/write/api/requests", data=json.dumps({"query": "给妈妈的生日祝福", "length": "短"}),
                           content_type="application/json")
    assert response.status_code == 201, response.content
    req = wait_finished(response.json()["id"], worker)
    assert req.status == "done", req.reason
    assert req.checkpoint_name == tiny_checkpoint.name and req.attempts == 1
    candidates = list(req.candidates.all())
    assert [c.index for c in candidates] == [0, 1, 2] and all(c.finished for c in candidates)
    texts = {c.text for c in candidates if c.text}
    stored = Greeting.objects.filter(source="model", checkpoint_name=tiny_checkpoint.name)
    assert stored.count() == len(texts) and set(stored.values_list("text", flat=True)) == texts
    assert {c.greeting_id for c in candidates if c.text} == set(stored.values_list("id", flat=True))
    detail = client.get(f"/write/api/requests/{req.pk}").json()
    assert detail["status"] == "done" and [c["text"] for c in detail["candidates"]] == [c.text for c in candidates]
    again = client.post("/write/api/requests", data=json.dumps({"query": "给妈妈的生日祝福", "length": "短"}),
                        content_type="application/json")
    repeat = wait_finished(again.json()["id"], worker)
    assert [c.text for c in repeat.candidates.all()] == [c.text for c in candidates]  # the worker's seed holds

    # The same generate-queue worker builds an annotation batch from the checkpoint's outputs.
    from webapp.annotation.models import BatchBuild
    from webapp.annotation.checkpoint_batches import create_batch_from_checkpoint

    batch = create_batch_from_checkpoint(tiny_checkpoint, ["七十生日祝福语", "古风新年祝福语"], n_per_prompt=2,
                                         kind="pairwise", k=2)
    try:
        wait_until(lambda: BatchBuild.objects.get(batch=batch).is_finished, 120,
                   describe="the annotation batch build")
    except AssertionError:
        raise AssertionError(f"build did not finish; worker log:\n{worker.log_tail()}") from None
    build = BatchBuild.objects.get(batch=batch)
    assert build.status == "done" and build.done == build.total == 2, build.reason
    items = list(batch.items.select_related("greeting", "greeting_b"))
    assert len(items) == build.summary["items"] and all(i.greeting.query_id == i.greeting_b.query_id for i in items)
    batch.refresh_from_db()
    assert batch.is_open and items


def test_browser_sign_in_write_copy_and_rate(tiny_checkpoint, celery_processes, browser, live_server):
    writer, _ = create_user_with_role("mei", WRITER, "pw-mei-123456")
    worker = start_worker(celery_processes)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20000)

    page.goto(f"{live_server.url}/accounts/login/?next=/write/")
    page.fill("input[name=username]", "mei")
    page.fill("input[name=password]", "pw-mei-123456")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("#write-form")
    page.fill("#id_query", "给妈妈的生日祝福")
    page.click("summary")
    page.select_option("#id_tone", "温馨")
    page.select_option("#id_length", "短")
    page.screenshot(path=str(SCREENSHOTS / "studio-write-desktop.png"), full_page=True)
    page.click("#write-form button[type=submit]")
    page.wait_for_selector("#cards")
    assert page.locator("#cards .card").count() == 3

    try:
        page.wait_for_selector("#cards[data-status=done] .actions", timeout=120000)
    except Exception:
        raise AssertionError(f"no finished cards; worker log:\n{worker.log_tail()}") from None
    req = GenerationRequest.objects.get(user=writer)
    assert req.status == "done"
    texts = [page.locator(f"#card-{i} [data-text]").text_content() for i in range(3)]
    assert texts == [c.text for c in req.candidates.all()]
    first = next(i for i, t in enumerate(texts) if t)

    card = page.locator(f"#card-{first}")
    card.locator("[data-copy]").click()
    card.locator(".copied").wait_for(state="visible")
    assert page.evaluate("navigator.clipboard.readText()") == texts[first]
    card.locator("button[value=up]").click()
    page.wait_for_selector(f"#card-{first} button[value=up][aria-pressed=true]")
    label = Label.objects.get(source_name=f"user:{writer.pk}:thumb")
    assert label.value == "good" and label.source_kind == "click"
    card = page.locator(f"#card-{first}")
    card.locator("[data-copy]").click()  # the swapped-in card still copies
    card.locator(".copied").wait_for(state="visible")
    page.screenshot(path=str(SCREENSHOTS / "studio-request-desktop.png"), full_page=True)

    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", device_scale_factor=2,
                                is_mobile=True, has_touch=True)
    cookies = context.cookies()
    phone.add_cookies(cookies)
    mobile = phone.new_page()
    mobile.goto(f"{live_server.url}/write/r/{req.pk}/")
    mobile.wait_for_selector("#cards[data-status=done]")
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    mobile.screenshot(path=str(SCREENSHOTS / "studio-request-phone.png"), full_page=True)
    mobile.goto(f"{live_server.url}/write/")
    mobile.click("summary")
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 390
    mobile.screenshot(path=str(SCREENSHOTS / "studio-write-phone.png"), full_page=True)
    phone.close()

    # Rewrite one candidate: it streams in place over SSE, the other two stay as they were.
    page.goto(f"{live_server.url}/write/r/{req.pk}/")
    page.wait_for_selector("#cards[data-status=done]")
    rewrite_and_watch(page, req, index=(first + 1) % 3, worker=worker, transport="stream")
    page.screenshot(path=str(SCREENSHOTS / "studio-rewrite-desktop.png"), full_page=True)
    # A stream that breaks (here: refused by the network) hands over to polling.
    page.route("**/stream", lambda route: route.abort())
    rewrite_and_watch(page, req, index=(first + 2) % 3, worker=worker, transport="cards")
    context.close()

    # Without EventSource the page polls its cards partial, and a rewrite still arrives.
    polling = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    polling.add_cookies(cookies)
    polling.add_init_script("delete window.EventSource;")
    page = polling.new_page()
    page.set_default_timeout(20000)
    page.goto(f"{live_server.url}/write/r/{req.pk}/")
    page.wait_for_selector("#cards[data-status=done]")
    rewrite_and_watch(page, req, index=first, worker=worker, transport="cards", stream_tried=False)
    polling.close()


WATCH_CARDS = """() => {
  window.notReloaded = true;
  window.seen = [];  // every text each card showed, in order
  const record = () => document.querySelectorAll('#cards .card').forEach(card => {
    const text = card.querySelector('[data-text]').textContent;
    const last = window.seen.filter(s => s[0] === card.id).pop();
    if (!last || last[1] !== text) window.seen.push([card.id, text]);
  });
  record();
  new MutationObserver(record).observe(document.querySelector('main') || document.body,
                                       {subtree: true, childList: true, characterData: true});
}"""


def rewrite_and_watch(page, req, *, index, worker, transport, stream_tried=True):
    """Click candidate `index`'s rewrite button; the new text must arrive without a reload,
    through `transport` ('stream': SSE, 'cards': htmx polling of the partial), others unchanged.
    `stream_tried=False`: the page must not even try the stream (no EventSource)."""
    before = {c.index: (c.text, c.share_token) for c in req.candidates.all()}
    urls = []
    page.on("request", lambda r: urls.append(r.url))
    page.evaluate(WATCH_CARDS)
    # Synchronise on the POST and on the database, not on a transient page state: a tiny model can
    # finish the rewrite before the page is ever seen "writing".
    with page.expect_response(lambda r: r.request.method == "POST" and "regenerate" in r.url):
        page.click(f"#card-{index} [data-rewrite]")

    def rewritten():
        req.refresh_from_db()
        return req.status in ("done", "failed") and req.rewrite_index is None

    try:
        wait_until(rewritten, 120, interval=0.3, describe="the rewrite to finish")
    except AssertionError:
        raise AssertionError(f"the rewrite did not finish; worker log:\n{worker.log_tail()}") from None
    assert req.status == "done", req.reason
    after = {c.index: (c.text, c.share_token) for c in req.candidates.all()}
    expect(page.locator(f"#card-{index} [data-text]")).to_have_text(after[index][0], timeout=30000)
    expect(page.locator("#cards")).to_have_attribute("data-status", "done", timeout=30000)
    page.wait_for_selector("#cards[data-status=done] .actions")
    assert page.evaluate("window.notReloaded") is True
    assert after[index][1] != before[index][1]  # a rewritten candidate gets a new share link
    for other in set(before) - {index}:
        assert after[other] == before[other]
    seen = page.evaluate("window.seen")
    shown = [text for card, text in seen if card == f"card-{index}"]
    assert shown[0] == before[index][0] and "" in shown and shown[-1] == after[index][0], shown
    for other in set(before) - {index}:
        assert {text for card, text in seen if card == f"card-{other}"} == {before[other][0]}
    assert page.locator(f"#card-{index} [data-text]").text_content() == after[index][0]
    used = [u for u in urls if f"/{req.pk}/" in u and transport in u.rsplit("/", 2)[-2:]]
    assert used, f"no {transport} request in {urls}"
    if not stream_tried:
        assert not [u for u in urls if u.endswith("/stream")]
    if transport == "stream":  # polling stands down while the stream is live: only the closing refresh
        polls = [u for u in urls if u.endswith(f"/r/{req.pk}/cards/")]
        assert len(polls) <= 1, polls

