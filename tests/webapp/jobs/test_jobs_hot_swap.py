"""Serving hot swap: after a promotion (what a training job or the rollback button does) the
next request of a process gets the new checkpoint's engine, while a generation already in
flight finishes on the old engine, unchanged, in another thread."""
import threading
import time

import pytest

from generation.engine import SamplingParams
from webapp.checkpoints import serving
from webapp.checkpoints.services import rollback
from webapp.checkpoints.services import promote_checkpoint
from webapp.checkpoints.training import train_and_register

pytestmark = pytest.mark.usefixtures("one_thread")
QUERY = "七十生日祝福语"


@pytest.fixture(autouse=True)
def fresh_backend():
    serving.reset_backend()
    yield
    serving.reset_backend()


def params() -> SamplingParams:
    # ignore_eos: every candidate runs its full length, so the request is surely in flight at the swap
    return SamplingParams(n=2, max_tokens=24, temperature=0.8, seed=7, ignore_eos=True)


def collect(events) -> tuple[list[str], list[str]]:
    texts, reasons = ["", ""], ["", ""]
    for event in events:
        texts[event.candidate_index] += event.text_delta
        if event.finished:
            reasons[event.candidate_index] = event.finish_reason
    return texts, reasons


@pytest.mark.django_db
def test_in_flight_generation_finishes_on_the_old_engine_while_new_requests_use_the_new_one(corpus_file, runs_dir):
    first = train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=3, seed=0)
    second = train_and_register(preset="tiny", data_paths=[corpus_file], max_steps=3, seed=1)
    assert first.status == "active" and second.status == "candidate"
    reference = serving.build_backend(first).generate(serving.build_backend(first).greeting_prompt(QUERY), params())

    old = serving.get_backend()
    assert old.checkpoint_name == first.name
    started, swapped, outcome = threading.Event(), threading.Event(), {}

    def in_flight_request():
        events = []
        stream = old.stream(old.greeting_prompt(QUERY), params())
        for event in stream:
            events.append(event)
            if len(events) == 2:
                started.set()
                swapped.wait(timeout=60)  # hold the request open across the promotion
            time.sleep(0.001)
        outcome["texts"], outcome["reasons"] = collect(events)

    thread = threading.Thread(target=in_flight_request)
    thread.start()
    assert started.wait(timeout=60)
    promote_checkpoint(second)
    new = serving.get_backend()  # the very next request
    assert new is not old and new.checkpoint_name == second.name
    new_texts = new.generate(new.greeting_prompt(QUERY), params())
    swapped.set()
    thread.join(timeout=60)

    assert outcome["reasons"] == ["length", "length"]  # completed, not cancelled or dropped
    assert outcome["texts"] == reference  # exactly what the old checkpoint alone produces
    assert all(new_texts) and new_texts != reference

    # one-click rollback swaps back the same way
    assert rollback() == first
    assert serving.get_backend().checkpoint_name == first.name
