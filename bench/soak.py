"""Soak: writers, annotators and training jobs together for a long bounded run, watching memory.

    python -m bench.soak [--duration 600] [--writers 5] [--annotators 5] [--browsers 10] [--json]

The private stack of bench.load (PostgreSQL, Redis, uvicorn, a prefork worker with 2 processes,
beat) plus the starter corpus and a pointwise annotation batch (k=3). For --duration seconds:
writers generate (half watching over SSE, half polling) and browse; annotators open their batch and
submit ratings (rubric and verdict) as fast as a person would (--think); an admin keeps one
training job running through the jobs system (POST /train/start/): by default an RLAIF `grpo` job
(a few GRPO steps from the active checkpoint, rewarded by a TF-IDF judge trained on the starter
pairs at set-up), or `--job-kind sft`; the next starts when one ends. Reported: throughput and
p50/p95/p99 per page kind, generations completed, ratings saved, jobs finished, errors, and the RSS
of the web and worker process trees (worker = the main process and its pool) over time: the mean
of the first third against the last third (goal: flat).
"""
from __future__ import annotations

import argparse
import random
import re
import sys
import time
from functools import partial

from bench.load import add_run_arguments, run_and_report, sign_in
from webapp.annotation.rubric import RUBRIC_KEYS, RUBRIC_MAX, RUBRIC_MIN

SUBMIT_ACTION = re.compile(r'action="(/annotate/assignment/\d+/submit/)"')
BATCH_LINK = re.compile(r'href="(/annotate/batch/\d+/)"')


def annotate(base: str, rec, stop_at: float, *, username: str, think: float, seed: int):
    """One annotator: open the batch, rate the item shown, repeat; counts ratings saved."""
    rng = random.Random(seed)
    session = sign_in(base, username)
    home = rec.timed("annotate-home", session, "GET", f"{base}/annotate/")
    match = BATCH_LINK.search(home.text if home is not None else "")
    if match is None:
        rec.error("annotate-home", "no open batch linked")
        return
    batch_url = base + match.group(1)
    while time.monotonic() < stop_at:
        page = rec.timed("annotate-page", session, "GET", batch_url)
        action = SUBMIT_ACTION.search(page.text) if page is not None and page.status_code == 200 else None
        time.sleep(rng.uniform(0.5, 1.5) * think)  # reading the greeting
        if action is None:
            continue  # nothing left for this annotator: keep browsing the batch page
        data = {key: rng.randint(RUBRIC_MIN, RUBRIC_MAX) for key in RUBRIC_KEYS}
        data.update(verdict=rng.choice(["good", "bad"]), seconds=round(think, 1),
                    csrfmiddlewaretoken=session.cookies["csrftoken"])
        response = rec.timed("annotate-submit", session, "POST", base + action.group(1), ok=(200, 302), data=data,
                             allow_redirects=False)
        if response is not None and response.status_code in (200, 302):
            rec.count("ratings saved")


def job_form(kind: str, preset: str, steps: int, seed: int) -> dict:
    """The /train/start/ form for an RLAIF step (GRPO from the active checkpoint, rewarded by the active
    judge, on the starter queries) or a supervised run."""
    if kind == "grpo":
        return {"kind": "grpo", "grpo-steps": steps, "grpo-prompts_per_step": 2, "grpo-max_new_tokens": 32,
                "grpo-seed": seed}
    return {"kind": "sft", "sft-preset": preset, "sft-data_source": "starter", "sft-max_steps": steps, "sft-seed": seed}


def keep_training(base: str, rec, stop_at: float, *, stack, kind: str, preset: str, steps: int):
    """One admin keeps a training job running through the jobs pages until the end."""
    session = sign_in(base, "trainer")
    seed = 0
    while time.monotonic() < stop_at:
        seed += 1
        response = rec.timed("job-start", session, "POST", f"{base}/train/start/", ok=(302,), allow_redirects=False,
                             data={**job_form(kind, preset, steps, seed),
                                   "csrfmiddlewaretoken": session.cookies["csrftoken"]})
        if response is None or response.status_code != 302:
            time.sleep(5)
            continue
        pk = int(re.search(r"/jobs/(\d+)/", response.headers["Location"]).group(1))
        started = time.perf_counter()
        status = "running"
        while status in ("queued", "running") and time.monotonic() < stop_at + 120:
            time.sleep(2)
            rec.timed("job-page", session, "GET", f"{base}/train/jobs/{pk}/")
            with stack.pg.connect() as conn:
                status = conn.execute("SELECT status FROM jobs_trainingjob WHERE id=%s", (pk,)).fetchone()[0]
        rec.sample("job seconds", time.perf_counter() - started)
        rec.count(f"jobs {status}")
        if status not in ("succeeded", "queued", "running"):
            rec.error("job", f"job {pk} {status}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, duration=600, browsers=10, writers=5, think=2.0)
    parser.add_argument("--annotators", type=int, default=5)
    parser.add_argument("--job-kind", choices=["grpo", "sft"], default="grpo",
                        help="grpo: RLAIF steps against a TF-IDF judge trained at set-up; sft: supervised runs")
    parser.add_argument("--job-preset", default="tiny", help="the sft preset")
    parser.add_argument("--job-steps", type=int, default=None, help="steps per job (default: grpo 20, sft 100)")
    args = parser.parse_args(argv)
    annotators = [f"annotator{i}" for i in range(args.annotators)]
    steps = args.job_steps or (20 if args.job_kind == "grpo" else 100)

    def extra_threads(stack):
        return [*(partial(annotate, username=name, think=args.think, seed=i) for i, name in enumerate(annotators)),
                partial(keep_training, stack=stack, kind=args.job_kind, preset=args.job_preset, steps=steps)]

    return run_and_report(args, extra_threads=extra_threads, also_print=("counts", "samples"), annotators=annotators,
                          admins=["trainer"], annotation_batch=True, judge=args.job_kind == "grpo")


if __name__ == "__main__":
    sys.exit(main())
