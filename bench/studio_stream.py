"""Time to the first visible token in the writing studio: server-sent events vs htmx polling.

    python -m bench.studio_stream [--rounds 6] [--preset tiny] [--json]

A real Chromium (Debian's /usr/bin/chromium, headless) signs in to a private stack (bench/stack.py
via bench.load.start_stack: its own PostgreSQL and Redis, uvicorn as `make demo` runs it, a Celery
worker, a `tiny` checkpoint trained on the starter corpus), types a request on /write/ and submits
it, and the page itself records (Date.now(), in the browser) when the first character of any
candidate appears and when the cards show done. Two browser contexts, side by side, rounds
alternating which goes first: "sse" is the page as shipped (EventSource on
/write/api/requests/<id>/stream); "polling" is the same page with EventSource removed, so it
falls back to htmx polling of the cards partial every 1.5 s. Polling is the anchor; the ratio is
polling time / SSE time (above 1: SSE shows text sooner). "updates" counts the distinct card
states a person saw before done (more = smoother streaming).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from training.metrics import emit

CHROMIUM = Path("/usr/bin/chromium")
USER = "stream-bench"
QUERIES = ["给妈妈的生日祝福", "古风新年祝福语", "同事升职祝福", "朋友乔迁祝福", "高考加油的话", "七十生日祝福语"]

# Runs on every page of a context: stamps the submit on /write/ and, on the request page, the
# first non-empty candidate text, the done state and each distinct visible state of the cards.
WATCH = """(() => {
  document.addEventListener('submit', e => {
    if (e.target.id === 'write-form') sessionStorage.setItem('submitAt', String(Date.now()));
  }, true);
  window.__stream = {first: null, done: null, updates: 0, last: ''};
  const check = () => {
    const cards = document.getElementById('cards');
    if (!cards) return;
    const texts = Array.from(cards.querySelectorAll('[data-text]'), t => t.textContent);
    const shown = texts.some(t => t.trim());
    const state = texts.join('\\u0001');
    const s = window.__stream;
    if (shown && state !== s.last && s.done === null) s.updates++;
    s.last = state;
    if (shown && s.first === null) s.first = Date.now();
    if (cards.dataset.status === 'done' && s.done === null) s.done = Date.now();
  };
  new MutationObserver(check).observe(document, {subtree: true, childList: true, characterData: true, attributes: true});
  document.addEventListener('DOMContentLoaded', check);
})();"""
NO_EVENTSOURCE = "delete window.EventSource;"


def signed_in_context(browser, base: str, password: str, mode: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    if mode == "polling":
        context.add_init_script(NO_EVENTSOURCE)
    context.add_init_script(WATCH)
    page = context.new_page()
    page.set_default_timeout(60000)
    page.goto(f"{base}/accounts/login/?next=/write/")
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", password)
    page.click("button[type=submit], input[type=submit]")
    page.wait_for_selector("#write-form")
    return context, page


def one_round(page, base: str, query: str, timeout_s: float) -> dict:
    """Submit `query` on /write/ and wait until the cards are done; times in ms from the submit."""
    page.goto(f"{base}/write/")
    page.fill("#id_query", query)
    page.click("#write-form button[type=submit]")
    page.wait_for_selector("#cards")
    page.wait_for_function("() => window.__stream && window.__stream.done !== null", timeout=timeout_s * 1000)
    stream = page.evaluate("() => ({...window.__stream, submit: Number(sessionStorage.getItem('submitAt'))})")
    return {"first_ms": stream["first"] - stream["submit"], "done_ms": stream["done"] - stream["submit"],
            "updates": stream["updates"]}


def describe(samples: list[dict], key: str) -> dict:
    values = [s[key] for s in samples]
    return {"median": statistics.median(values), "mean": round(statistics.fmean(values), 1), "min": min(values),
            "max": max(values)}


def run(rounds: int, preset: str, timeout_s: float, progress=print) -> dict:
    from playwright.sync_api import sync_playwright

    from bench.load import PASSWORD, start_stack

    if not CHROMIUM.exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium)")
    stack = start_stack(preset, users=[USER], progress=progress)
    samples: dict[str, list[dict]] = {"sse": [], "polling": []}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                        args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"])
            pages = {mode: signed_in_context(browser, stack.web_url, PASSWORD, mode)[1] for mode in samples}
            one_round(pages["sse"], stack.web_url, "热身 warm-up 祝福", timeout_s)  # loads the engine once
            for r in range(rounds):
                order = ("sse", "polling") if r % 2 == 0 else ("polling", "sse")
                for mode in order:
                    sample = one_round(pages[mode], stack.web_url, QUERIES[r % len(QUERIES)], timeout_s)
                    samples[mode].append(sample)
                    progress(f"round {r + 1}/{rounds} {mode:8s} first visible {sample['first_ms']:6.0f} ms, "
                             f"done {sample['done_ms']:6.0f} ms, {sample['updates']} visible states")
            browser.close()
    finally:
        stack.close()
    report = {"rounds": rounds, "preset": preset, "poll_interval_s": 1.5,
              "sse": {k: describe(samples["sse"], k) for k in ("first_ms", "done_ms", "updates")},
              "polling": {k: describe(samples["polling"], k) for k in ("first_ms", "done_ms", "updates")},
              "samples": samples}
    report["first_visible_ratio_polling_over_sse"] = round(
        report["polling"]["first_ms"]["median"] / max(report["sse"]["first_ms"]["median"], 1), 2)
    report["done_ratio_polling_over_sse"] = round(
        report["polling"]["done_ms"]["median"] / max(report["sse"]["done_ms"]["median"], 1), 2)
    return report


def table(report: dict) -> str:
    lines = [f"studio streaming, {report['rounds']} rounds each, preset {report['preset']} (medians; mean, min-max)",
             f"{'':10s}{'first visible (ms)':>28s}{'done (ms)':>28s}{'visible states':>18s}"]
    for mode in ("polling", "sse"):
        row = report[mode]
        cells = [f"{row[k]['median']:>7.0f} ({row[k]['mean']:.0f}; {row[k]['min']:.0f}-{row[k]['max']:.0f})"
                 for k in ("first_ms", "done_ms")]
        lines.append(f"{mode + (' (anchor)' if mode == 'polling' else ''):10s}{cells[0]:>28s}{cells[1]:>28s}"
                     f"{row['updates']['median']:>18.1f}")
    lines.append(f"SSE shows the first token {report['first_visible_ratio_polling_over_sse']}x sooner than polling; "
                 f"done {report['done_ratio_polling_over_sse']}x sooner.")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="requests per mode")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--timeout", type=float, default=120, help="seconds one request may take")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    started = time.monotonic()
    report = run(args.rounds, args.preset, args.timeout)
    report["wall_s"] = round(time.monotonic() - started, 1)
    emit(report, table(report), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
