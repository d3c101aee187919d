"""HRTMADDPG vs MADDPG on mpe2 at equal environment steps: ``python -m bench.marl --json``

Every variant trains with the same seeds, the same environment steps, batch, update schedule
and MLP sizes (HRTMADDPG adds its history encoder to each actor), then is evaluated greedily
on the same 20 fixed-seed episodes. Reported per scenario and variant: mean final (evaluation)
episode reward summed over agents, its 95% confidence interval over seeds (Student t), the
paired difference against MADDPG (the anchor) with its 95% interval, and wall time as a ratio
to MADDPG's. The encoder ablation (RNN only, transformer only, both) runs on simple_spread.
Writes the raw runs to bench/results/marl.json and a chart to bench/results/marl.svg.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from statistics import mean, stdev
from xml.sax.saxutils import escape

from training.metrics import emit, format_table

RESULTS = Path(__file__).resolve().parent / "results"
ANCHOR = "maddpg"
# name -> (algo, encoder); the first is the anchor.
VARIANTS = {"maddpg": ("maddpg", "hrt"), "hrt": ("hrtmaddpg", "hrt"), "rnn_only": ("hrtmaddpg", "rnn"),
            "transformer_only": ("hrtmaddpg", "transformer")}
PLAN = {"simple_spread": list(VARIANTS), "simple_adversary": ["maddpg", "hrt"]}


def run_one(env: str, variant: str, seed: int, steps: int) -> dict:
    import torch

    from training.marl.train import MARLConfig, train_marl

    torch.set_num_threads(1)
    algo, encoder = VARIANTS[variant]
    started = time.perf_counter()
    result = train_marl(MARLConfig(env=env, algo=algo, encoder=encoder, steps=steps, seed=seed, progress_bar=False))
    m = result.metrics
    return {"env": env, "variant": variant, "seed": seed, "steps": steps, "wall_s": time.perf_counter() - started,
            "eval_reward": m["eval_reward"], "final_train_reward": m["final_train_reward"],
            "parameters": m["parameters"], "updates": m["updates"],
            **{k: v for k, v in m.items() if k.startswith("eval_reward_")},
            "curve": [(p["step"] if "step" in p else p["episode"], p["episode_reward"]) for p in result.curve]}


DONE_LINE = re.compile(r"^done (\S+) (\S+) seed (\d+): eval (\S+) in (\d+) s$", re.M)


def runs_from_log(text: str, steps: int) -> list[dict]:
    return [{"env": env, "variant": variant, "seed": int(seed), "steps": steps, "eval_reward": float(reward),
             "wall_s": float(wall)} for env, variant, seed, reward, wall in DONE_LINE.findall(text)]


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and its 95% Student-t interval (NaN width for a single value)."""
    from scipy.stats import t

    m = mean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = t.ppf(0.975, len(values) - 1) * stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for env, variants in PLAN.items():
        by_variant = {v: sorted((r for r in runs if r["env"] == env and r["variant"] == v), key=lambda r: r["seed"])
                      for v in variants}
        anchor = {r["seed"]: r for r in by_variant.get(ANCHOR, [])}
        anchor_wall = mean(r["wall_s"] for r in anchor.values()) if anchor else math.nan
        for variant, vruns in by_variant.items():
            if not vruns:
                continue
            m, low, high = t_interval([r["eval_reward"] for r in vruns])
            row = {"env": env, "variant": variant, "seeds": len(vruns), "eval_reward": m, "ci_low": low, "ci_high": high,
                   "wall_s": mean(r["wall_s"] for r in vruns), "parameters": vruns[0].get("parameters")}
            row["wall_ratio"] = row["wall_s"] / anchor_wall
            paired = [r["eval_reward"] - anchor[r["seed"]]["eval_reward"] for r in vruns if r["seed"] in anchor]
            if variant != ANCHOR and paired:
                d, dlow, dhigh = t_interval(paired)
                row.update(diff_vs_maddpg=d, diff_low=dlow, diff_high=dhigh,
                           beyond_noise=bool(dlow > 0 or dhigh < 0) if not math.isnan(dlow) else False)
            for team in ("agent", "adversary"):
                key = f"eval_reward_{team}"
                if key in vruns[0] and env == "simple_adversary":
                    row[key] = mean(r[key] for r in vruns)
            rows.append(row)
    return rows


def svg_chart(rows: list[dict], title: str) -> str:
    """Grouped bars (one panel per scenario, its own scale) of mean eval reward with 95% whiskers."""
    panel_w, height, top, bottom, left = 330, 300, 40, 70, 58
    envs = list(dict.fromkeys(r["env"] for r in rows))
    width = left + panel_w * len(envs) + 10
    parts = [f'<svg viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'font-family="sans-serif" font-size="11" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>']
    colours = {"maddpg": "#888", "hrt": "#c0392b", "rnn_only": "#2980b9", "transformer_only": "#27ae60"}
    for p, env in enumerate(envs):
        erows = [r for r in rows if r["env"] == env]
        lows = [min(r["eval_reward"], r["ci_low"] if not math.isnan(r["ci_low"]) else r["eval_reward"]) for r in erows]
        highs = [max(r["eval_reward"], r["ci_high"] if not math.isnan(r["ci_high"]) else r["eval_reward"]) for r in erows]
        lo, hi = min(lows + [0.0]), max(highs + [0.0])
        span = (hi - lo) or 1.0
        lo, hi = lo - 0.08 * span, hi + 0.08 * span
        x0, plot_h = left + p * panel_w, height - top - bottom
        y = lambda v: top + plot_h * (hi - v) / (hi - lo)  # noqa: E731
        parts.append(f'<text x="{x0 + panel_w / 2:.0f}" y="{top - 8}" text-anchor="middle" font-weight="bold">'
                     f'{escape(env)}</text>')
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            parts.append(f'<line x1="{x0}" x2="{x0 + panel_w - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                         f'<text x="{x0 - 4}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555">{v:.0f}</text>')
        parts.append(f'<line x1="{x0}" x2="{x0 + panel_w - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
        slot = (panel_w - 20) / len(erows)
        for i, r in enumerate(erows):
            cx, bw = x0 + slot * (i + 0.5), min(46, slot * 0.6)
            top_y, bot_y = sorted((y(r["eval_reward"]), y(0)))
            colour = colours.get(r["variant"], "#555")
            parts.append(f'<rect x="{cx - bw / 2:.1f}" y="{top_y:.1f}" width="{bw:.1f}" height="{bot_y - top_y:.1f}" '
                         f'fill="{colour}"><title>{escape(r["variant"])}: {r["eval_reward"]:.2f}</title></rect>')
            if not math.isnan(r["ci_low"]):
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(r["ci_low"]):.1f}" y2="{y(r["ci_high"]):.1f}" '
                             f'stroke="#000"/><line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y(r["ci_low"]):.1f}" '
                             f'y2="{y(r["ci_low"]):.1f}" stroke="#000"/><line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" '
                             f'y1="{y(r["ci_high"]):.1f}" y2="{y(r["ci_high"]):.1f}" stroke="#000"/>')
            parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                         f'{escape(r["variant"].replace("_", " "))}</text>'
                         f'<text x="{cx:.1f}" y="{height - bottom + 30}" text-anchor="middle" fill="#555">'
                         f'{r["eval_reward"]:.1f}</text>')
    parts.append(f'<text x="{left}" y="{height - 12}" fill="#555">mean evaluation episode reward (summed over agents; '
                 f'higher is better), 95% t-interval over seeds</text></svg>')
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="environment steps per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (one thread each)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--from-results", type=Path, default=None, help="re-summarise a saved marl.json")
    parser.add_argument("--from-log", type=Path, default=None,
                        help="summarise the 'done ...' lines of an interrupted run's log (with its --steps)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    if args.from_results:
        runs = json.loads(args.from_results.read_text())["runs"]
    elif args.from_log:
        runs = runs_from_log(args.from_log.read_text(), args.steps)
    else:
        jobs = [(env, variant, seed, args.steps) for seed in range(args.seeds) for env, variants in PLAN.items()
                for variant in variants]
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futures = [pool.submit(run_one, *job) for job in jobs]
            runs = []
            for future in futures:
                runs.append(future.result())
                r = runs[-1]
                print(f"done {r['env']} {r['variant']} seed {r['seed']}: eval {r['eval_reward']:.2f} "
                      f"in {r['wall_s']:.0f} s", flush=True)
    rows = summarise(runs)
    summary = {"steps": runs[0]["steps"], "seeds": sorted({r["seed"] for r in runs}), "anchor": ANCHOR, "rows": rows,
               "bench_wall_s": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    if not (args.from_results or args.from_log):
        (args.out / "marl.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    title = f"HRTMADDPG vs MADDPG, {summary['steps']} env steps, {len(summary['seeds'])} seeds"
    (args.out / "marl.svg").write_text(svg_chart(rows, title))
    table = format_table(rows, ["env", "variant", "seeds", "eval_reward", "ci_low", "ci_high", "diff_vs_maddpg",
                                "diff_low", "diff_high", "beyond_noise", "wall_s", "wall_ratio", "parameters"])
    emit(summary, table, args.json)


if __name__ == "__main__":
    main()
