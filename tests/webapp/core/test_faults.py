"""Faults against a real private stack (bench/stack.py): its own PostgreSQL and Redis on free
ports, uvicorn, a Celery worker and beat. Redis is SIGKILLed and restarted (persistence off, so
queued messages are lost), PostgreSQL is crashed and restarted, the worker is SIGKILLed in the
middle of a generation and a training run. Each time: nothing lost, nothing written twice,
clean 503s while a part is down, and everything reconnects."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import GREETINGS, wait_until

pytestmark = pytest.mark.services

PASSWORD = "pw-faults-12345"
# Short recovery timings so the sweep acts within seconds (production: 15 s / 120 s / 60 s).
FAST_RECOVERY = dict(STUDIO_RECOVERY_SECONDS="1", STUDIO_QUEUED_GRACE_SECONDS="3", STUDIO_LEASE_SECONDS="4",
                     ZHUFU_HEARTBEAT_STALE_AFTER="20")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from bench.stack import Stack

    root = tmp_path_factory.mktemp("faults")
    stack = Stack(root / "stack", **FAST_RECOVERY)
    try:
        stack.start_services()
        for name in ("web", "worker", "beat"):  # they start while the tiny model trains
            stack.start(name)
        corpus = root / "sft.json"
        corpus.write_text(json.dumps([{"instruction": q, "input": "", "output": r} for q, r in GREETINGS * 3],
                                     ensure_ascii=False))
        stack.corpus = corpus
        stack.shell(
            "from django.core.management import call_command; from webapp.core.roles import WRITER, "
            "create_user_with_role; "
            f"call_command('train_model', preset='tiny', data=['{corpus}'], max_steps=3); "
            f"create_user_with_role('faulty', WRITER, '{PASSWORD}')")
        stack.wait_for_web()
        yield stack
    finally:
        stack.close()


def ensure(stack, *names):
    for name in names:
        process = stack.processes.get(name)
        if process is None or process.proc.poll() is not None:
            stack.start(name)
    if "web" in names:
        stack.wait_for_web()


def signed_in(stack) -> requests.Session:
    session = requests.Session()
    session.get(f"{stack.web_url}/accounts/login/", timeout=10)
    response = session.post(f"{stack.web_url}/accounts/login/", timeout=30, allow_redirects=False, data={
        "username": "faulty", "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert response.status_code == 302, response.text[:500]
    return session


def submit(stack, session, **fields) -> requests.Response:
    return session.post(f"{stack.web_url}/write/api/requests", json={"query": "给妈妈的生日祝福", **fields},
                        headers={"X-CSRFToken": session.cookies["csrftoken"]}, timeout=30)


def request_row(stack, pk) -> dict:
    with stack.pg.connect() as conn:
        status, attempts, reason = conn.execute(
            "SELECT status, attempts, reason FROM studio_generationrequest WHERE id=%s", (pk,)).fetchone()
        candidates = conn.execute("SELECT index, text, finished, greeting_id FROM studio_candidate "
                                  "WHERE request_id=%s ORDER BY index", (pk,)).fetchall()
        greetings = conn.execute("SELECT count(*) FROM corpus_greeting WHERE meta->>'studio_request' = %s",
                                 (str(pk),)).fetchone()[0]
    return {"status": status, "attempts": attempts, "reason": reason, "candidates": candidates, "greetings": greetings}


def wait_finished(stack, pk, timeout=90) -> dict:
    def finished():
        try:
            row = request_row(stack, pk)
        except Exception:  # noqa: BLE001 - the database may still be coming back
            return None
        return row if row["status"] in ("done", "failed") else None

    try:
        return wait_until(finished, timeout, 0.3, f"request {pk} to finish")
    except AssertionError:
        logs = "\n".join(f"--- {n}\n{p.log_tail(2500)}" for n, p in stack.processes.items())
        raise AssertionError(f"request {pk} did not finish: {request_row(stack, pk)}\n{logs}") from None


def assert_written_once(row, n):
    """Done, exactly n finished candidates, each non-empty one stored as one corpus greeting."""
    assert row["status"] == "done", row
    candidates = row["candidates"]
    assert [c[0] for c in candidates] == list(range(n)), candidates
    assert all(c[2] for c in candidates), candidates
    texts = {c[1] for c in candidates if c[1]}
    assert all(c[3] is not None for c in candidates if c[1]), candidates
    assert row["greetings"] == len(texts), row


def beat_sends(stack) -> int:
    return stack.processes["beat"].log_path.read_text(errors="replace").count("studio-recover-lost-requests")


def test_redis_restart_loses_no_request_and_everything_reconnects(stack):
    ensure(stack, "web", "worker", "beat")
    session = signed_in(stack)
    stack.kill("worker")  # idle, nothing in flight: the request waits in Redis, as behind a busy worker
    response = submit(stack, session, n=2, length="短")
    assert response.status_code == 201, response.text
    pk = response.json()["id"]
    assert stack.redis.queue_length("generate") == 1

    stack.redis.kill()  # persistence is off: the queued message dies with it
    outage = submit(stack, session)
    assert outage.status_code == 503 and "unavailable" in outage.json()["error"], outage.text
    stack.redis.start()
    assert stack.redis.queue_length("generate") == 0
    restarted = time.time()
    sends_before = beat_sends(stack)

    stack.start("worker")
    row = wait_finished(stack, pk)
    assert_written_once(row, 2)
    assert row["attempts"] == 1  # re-sent by the recovery sweep, written once
    assert beat_sends(stack) > sends_before  # beat reconnected to the broker and kept scheduling

    # A worker that was connected through a Redis restart reconnects and takes new work.
    stack.redis.kill()
    time.sleep(1)
    stack.redis.start()
    again = submit(stack, session, n=1, length="短")
    assert again.status_code == 201, again.text
    assert_written_once(wait_finished(stack, again.json()["id"]), 1)
    stack.wait_for_heartbeat("worker", after=restarted)
    stack.wait_for_heartbeat("beat", after=restarted)
    assert stack.processes["beat"].proc.poll() is None and stack.processes["web"].proc.poll() is None


def test_worker_sigkill_mid_generation_completes_once(stack):
    ensure(stack, "web", "worker", "beat")
    session = signed_in(stack)
    warm = submit(stack, session, n=1, length="短")  # loads the model in the worker first
    wait_finished(stack, warm.json()["id"])

    response = submit(stack, session, n=5, length="长")
    assert response.status_code == 201, response.text
    pk = response.json()["id"]
    wait_until(lambda: request_row(stack, pk)["status"] != "queued", 30, 0.01, "the worker to claim the request")
    stack.kill("worker")  # SIGKILL to the worker's process group, mid-run
    at_kill = request_row(stack, pk)
    assert at_kill["status"] == "running", f"the run ended before the kill: {at_kill}"

    stack.start("worker")
    row = wait_finished(stack, pk)
    assert_written_once(row, 5)
    assert row["attempts"] == 2  # the killed attempt and the one that finished


def test_postgres_restart_fails_cleanly_and_recovers(stack):
    ensure(stack, "web", "worker", "beat")
    session = signed_in(stack)
    pks = [submit(stack, session, n=3, length="长").json()["id"] for _ in range(3)]
    wait_until(lambda: request_row(stack, pks[0])["status"] != "queued", 30, 0.01, "the first request to start")
    stack.pg.stop("immediate")  # a crash: no shutdown checkpoint, recovery on start
    try:
        page = session.get(f"{stack.web_url}/write/", timeout=30)
        api = submit(stack, session)
        health = requests.get(f"{stack.web_url}/healthz", timeout=30)
    finally:
        time.sleep(1)
        stack.pg.start()
    restarted = time.time()
    assert page.status_code == 503 and "unavailable" in page.text and "Traceback" not in page.text, page.text[:500]
    assert api.status_code == 503 and api.json()["unavailable"] == "database", api.text
    assert health.status_code == 503

    for pk in pks:  # each one complete, or failed with its reason: never half-written
        row = wait_finished(stack, pk)
        if row["status"] == "failed":
            assert row["reason"], row
        else:
            assert_written_once(row, 3)
    assert session.get(f"{stack.web_url}/write/", timeout=30).status_code == 200
    after = submit(stack, session, n=1, length="短")
    assert after.status_code == 201, after.text
    assert_written_once(wait_finished(stack, after.json()["id"]), 1)
    stack.wait_for_heartbeat("worker", after=restarted)
    stack.wait_for_heartbeat("beat", after=restarted)


def checkpoints(stack) -> list[tuple]:
    with stack.pg.connect() as conn:
        return conn.execute("SELECT id, name, status, path FROM checkpoints_checkpoint ORDER BY id").fetchall()


def test_sigkill_during_training_leaves_the_active_checkpoint_untouched(stack):
    """train_and_register killed between saves (the jobs system's resume after a killed worker is
    tests/webapp/jobs/test_jobs_worker.py's): nothing registered, the active checkpoint still active and loadable."""
    from bench.stack import REPO
    from generation.checkpoint import check_checkpoint

    before = checkpoints(stack)
    active = [c for c in before if c[2] == "active"]
    assert len(active) == 1
    runs = stack.var_dir / "runs"
    known = set(runs.iterdir())
    trainer = subprocess.Popen([sys.executable, "manage.py", "train_model", "--preset", "tiny", "--data",
                                str(stack.corpus), "--promote"], cwd=REPO, env=stack.env(), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def saved_state():
            new = [p for p in runs.iterdir() if p not in known]
            return new and (new[0] / "state").is_dir() and new[0]

        run_dir = wait_until(saved_state, 120, 0.05, "the training run to save its first state")
    finally:
        os.killpg(trainer.pid, signal.SIGKILL)
        trainer.wait(timeout=30)
    assert not (run_dir / "checkpoint").exists()
    assert checkpoints(stack) == before  # nothing registered, the active one still active
    check_checkpoint(Path(active[0][3]))  # and its folder still loads
