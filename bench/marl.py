"""HRTMADDPG vs MADDPG on mpe2 at equal environment steps: ``python -m bench.marl --json``

Every variant trains with the same seeds, the same environment steps, batch, update schedule
and MLP sizes (HRTMADDPG adds its history encoder to each actor), then is evaluated greedily
on the same fixed-seed episodes (100 by default). Runs are ordered so that MADDPG and HRTMADDPG
finish for every seed before the encoder ablation (RNN only, transformer only) starts, and
marl.json is rewritten after every run, so an interrupted bench keeps complete pairs
(re-chart it with --from-results).

simple_adversary is a mixed game whose teams share one algorithm during training, so its summed
self-play reward mixes a better adversary with worse good agents. Each team is therefore also
evaluated in cross-play against the MADDPG run of the same seed: a variant's adversary against
MADDPG's good agents, and its good agents against MADDPG's adversary. The goal figure, fixed
before the measurement: the adversary's cross-play reward (the adversary does not observe which
landmark is the target; the good agents' motion over time reveals it, which is where a history
encoder should help), paired by seed against MADDPG's own adversary, 95% Student-t interval over
the per-seed differences. Also reported: summed self-play reward with its paired difference and
wall time as a ratio to MADDPG's. Writes bench/results/marl.json and bench/results/marl.svg.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import tempfile
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
MAIN = ("maddpg", "hrt")  # trained for every seed before the ablation variants
MIXED = {"simple_adversary": ("adversary", "agent")}  # scenarios evaluated in cross-play, and their teams
GOAL = ("simple_adversary", "xp_adversary")  # the goal figure: adversary cross-play reward vs MADDPG's


def run_one(env: str, variant: str, seed: int, steps: int, eval_episodes: int, checkpoints: str) -> dict:
    import torch

    from training.marl.train import MARLConfig, train_marl

    torch.set_num_threads(1)
    algo, encoder = VARIANTS[variant]
    started = time.perf_counter()
    result = train_marl(MARLConfig(env=env, algo=algo, encoder=encoder, steps=steps, seed=seed,
                                   eval_episodes=eval_episodes, progress_bar=False,
                                   out_dir=checkpoint_dir(checkpoints, env, variant, seed)))
    m = result.metrics
    return {"env": env, "variant": variant, "seed": seed, "steps": steps, "wall_s": time.perf_counter() - started,
            "eval_reward": m["eval_reward"], "eval_episodes": m["eval_episodes"],
            "final_train_reward": m["final_train_reward"], "parameters": m["parameters"], "updates": m["updates"],
            **{k: v for k, v in m.items() if k.startswith("eval_reward_")},
            "curve": [(p["step"] if "step" in p else p["episode"], p["episode_reward"]) for p in result.curve]}


def checkpoint_dir(root: str, env: str, variant: str, seed: int) -> Path:
    return Path(root) / env / f"{variant}-{seed}"


def add_crossplay(runs: list[dict], checkpoints: str, episodes: int) -> None:
    """Fill xp_<team> (that team's reward against MADDPG's other team, same seed) on every mixed run
    whose MADDPG partner has finished; MADDPG against itself is its own self-play evaluation."""
    from training.marl.train import crossplay

    anchors = {(r["env"], r["seed"]): r for r in runs if r["variant"] == ANCHOR}
    for r in runs:
        if r["env"] not in MIXED or (r["env"], r["seed"]) not in anchors or "xp_" + MIXED[r["env"]][0] in r:
            continue
        for team in MIXED[r["env"]]:
            if r["variant"] == ANCHOR:
                r["xp_" + team] = r["eval_reward_" + team]
                continue
            folders = {t: checkpoint_dir(checkpoints, r["env"], r["variant"] if t == team else ANCHOR, r["seed"])
                       for t in MIXED[r["env"]]}
            r["xp_" + team] = crossplay(folders, r["env"], episodes)["eval_reward_" + team]


DONE_LINE = re.compile(r"^done (\S+) (\S+) seed (\d+): eval (\S+) in (\d+) s", re.M)


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


def paired(vruns: list[dict], anchor: dict[int, dict], key: str, prefix: str) -> dict:
    """The variant's mean `key` with its interval, and the paired difference against the anchor's."""
    values = [r[key] for r in vruns if key in r]
    if not values:
        return {}
    m, low, high = t_interval(values)
    out = {prefix: m, f"{prefix}_low": low, f"{prefix}_high": high}
    diffs = [r[key] - anchor[r["seed"]][key] for r in vruns if key in r and key in anchor.get(r["seed"], {})]
    if vruns[0]["variant"] != ANCHOR and diffs:
        d, dlow, dhigh = t_interval(diffs)
        out.update({f"{prefix}_diff": d, f"{prefix}_diff_low": dlow, f"{prefix}_diff_high": dhigh,
                    f"{prefix}_beyond_noise": bool(dlow > 0 or dhigh < 0) if not math.isnan(dlow) else False})
    return out


def summarise(runs: list[dict]) -> list[dict]:
    rows = []
    for env in dict.fromkeys(r["env"] for r in runs):
        variants = [v for v in VARIANTS if any(r["env"] == env and r["variant"] == v for r in runs)]
        by_variant = {v: sorted((r for r in runs if r["env"] == env and r["variant"] == v), key=lambda r: r["seed"])
                      for v in variants}
        anchor = {r["seed"]: r for r in by_variant.get(ANCHOR, [])}
        anchor_wall = mean(r["wall_s"] for r in anchor.values()) if anchor else math.nan
        for variant, vruns in by_variant.items():
            m, low, high = t_interval([r["eval_reward"] for r in vruns])
            row = {"env": env, "variant": variant, "seeds": len(vruns), "steps": vruns[0]["steps"],
                   "eval_reward": m, "ci_low": low, "ci_high": high,
                   "wall_s": mean(r["wall_s"] for r in vruns), "parameters": vruns[0].get("parameters")}
            row["wall_ratio"] = row["wall_s"] / anchor_wall
            sums = paired(vruns, anchor, "eval_reward", "sum")
            row.update({k: v for k, v in sums.items() if "diff" in k or "beyond" in k})
            for team in MIXED.get(env, ()):
                row[f"selfplay_{team}"] = mean(r[f"eval_reward_{team}"] for r in vruns)
                row.update(paired(vruns, anchor, f"xp_{team}", f"xp_{team}"))
            rows.append(row)
    return rows


def goal(rows: list[dict]) -> dict:
    env, figure = GOAL
    row = next((r for r in rows if r["env"] == env and r["variant"] == "hrt"), None)
    if row is None or f"{figure}_diff" not in row:
        return {"figure": f"{env} {figure}", "met": None}
    return {"figure": f"{env} {figure}", "diff": row[f"{figure}_diff"], "low": row[f"{figure}_diff_low"],
            "high": row[f"{figure}_diff_high"], "met": bool(row[f"{figure}_diff_low"] > 0)}


def chart_panels(rows: list[dict]) -> list[dict]:
    """One panel per figure: the summed reward on cooperative scenarios, each team's cross-play
    reward on mixed ones."""
    panels = []
    for env in dict.fromkeys(r["env"] for r in rows):
        erows = [r for r in rows if r["env"] == env]
        figures = ([(f"xp_{team}", f"{env}: {team} team vs MADDPG") for team in MIXED[env]]
                   if env in MIXED else [("sum", f"{env}: reward summed over agents")])
        for key, title in figures:
            value = "eval_reward" if key == "sum" else key
            low, high = ("ci_low", "ci_high") if key == "sum" else (f"{key}_low", f"{key}_high")
            bars = [{"variant": r["variant"], "value": r[value], "low": r[low], "high": r[high]}
                    for r in erows if value in r]
            if bars:
                panels.append({"title": title, "bars": bars})
    return panels


def svg_chart(panels: list[dict], title: str) -> str:
    """Grouped bars (one panel per figure, its own scale) of mean eval reward with 95% whiskers."""
    panel_w, height, top, bottom, left = 330, 300, 40, 70, 58
    width = left + panel_w * len(panels) + 10
    parts = [f'<svg viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg" role="img" '
             f'font-family="sans-serif" font-size="11" aria-label="{escape(title)}"><title>{escape(title)}</title>',
             f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>']
    colours = {"maddpg": "#888", "hrt": "#c0392b", "rnn_only": "#2980b9", "transformer_only": "#27ae60"}
    for p, panel in enumerate(panels):
        bars = panel["bars"]
        known = lambda v, fallback: fallback if math.isnan(v) else v  # noqa: E731
        lo = min([min(b["value"], known(b["low"], b["value"])) for b in bars] + [0.0])
        hi = max([max(b["value"], known(b["high"], b["value"])) for b in bars] + [0.0])
        span = (hi - lo) or 1.0
        lo, hi = lo - 0.08 * span, hi + 0.08 * span
        x0, plot_h = left + p * panel_w, height - top - bottom
        y = lambda v: top + plot_h * (hi - v) / (hi - lo)  # noqa: E731
        parts.append(f'<text x="{x0 + (panel_w - 20) / 2:.0f}" y="{top - 8}" text-anchor="middle" font-weight="bold">'
                     f'{escape(panel["title"])}</text>')
        for k in range(5):
            v = lo + (hi - lo) * k / 4
            parts.append(f'<line x1="{x0}" x2="{x0 + panel_w - 20}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
                         f'<text x="{x0 - 4}" y="{y(v) + 4:.1f}" text-anchor="end" fill="#555">{v:.0f}</text>')
        parts.append(f'<line x1="{x0}" x2="{x0 + panel_w - 20}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#333"/>')
        slot = (panel_w - 20) / len(bars)
        for i, b in enumerate(bars):
            cx, bw = x0 + slot * (i + 0.5), min(46, slot * 0.6)
            top_y, bot_y = sorted((y(b["value"]), y(0)))
            colour = colours.get(b["variant"], "#555")
            parts.append(f'<rect x="{cx - bw / 2:.1f}" y="{top_y:.1f}" width="{bw:.1f}" height="{bot_y - top_y:.1f}" '
                         f'fill="{colour}"><title>{escape(b["variant"])}: {b["value"]:.2f}</title></rect>')
            if not math.isnan(b["low"]):
                parts.append(f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(b["low"]):.1f}" y2="{y(b["high"]):.1f}" '
                             f'stroke="#000"/><line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" y1="{y(b["low"]):.1f}" '
                             f'y2="{y(b["low"]):.1f}" stroke="#000"/><line x1="{cx - 5:.1f}" x2="{cx + 5:.1f}" '
                             f'y1="{y(b["high"]):.1f}" y2="{y(b["high"]):.1f}" stroke="#000"/>')
            parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                         f'{escape(b["variant"].replace("_", " "))}</text>'
                         f'<text x="{cx:.1f}" y="{height - bottom + 30}" text-anchor="middle" fill="#555">'
                         f'{b["value"]:.1f}</text>')
    parts.append(f'<text x="{left}" y="{height - 12}" fill="#555">mean evaluation episode reward (higher is better; '
                 f'mixed games: each team against the MADDPG opponents), 95% t-interval over seeds</text></svg>')
    return "".join(parts)


def plan(envs: list[str], variants: list[str], seeds: int) -> list[tuple[str, str, int]]:
    """MADDPG and HRTMADDPG for every seed first, then the ablation variants, seed by seed."""
    main = [(env, v, seed) for seed in range(seeds) for env in envs for v in variants if v in MAIN]
    rest = [(env, v, seed) for seed in range(seeds) for env in envs for v in variants if v not in MAIN]
    return main + rest


def write_results(out: Path, runs: list[dict], started: float, complete: bool) -> dict:
    rows = summarise(runs)
    summary = {"steps": sorted({r["steps"] for r in runs}), "seeds": sorted({r["seed"] for r in runs}),
               "eval_episodes": sorted({r.get("eval_episodes", 20) for r in runs}), "anchor": ANCHOR,
               "goal": goal(rows), "complete": complete, "rows": rows, "bench_wall_s": time.perf_counter() - started}
    out.mkdir(parents=True, exist_ok=True)
    (out / "marl.json").write_text(json.dumps({"summary": summary, "runs": runs}, indent=1))
    return summary


def chart_title(summary: dict) -> str:
    steps = "/".join(f"{s:,}" for s in summary["steps"])
    return f"HRTMADDPG vs MADDPG, {steps} env steps, {len(summary['seeds'])} seeds (paired)"


def main() -> None:
    import sys

    if "--backend" in sys.argv and sys.argv[sys.argv.index("--backend") + 1:][:1] != ["mpe2"]:
        from bench.marl_vmas import main as vmas_main  # study, throughput, parity, benchmarl on VMAS

        argv = [a for i, a in enumerate(sys.argv[1:]) if a != "--backend" and sys.argv[i] != "--backend"]
        return vmas_main(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25_000, help="environment steps per run")
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--envs", default="simple_adversary", help="comma-separated scenarios")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2, help="parallel runs (one thread each)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="where runs save (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--from-results", type=Path, default=None, help="re-summarise and re-chart a saved marl.json")
    parser.add_argument("--from-log", type=Path, default=None,
                        help="summarise the 'done ...' lines of an interrupted run's log (with its --steps)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--backend", choices=["mpe2", "vmas"], default="mpe2",
                        help="vmas: the VMAS bench (python -m bench.marl --backend vmas --help)")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if ANCHOR not in variants or not set(variants) <= set(VARIANTS):
        parser.error(f"--variants: include {ANCHOR} and choose from {', '.join(VARIANTS)}")

    started = time.perf_counter()
    if args.from_results or args.from_log:
        runs = (json.loads(args.from_results.read_text())["runs"] if args.from_results
                else runs_from_log(args.from_log.read_text(), args.steps))
        rows = summarise(runs)
        summary = {"steps": sorted({r["steps"] for r in runs}), "seeds": sorted({r["seed"] for r in runs}),
                   "goal": goal(rows), "rows": rows}
    else:
        import torch

        torch.set_num_threads(1)  # cross-play evaluation runs in this process
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        checkpoints = str(args.checkpoints or tempfile.mkdtemp(prefix="zhufu-bench-marl-"))
        jobs = [(env, v, seed, args.steps, args.eval_episodes, checkpoints)
                for env, v, seed in plan(args.envs.split(","), variants, args.seeds)]
        runs = []
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for future in [pool.submit(run_one, *job) for job in jobs]:
                r = future.result()
                runs.append(r)
                add_crossplay(runs, checkpoints, args.eval_episodes)
                xp = " ".join(f"{k} {v:.2f}" for k, v in r.items() if k.startswith("xp_"))
                print(f"done {r['env']} {r['variant']} seed {r['seed']}: eval {r['eval_reward']:.2f} "
                      f"in {r['wall_s']:.0f} s {xp}", flush=True)
                summary = write_results(args.out, runs, started, complete=len(runs) == len(jobs))
        rows = summary["rows"]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "marl.svg").write_text(svg_chart(chart_panels(rows), chart_title(summary)))
    table = format_table(rows, ["env", "variant", "seeds", "eval_reward", "sum_diff", "sum_diff_low", "sum_diff_high",
                                "selfplay_adversary", "selfplay_agent", "xp_adversary", "xp_adversary_diff",
                                "xp_adversary_diff_low", "xp_adversary_diff_high", "xp_agent", "xp_agent_diff",
                                "xp_agent_diff_low", "xp_agent_diff_high", "wall_s", "wall_ratio"])
    emit(summary, table, args.json)


if __name__ == "__main__":
    main()
