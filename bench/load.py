"""Load on loopback: browsing users and generating users against a real private stack.

    python -m bench.load [--duration 60] [--browsers 50] [--writers 10] [--think 1.0] [--json]

Starts its own PostgreSQL, Redis, uvicorn (as `make demo` runs it), a Celery worker (prefork, 2
processes, as the demo) and beat (bench/stack.py), trains a `tiny` checkpoint, signs the users in,
then for --duration seconds: browsers cycle through /write/, /write/history/ and the status page
with --think seconds between pages; writers submit a request (n=3) and watch it like the page
does, half over server-sent events (the page's default) and half by polling the cards fragment
every 1.5 s (the page's htmx fallback), then think and repeat. Reported: requests/s and
p50/p95/p99 latency per page kind, generations completed, time to first visible token and to done
(SSE vs polling side by side, with their ratio), errors, and web/worker memory. Everything stops
by itself; generations still running at the end get --drain seconds to finish.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import requests

from bench.stack import Stack, rss_bytes

PASSWORD = "pw-bench-12345"
POLL_SECONDS = 1.5  # the cards fragment's hx-trigger interval
BROWSE_PAGES = (("write", "/write/"), ("history", "/write/history/"), ("status", "/"))
TEXT = re.compile(r"data-text>([^<]+)<")
QUERIES = ["给妈妈的生日祝福", "古风新年祝福语", "同事升职祝福", "朋友乔迁祝福", "高考加油的话", "七十生日祝福语"]


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


@dataclass
class Recorder:
    """Thread-safe samples: latency per kind, errors per kind, generation timings per watch mode."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    generations: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, kind: str, session: requests.Session, method: str, url: str, ok=(200,), **kwargs):
        started = time.perf_counter()
        try:
            response = session.request(method, url, timeout=60, **kwargs)
        except requests.RequestException as exc:
            self.error(kind, f"{type(exc).__name__}")
            return None
        elapsed = time.perf_counter() - started
        with self.lock:
            self.latencies[kind].append(elapsed)
        if response.status_code not in ok:
            detail = ""
            if response.status_code >= 500 and "json" in response.headers.get("Content-Type", ""):
                detail = f" ({response.json().get('unavailable', '')})"
            elif response.status_code >= 500:
                detail = f" ({re.sub(r'<[^>]+>', ' ', response.text)[:120].strip()})"
            self.error(kind, f"HTTP {response.status_code}{detail}")
        return response

    def error(self, kind: str, what: str) -> None:
        with self.lock:
            self.errors[kind].append(what)

    def generation(self, record: dict) -> None:
        with self.lock:
            self.generations.append(record)

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def sample(self, what: str, value: float) -> None:
        with self.lock:
            self.samples[what].append(value)


def sign_in(base: str, username: str) -> requests.Session:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=30)
    response = session.post(f"{base}/accounts/login/", allow_redirects=False, timeout=60, data={
        "username": username, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    if response.status_code != 302:
        raise RuntimeError(f"{username} could not sign in: HTTP {response.status_code}")
    return session


def browse(base: str, session: requests.Session, rec: Recorder, stop_at: float, think: float, rng: random.Random):
    while time.monotonic() < stop_at:
        kind, path = rng.choice(BROWSE_PAGES)
        rec.timed(kind, session, "GET", base + path)
        time.sleep(rng.uniform(0.5, 1.5) * think)


def watch_sse(base: str, session: requests.Session, pk: int, started: float, deadline: float) -> dict:
    first = None
    with session.get(f"{base}/write/api/requests/{pk}/stream", stream=True, timeout=120) as response:
        event = ""
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "progress" and first is None:
                state = json.loads(line[6:])
                if any(c["text"] for c in state["candidates"]):
                    first = time.perf_counter() - started
            elif line.startswith("data: ") and event == "end":
                return {"first": first, "done": time.perf_counter() - started, "status": json.loads(line[6:])["status"]}
            if time.monotonic() > deadline:
                break
    return {"first": first, "done": None, "status": "unfinished"}


def watch_polling(base: str, session: requests.Session, pk: int, started: float, deadline: float,
                  rec: Recorder) -> dict:
    first = None
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        response = rec.timed("cards-poll", session, "GET", f"{base}/write/r/{pk}/cards/")
        if response is None or response.status_code != 200:
            continue
        if first is None and any(t.strip() for t in TEXT.findall(response.text)):
            first = time.perf_counter() - started
        status = re.search(r'data-status="(\w+)"', response.text)
        if status and status.group(1) in ("done", "failed"):
            return {"first": first, "done": time.perf_counter() - started, "status": status.group(1)}
    return {"first": first, "done": None, "status": "unfinished"}


def write(base: str, session: requests.Session, rec: Recorder, stop_at: float, drain_until: float, think: float,
          mode: str, rng: random.Random):
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        response = rec.timed("create", session, "POST", f"{base}/write/api/requests", ok=(201,),
                             json={"query": rng.choice(QUERIES)}, headers={"X-CSRFToken": session.cookies["csrftoken"]})
        if response is None or response.status_code != 201:
            time.sleep(think)
            continue
        pk = response.json()["id"]
        try:
            if mode == "sse":
                result = watch_sse(base, session, pk, started, drain_until)
            else:
                result = watch_polling(base, session, pk, started, drain_until, rec)
        except requests.RequestException as exc:
            rec.error(f"watch-{mode}", type(exc).__name__)
            result = {"first": None, "done": None, "status": "unfinished"}
        rec.generation({"id": pk, "mode": mode, **result})
        if result["status"] != "done":
            rec.error("generation", f"request {pk} {result['status']}")
        time.sleep(rng.uniform(0.5, 1.5) * think)


class MemorySampler(threading.Thread):
    """RSS of the web and worker process trees every `every` seconds."""

    def __init__(self, stack: Stack, every: float = 2.0):
        super().__init__(daemon=True)
        self.stack, self.every, self.samples, self.stopped = stack, every, [], threading.Event()

    def run(self):
        started = time.monotonic()
        while not self.stopped.wait(self.every):
            self.samples.append({"t": round(time.monotonic() - started, 1), **{
                name: rss_bytes(self.stack.processes[name].proc.pid) for name in ("web", "worker")}})

    def growth(self) -> dict:
        """Mean RSS of the first and last third of the run, per process (MiB), and the change."""
        out = {}
        third = max(len(self.samples) // 3, 1)
        for name in ("web", "worker"):
            values = [s[name] / 2**20 for s in self.samples]
            if not values:
                continue
            first, last = statistics.mean(values[:third]), statistics.mean(values[-third:])
            out[name] = {"first_third_mib": round(first, 1), "last_third_mib": round(last, 1),
                         "growth_pct": round(100 * (last - first) / first, 1), "max_mib": round(max(values), 1)}
        return out


def start_stack(preset: str, users: list[str], annotators: list[str] = (), admins: list[str] = (),
                annotation_batch: bool = False, judge: bool = False, progress=print) -> Stack:
    stack = Stack(DJANGO_SETTINGS_MODULE="bench.load_settings", ENGINE_MAX_SLOTS="32")
    try:
        _set_up(stack, preset, users, annotators, admins, annotation_batch, judge, progress)
    except BaseException:
        stack.close()  # no orphaned servers when set-up fails or is interrupted
        raise
    return stack


def _set_up(stack: Stack, preset, users, annotators, admins, annotation_batch, judge, progress) -> None:
    progress(f"private stack under {stack.root}: PostgreSQL :{stack.pg.port}, Redis :{stack.redis.port}, "
             f"web :{stack.web_port}")
    stack.start_services()
    stack.start("web")
    stack.start("worker", pool="prefork", concurrency=2)
    stack.start("beat")
    progress(f"training a {preset} checkpoint and creating {len(users) + len(annotators) + len(admins)} users ...")
    code = [
        "from django.conf import settings",
        "from django.core.management import call_command",
        "from webapp.checkpoints.training import train_and_register",
        "from webapp.core.roles import ADMIN, ANNOTATOR, WRITER, create_user_with_role",
        "call_command('import_corpus', starter=True, no_progress=True)" if annotation_batch else "",
        f"train_and_register(preset={preset!r}, data_paths=[])",  # the starter corpus
    ]
    for username in users:
        code.append(f"create_user_with_role({username!r}, WRITER, {PASSWORD!r})")
    for username in annotators:
        code.append(f"create_user_with_role({username!r}, ANNOTATOR, {PASSWORD!r})")
    for username in admins:
        code.append(f"create_user_with_role({username!r}, ADMIN, {PASSWORD!r})")
    if judge:  # the active judge an RLAIF job rewards with
        code.append("call_command('train_judge', kind='tfidf', pairs=[settings.STARTER_CORPUS_DIR / 'pairs.json'], "
                    "activate=True)")
    if annotation_batch:
        code.append("from webapp.annotation.services import create_batch")
        code.append("create_batch(name='soak', kind='pointwise', k=3, source_type='corpus', limit=400)")
    stack.shell("\n".join(line for line in code if line))
    stack.wait_for_web()


def run_load(stack: Stack, *, duration: float, browsers: int, writers: int, think: float, drain: float,
             seed: int = 0, extra_threads=(), progress=print) -> dict:
    """Runs the users for `duration` s against a started stack; returns the report (see summarise)."""
    base = stack.web_url
    rec = Recorder()
    browser_sessions = [sign_in(base, f"browser{i}") for i in range(browsers)]
    writer_sessions = [sign_in(base, f"writer{i}") for i in range(writers)]
    sampler = MemorySampler(stack)
    sampler.start()
    started = time.monotonic()
    stop_at, drain_until = started + duration, started + duration + drain
    threads = [threading.Thread(target=browse, args=(base, s, rec, stop_at, think, random.Random(seed + i)), daemon=True)
               for i, s in enumerate(browser_sessions)]
    threads += [threading.Thread(target=write, args=(base, s, rec, stop_at, drain_until, think,
                                                     "sse" if i % 2 == 0 else "poll", random.Random(seed + 1000 + i)),
                                 daemon=True) for i, s in enumerate(writer_sessions)]
    threads += [threading.Thread(target=target, args=(base, rec, stop_at), daemon=True) for target in extra_threads]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads) and time.monotonic() < drain_until + 5:
        time.sleep(1)
        progress(f"\r  {time.monotonic() - started:5.0f} s / {duration:.0f} s  "
                 f"pages {sum(len(v) for v in rec.latencies.values())}  generations {len(rec.generations)}  "
                 f"errors {sum(len(v) for v in rec.errors.values())}", end="", flush=True)
    progress("")
    sampler.stopped.set()
    return summarise(rec, duration, sampler)


def summarise(rec: Recorder, duration: float, sampler: MemorySampler) -> dict:
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    pages = {kind: {"n": len(values), "per_s": round(len(values) / duration, 2), "p50_ms": ms(percentile(values, 50)),
                    "p95_ms": ms(percentile(values, 95)), "p99_ms": ms(percentile(values, 99)),
                    "errors": len(rec.errors.get(kind, []))}
             for kind, values in sorted(rec.latencies.items())}
    by_mode = {}
    for mode in ("sse", "poll"):
        runs = [g for g in rec.generations if g["mode"] == mode]
        firsts = [g["first"] for g in runs if g["first"] is not None]
        dones = [g["done"] for g in runs if g["done"] is not None and g["status"] == "done"]
        by_mode[mode] = {"submitted": len(runs), "done": sum(g["status"] == "done" for g in runs),
                         "first_token_p50_ms": ms(percentile(firsts, 50)), "first_token_p95_ms": ms(percentile(firsts, 95)),
                         "done_p50_ms": ms(percentile(dones, 50)), "done_p95_ms": ms(percentile(dones, 95))}
    sse, poll = by_mode["sse"]["first_token_p50_ms"], by_mode["poll"]["first_token_p50_ms"]
    all_runs = rec.generations
    return {
        "duration_s": duration, "pages": pages,
        "generations": {"submitted": len(all_runs), "done": sum(g["status"] == "done" for g in all_runs),
                        "completion_rate": round(sum(g["status"] == "done" for g in all_runs) / len(all_runs), 3)
                        if all_runs else None, "by_watch_mode": by_mode,
                        "poll_over_sse_first_token_p50": round(poll / sse, 2) if sse and poll else None},
        "errors": {kind: {"n": len(v), "examples": sorted(set(v))[:5]} for kind, v in rec.errors.items() if v},
        "memory": sampler.growth(),
        "memory_timeline_mib": [{k: (v if k == "t" else round(v / 2**20, 1)) for k, v in row.items()}
                                for row in sampler.samples[::max(len(sampler.samples) // 30, 1)]],
        "counts": dict(rec.counts),
        "samples": {what: {"n": len(v), "p50": round(percentile(v, 50), 2), "max": round(max(v), 2)}
                    for what, v in rec.samples.items() if v},
    }


def print_report(report: dict, out=print) -> None:
    out(f"\npages ({report['duration_s']:.0f} s)")
    out(f"  {'kind':<12}{'n':>7}{'req/s':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for kind, row in report["pages"].items():
        out(f"  {kind:<12}{row['n']:>7}{row['per_s']:>8}{row['p50_ms']!s:>9}{row['p95_ms']!s:>9}{row['p99_ms']!s:>9}"
            f"{row['errors']:>8}")
    gen = report["generations"]
    out(f"generations: {gen['done']}/{gen['submitted']} done (completion {gen['completion_rate']})")
    for mode, row in gen["by_watch_mode"].items():
        out(f"  {mode:<5} first visible token p50 {row['first_token_p50_ms']} ms, p95 {row['first_token_p95_ms']} ms; "
            f"done p50 {row['done_p50_ms']} ms, p95 {row['done_p95_ms']} ms ({row['done']}/{row['submitted']})")
    out(f"  polling / SSE time to first visible token (p50): {gen['poll_over_sse_first_token_p50']}x")
    out(f"errors: {json.dumps(report['errors'], ensure_ascii=False) if report['errors'] else 'none'}")
    for name, row in report["memory"].items():
        out(f"memory {name}: {row['first_third_mib']} -> {row['last_third_mib']} MiB (first vs last third, "
            f"{row['growth_pct']:+.1f}%), max {row['max_mib']} MiB")


def add_run_arguments(parser: argparse.ArgumentParser, *, duration: float, browsers: int, writers: int,
                      think: float) -> None:
    """The options bench.load and bench.soak share (their defaults differ)."""
    parser.add_argument("--duration", type=float, default=duration)
    parser.add_argument("--browsers", type=int, default=browsers)
    parser.add_argument("--writers", type=int, default=writers)
    parser.add_argument("--think", type=float, default=think, help="mean seconds between a user's actions")
    parser.add_argument("--drain", type=float, default=60, help="seconds running generations get after the end")
    parser.add_argument("--preset", default="tiny", help="the generator served (tiny: seconds to train)")
    parser.add_argument("--json", action="store_true")


def run_and_report(args: argparse.Namespace, *, extra_threads=lambda stack: (), also_print=(),
                   **stack_options) -> int:
    """The tail bench.load and bench.soak share: a private stack with args' browsers and writers (and
    `stack_options` for start_stack), their load for args.duration (with the threads `extra_threads(stack)`
    gives), closed however it ends; then the report as JSON on stdout (progress on stderr) or as text
    followed by the report's keys named in `also_print`."""
    log = (lambda *a, **k: print(*a, **k, file=sys.stderr)) if args.json else print
    users = [f"browser{i}" for i in range(args.browsers)] + [f"writer{i}" for i in range(args.writers)]
    stack = start_stack(args.preset, users, progress=log, **stack_options)
    try:
        report = run_load(stack, duration=args.duration, browsers=args.browsers, writers=args.writers,
                          think=args.think, drain=args.drain, extra_threads=extra_threads(stack), progress=log)
    finally:
        stack.close()
    report["config"] = {k: v for k, v in vars(args).items() if k != "json"}
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print_report(report)
        for key in also_print:
            print(f"{key}: {report[key]}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser, duration=60, browsers=50, writers=10, think=1.0)
    return run_and_report(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
