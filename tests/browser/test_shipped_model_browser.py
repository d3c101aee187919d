"""The shipped model in the studio, as a writer meets it: a real Celery worker serves the committed
checkpoint (models/zhufu-small) through the one greeting path with its guards, and a real
Chromium asks for two greetings. Each gets three distinct candidates that name the asked occasion
and no other. The worker's seed is fixed, so what it writes is the same on every run. The demo's
default judge (the principled one) is active: each card shows its verdict and per-principle marks,
and the finished cards are ordered by its score, best first."""
import os

import pytest

from generation.guards import occasion_fit
from generation.requests import occasions_named, parse_request
from tests.conftest import REPO
from tests.browser.test_studio_live import SCREENSHOTS, start_worker
from webapp.checkpoints.serving import reset_backend
from webapp.checkpoints.services import register_shipped_model
from webapp.core.roles import WRITER, create_user_with_role
from webapp.studio.models import GenerationRequest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

REQUESTS = ("给我的猫写一句中秋祝福", "同事升职祝贺 简短")


@pytest.fixture
def shipped(transactional_db, settings):
    folder = REPO / "models" / "zhufu-small"
    settings.STUDIO_RATE_LIMITS = {"user": 100, "ip": 100, "window": 60}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    checkpoint, problem = register_shipped_model(folder)
    assert checkpoint is not None, f"the shipped model cannot be served: {problem}"
    reset_backend()
    return checkpoint


def ask(page, live_server, request: str, worker) -> list[str]:
    page.goto(f"{live_server.url}/write/")
    page.fill("#id_query", request)
    page.click("#write-form button[type=submit]")
    page.wait_for_selector("#cards")
    try:
        page.wait_for_selector("#cards[data-status=done] .actions", timeout=180000)
    except Exception:
        raise AssertionError(f"no finished cards for {request!r}; worker log:\n{worker.log_tail()}") from None
    return [page.locator(f"#card-{i} [data-text]").text_content() for i in range(3)]


def card_order(page) -> list[int]:
    return [int(i) for i in page.eval_on_selector_all("#cards .card", "cards => cards.map(c => c.dataset.index)")]


def test_the_shipped_model_writes_for_the_asked_occasion(shipped, default_judge, celery_processes, browser,
                                                         live_server):
    create_user_with_role("lan", WRITER, "pw-lan-123456")
    worker = start_worker(celery_processes)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN").new_page()
    page.set_default_timeout(20000)
    page.goto(f"{live_server.url}/accounts/login/?next=/write/")
    page.fill("input[name=username]", "lan")
    page.fill("input[name=password]", "pw-lan-123456")
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("#write-form")

    for number, request in enumerate(REQUESTS):
        texts = ask(page, live_server, request, worker)
        page.screenshot(path=str(SCREENSHOTS / f"shipped-model-{number}.png"), full_page=True)
        occasion = parse_request(request).occasion
        assert len(set(texts)) == 3 and all(texts), texts
        for text in texts:
            assert occasion_fit(occasion, text), (request, text, sorted(occasions_named(text)))
        req = GenerationRequest.objects.filter(query=request).latest("created_at")
        assert req.checkpoint_name == shipped.name and req.slots["occasion"] == occasion
        assert occasion in page.locator("#slots").text_content()  # the card says what it wrote for
        # the demo's judge gave every card a verdict with its marks, and the cards are best first
        records = {c.index: c.checks["judge"] for c in req.candidates.all()}
        assert {r["judge"] for r in records.values()} == {default_judge.name}
        assert card_order(page) == sorted(records, key=lambda i: -records[i]["score"])
        for index, record in records.items():
            card = page.locator(f"#card-{index}")
            assert card.locator(".verdict").get_attribute("data-verdict") == record["verdict"]
            assert card.locator(".mark").count() == len(record["principles"]) == 5
            failed = [m for m in record["principles"] if not m["passed"]]
            assert card.locator(".mark.fail").count() == len(failed)
            for mark in failed:
                assert mark["reason"] in card.locator(f'[data-principle="{mark["name"]}"]').text_content()
