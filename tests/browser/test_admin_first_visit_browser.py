"""An admin's first visit in a real Chromium, from the sign-in page on, by clicks only (no URL typed
after the login page): upload a prompt set and start an evaluate job from dropdowns, a real Celery
worker runs it, the result page flags what is wrong; then the alignment page's empty state leads
to judging the rated greetings, and the page fills. Screenshots go to var/screenshots/."""
import json
import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import GREETINGS, REPO
from tests.webapp.annotation.test_annotation_services import annotators, pointwise_batch, rate
from tests.webapp.jobs.test_jobs import purge_broker_queues
from training.trainer import TrainConfig, train_model
from webapp.annotation import services as annotation_services
from webapp.checkpoints.services import promote_checkpoint, register_checkpoint
from webapp.core.roles import ADMIN, create_user_with_role
from webapp.jobs.datafiles import upload_dir
from webapp.jobs.models import TrainingJob
from webapp.judges.services import register_judge

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

SCREENSHOTS = REPO / "var" / "screenshots"
PROMPTS = "给妈妈的生日祝福\n同事升职祝福\n中秋节给朋友的祝福\n"
STRICT_JUDGE = "len-strict"  # Good only from 500 characters: every greeting fails, so the result has problems


def tiny_active_checkpoint(tmp_path):
    data = tmp_path / "sft.json"
    data.write_text(json.dumps([{"instruction": q, "input": "", "output": r} for q, r in GREETINGS * 3],
                               ensure_ascii=False), encoding="utf-8")
    trained = train_model(TrainConfig(preset="tiny", data_paths=[data], out_dir=tmp_path / "sft", progress_bar=False))
    folder = Path(trained.checkpoint_dir)
    return promote_checkpoint(register_checkpoint(
        name="tiny-first-visit", run_name="tiny-first-visit", path=str(folder), preset="tiny",
        model_config=json.loads((folder / "config.json").read_text()), data=trained.data, metrics={}))


def rated_greetings():
    batch = pointwise_batch(n_items=3, k=1)
    (person,) = annotators(1)
    for verdict in ("good", "bad", "good"):
        rate(annotation_services.next_assignment(batch, person), person, verdict=verdict)


def sign_in(browser, live_server, username, password):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.set_default_timeout(15000)
    page.goto(f"{live_server.url}/accounts/login/")  # the only URL typed
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_load_state()
    return page


def wait_status(page, status: str, timeout_ms: int = 180_000):
    page.wait_for_selector(f'#job-live[data-status="{status}"]', timeout=timeout_ms)


@pytest.mark.django_db(transaction=True)
def test_admin_first_visit_evaluates_from_dropdowns_reads_the_flags_and_fills_alignment(
        browser, live_server, celery_processes, settings, tmp_path, one_thread):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    purge_broker_queues()
    worker = celery_processes("worker", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    tiny_active_checkpoint(tmp_path)
    register_judge(kind="length", name=STRICT_JUDGE, config={"threshold": 500})  # registered, not active
    rated_greetings()
    create_user_with_role("boss", ADMIN, "pw-first-visit-1")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    upload = tmp_path / "first-visit-prompts.txt"
    upload.write_text(PROMPTS, encoding="utf-8")
    uploaded = []
    try:
        page = sign_in(browser, live_server, "boss", "pw-first-visit-1")
        page.click('a[href="/train/"]')  # the menu's Train entry
        page.wait_for_selector("h1:has-text('Training jobs')")
        page.click("text=Start a job")
        page.wait_for_selector("#kind-index")
        page.screenshot(path=str(SCREENSHOTS / "admin-start-index.png"), full_page=True)
        page.click("#kind-evaluate a")
        page.wait_for_selector("#start-evaluate")

        # A prompt set of our own: uploaded, then chosen in the dropdown for us.
        page.set_input_files("#id_upload_file", str(upload))
        page.click("#upload-file")
        page.wait_for_selector("#start-evaluate")
        chosen = page.locator("#id_evaluate-prompts_file option:checked")
        expect(chosen).to_have_text("uploads / first-visit-prompts.txt")
        uploaded.append(Path(page.input_value("#id_evaluate-prompts_file")))
        assert page.locator('input[type="text"][name^="evaluate-"][name$="_file"]').count() == 0  # no typed paths
        page.select_option("#id_evaluate-checkpoint", "tiny-first-visit")
        page.select_option("#id_evaluate-judge", STRICT_JUDGE)
        page.fill("#id_evaluate-samples", "1")
        page.screenshot(path=str(SCREENSHOTS / "admin-evaluate-form.png"), full_page=True)
        page.click("#start-evaluate")
        page.wait_for_url("**/train/jobs/*/")
        job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
        try:
            wait_status(page, "succeeded")
        except Exception as exc:
            job = TrainingJob.objects.get(pk=job_id)
            raise AssertionError(f"evaluate did not finish ({exc}): {job.status} {job.error}\n{worker.log_tail()}")

        # The result reads as tables and says what is wrong, with the bar.
        problems = page.locator("#result-problems")
        expect(problems).to_be_visible()
        expect(problems).to_contain_text("pass_rate")
        expect(problems).to_contain_text("most greetings fail the judge")
        expect(page.locator('#result-table tr[data-metric="pass_rate"]')).to_have_class("flagged")
        novelty = page.locator('#result-table tr[data-metric="novelty"]')
        expect(novelty).to_be_visible()
        if novelty.get_attribute("class") == "flagged":  # a tiny model may copy its training greetings
            expect(problems).to_contain_text("promotion gate")
        assert page.locator("#result-samples tbody tr").count() == 3  # one row per request
        expect(page.locator("#result-samples")).to_contain_text("同事升职祝福")
        page.screenshot(path=str(SCREENSHOTS / "admin-evaluate-result.png"), full_page=True)

        # Alignment: empty, and it says what fills it.
        page.click("nav.train-nav >> text=Alignment")
        page.wait_for_selector("#alignment-empty")
        expect(page.locator("#alignment-empty")).to_contain_text("3 greetings are rated")
        page.screenshot(path=str(SCREENSHOTS / "admin-alignment-empty.png"), full_page=True)
        page.click("#alignment-judge-rated-start")
        page.wait_for_selector("#start-judge_rated")
        page.select_option("#id_judge_rated-judge", STRICT_JUDGE)
        page.click("#start-judge_rated")
        page.wait_for_url("**/train/jobs/*/")
        wait_status(page, "succeeded", timeout_ms=60_000)
        page.click("#result-alignment")
        page.wait_for_selector("h1:has-text('alignment')")
        assert page.locator("#alignment-empty").count() == 0
        expect(page.locator("body")).to_contain_text(STRICT_JUDGE)
        page.screenshot(path=str(SCREENSHOTS / "admin-alignment-filled.png"), full_page=True)
    finally:
        for path in uploaded:
            path.unlink(missing_ok=True)
        (upload_dir() / upload.name).unlink(missing_ok=True)
        worker.kill()
