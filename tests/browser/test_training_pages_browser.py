"""An admin in a real Chromium starts a tiny SFT job from /train/start/, a real Celery worker
trains it, and the job page's progress bar reaches 100% with the loss curve drawn. Then a long
job is cancelled from its page and a job on unreadable data fails with its reason; neither
changes the active checkpoint. Screenshots go to var/screenshots/."""
import os

import pytest
from playwright.sync_api import expect

from tests.conftest import REPO
from tests.browser.test_annotation_browser import logged_in_page
from tests.webapp.jobs.test_jobs import purge_broker_queues
from webapp.checkpoints.models import Checkpoint
from webapp.core.roles import ADMIN, create_user_with_role
from webapp.jobs.models import TrainingJob

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop

SCREENSHOTS = REPO / "var" / "screenshots"


def start_sft_from_page(page, live_server, data_path, max_steps: int) -> int:
    page.goto(f"{live_server.url}/train/start/sft/")
    page.select_option("#id_sft-preset", "tiny")
    page.select_option("#id_sft-data_source", "file")
    page.select_option("#id_sft-data_path", str(data_path.resolve()))  # a dropdown of the data folders' files
    page.fill("#id_sft-max_steps", str(max_steps))
    page.check("#id_sft-promote")
    page.click("#start-sft")
    page.wait_for_url("**/train/jobs/*/")
    return int(page.url.rstrip("/").rsplit("/", 1)[1])


def wait_status(page, status: str, timeout_ms: int = 120_000):
    page.wait_for_selector(f'#job-live[data-status="{status}"]', timeout=timeout_ms)


@pytest.mark.django_db(transaction=True)
def test_admin_trains_watches_cancels_and_sees_a_failure(browser, live_server, celery_processes, corpus_file,
                                                         settings, tmp_path):
    settings.TRAINING_DATA_DIRS = [tmp_path]
    purge_broker_queues()
    worker = celery_processes("worker", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    admin, _ = create_user_with_role("boss", ADMIN)
    page = logged_in_page(browser, live_server, admin)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{live_server.url}/")
    page.click("text=训练 Train")
    page.wait_for_selector("h1:has-text('Training jobs')")

    job_id = start_sft_from_page(page, live_server, corpus_file, max_steps=30)
    try:
        expect(page.locator("#job-percent")).to_have_text("100%", timeout=120_000)
        wait_status(page, "succeeded")
    except Exception as exc:
        raise AssertionError(f"job did not finish ({exc}): {TrainingJob.objects.get(pk=job_id).status}\n{worker.log_tail()}")
    assert page.get_attribute("#job-progress", "value") == "100"
    page.wait_for_selector('#job-curves svg[data-metric="loss"] polyline')
    page.screenshot(path=str(SCREENSHOTS / "train-job-done.png"), full_page=True)
    first = Checkpoint.objects.get(status="active")
    assert first.name == TrainingJob.objects.get(pk=job_id).result["checkpoint"]

    # A long job, cancelled from its page once it is under way.
    long_id = start_sft_from_page(page, live_server, corpus_file, max_steps=5000)
    page.wait_for_selector("#job-curves svg", timeout=90_000)  # steps are being reported
    page.click("#cancel-job")
    wait_status(page, "cancelled", timeout_ms=60_000)
    assert "cancelled" in page.text_content("#job-error")
    cancelled = TrainingJob.objects.get(pk=long_id)
    assert cancelled.status == "cancelled" and cancelled.progress < 1

    # Unreadable data: the job fails with the reason on its page.
    broken = tmp_path / "broken.json"
    broken.write_text("{ this is not a corpus")
    failed_id = start_sft_from_page(page, live_server, broken, max_steps=5)
    wait_status(page, "failed", timeout_ms=60_000)
    reason = page.text_content("#job-error")
    assert "training data" in reason or "corpus" in reason, reason
    page.screenshot(path=str(SCREENSHOTS / "train-job-failed.png"), full_page=True)

    assert TrainingJob.objects.get(pk=failed_id).status == "failed"
    assert Checkpoint.objects.get(status="active") == first and Checkpoint.objects.count() == 1
    worker.kill()  # nothing left to do: skip the slow warm shutdown
