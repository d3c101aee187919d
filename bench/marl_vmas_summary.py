"""The VMAS studies of issue #19 and their summaries: ``python -m bench.marl --backend vmas summary``.

STUDIES names each study fixed in the README before it ran: its scenarios, variants, frames per
run, results folder and checkpoints. A study's summary (summary.json, study.svg in its folder)
is rebuilt from its runs.jsonl alone, so it can be refreshed from whatever runs have finished:
the primary figure at 95%, every other comparison the study declares (its scenarios x variants x
figures, whether run yet or not) Bonferroni-corrected together; the goal and the power rule
(interval excludes 0, or half-width under a quarter of MADDPG's gap over a random adversary);
and, for the study beside benchmarl.jsonl, our MADDPG beside BenchMARL's per configuration.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from statistics import mean

from bench import marl as mpe2_bench

OUT = Path(__file__).resolve().parent / "results" / "marl_vmas"
CHECKPOINTS = Path(__file__).resolve().parents[1] / "var" / "marl_vmas" / "checkpoints"
VARIANTS, ANCHOR, MIXED = mpe2_bench.VARIANTS, mpe2_bench.ANCHOR, mpe2_bench.MIXED
PRIMARY = ("simple_adversary", "hrt", "xp_adversary")  # the goal figure, fixed before the first study ran
FIGURES = {"simple_adversary": ("xp_adversary", "xp_agent"), "simple_spread": ("sum",)}
# Each study as fixed before it ran (README, HRTMADDPG on VMAS): the 100k one in commit 4afd895, the 200k one
# (the primary figure at twice the frames, same update ratio) in the commit that added it here.
STUDIES = {
    "100k": {"envs": "simple_adversary,simple_spread", "variants": ",".join(VARIANTS), "steps": 100_000,
             "out": OUT, "checkpoints": CHECKPOINTS},
    "200k": {"envs": "simple_adversary", "variants": "maddpg,hrt", "steps": 200_000,
             "out": OUT / "frames_200k", "checkpoints": CHECKPOINTS.parent / "checkpoints_200k"},
}


def declared(study: str) -> list[tuple[str, str, str]]:
    """(scenario, variant, figure) of every comparison against MADDPG the study declares."""
    spec = STUDIES[study]
    return [(env, v, fig) for env in spec["envs"].split(",") for v in spec["variants"].split(",") if v != ANCHOR
            for fig in FIGURES[env]]


# ---- summary ------------------------------------------------------------------------------------


def corrected_interval(diffs: list[float], comparisons: int) -> tuple[float, float, float]:
    """Mean paired difference and its two-sided Student-t interval at 95% / comparisons (Bonferroni)."""
    from scipy.stats import t

    m = mean(diffs)
    if len(diffs) < 2:
        return m, math.nan, math.nan
    sd = math.sqrt(sum((d - m) ** 2 for d in diffs) / (len(diffs) - 1))
    half = t.ppf(1 - 0.025 / comparisons, len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return m, m - half, m + half


def figure_value(row: dict, figure: str) -> float | None:
    return row.get("eval_reward" if figure == "sum" else figure)


def partner_value(row: dict, anchor: dict, figure: str) -> float | None:
    """The MADDPG figure a run is paired with: its cross-play partner's own (row["partner"], recorded since
    partners can be retrained), else the MADDPG run of the same seed."""
    return row.get("partner", {}).get(figure, figure_value(anchor, figure)) if figure != "sum" else figure_value(anchor, figure)


def comparisons(runs: list[dict], study: str = "100k") -> list[dict]:
    """Every declared comparison against MADDPG, paired by seed; the primary at 95%, the rest
    Bonferroni-corrected for how many secondary comparisons the study declares (8 in 100k, 1 in 200k)."""
    wanted = declared(study)
    secondary = max(1, sum(1 for c in wanted if c != PRIMARY))
    out = []
    for env, variant, figure in wanted:
        anchor = {r["seed"]: r for r in runs if r["env"] == env and r["variant"] == ANCHOR}
        vruns = [r for r in runs if r["env"] == env and r["variant"] == variant and r["seed"] in anchor]
        pairs = [(figure_value(r, figure), partner_value(r, anchor[r["seed"]], figure)) for r in vruns]
        diffs = [a - b for a, b in pairs if a is not None and b is not None]
        if not diffs:
            continue
        primary = (env, variant, figure) == PRIMARY
        d, low, high = corrected_interval(diffs, 1 if primary else secondary)
        out.append({"env": env, "variant": variant, "figure": figure, "primary": primary, "seeds": len(diffs),
                    "level": 0.95 if primary else 1 - 0.05 / secondary, "diff": d, "low": low, "high": high,
                    "beyond_noise": bool(low > 0 or high < 0) if not math.isnan(low) else False,
                    "better_seeds": sum(x > 0 for x in diffs)})
    return out


def goal(runs: list[dict], rows: list[dict]) -> dict:
    """The primary figure and the issue's power rule: the interval excludes 0, or its half-width is
    under a quarter of MADDPG's gap over a random team against the same opponents."""
    env, _, figure = PRIMARY
    primary = next((c for c in rows if c["primary"]), None)
    anchors = [r for r in runs if r["env"] == env and r["variant"] == ANCHOR and "xp_random_adversary" in r]
    if primary is None or not anchors:
        return {"figure": f"{env} {figure}: HRTMADDPG - MADDPG", "met": None}
    gap = mean(r["xp_adversary"] - r["xp_random_adversary"] for r in anchors)
    half = (primary["high"] - primary["low"]) / 2
    return {"figure": f"{env} {figure}: HRTMADDPG - MADDPG", "diff": primary["diff"], "low": primary["low"],
            "high": primary["high"], "seeds": primary["seeds"], "met": bool(primary["low"] > 0),
            "maddpg_vs_random_gap": gap, "half_width": half,
            "powered": bool(primary["low"] > 0 or primary["high"] < 0 or half < gap / 4)}


def peer_anchor(runs: list[dict], out: Path) -> list[dict]:
    """Our MADDPG beside BenchMARL's (bench/benchmarl_maddpg.py) per scenario: mean evaluation return
    with its 95% t-interval over seeds, and whether each mean lies inside the other's interval."""
    path = out / "benchmarl.jsonl"
    if not path.is_file():
        return []
    peers = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = []
    for env, config in dict.fromkeys((r["env"], r.get("config", "benchmarl")) for r in peers):
        theirs = [r["eval_reward"] for r in peers if r["env"] == env and r.get("config", "benchmarl") == config]
        ours = [r["eval_reward"] for r in runs if r["env"] == env and r["variant"] == ANCHOR]
        if not ours:
            continue
        (om, olow, ohigh), (tm, tlow, thigh) = mpe2_bench.t_interval(ours), mpe2_bench.t_interval(theirs)
        rows.append({"env": env, "benchmarl_config": config, "ours": om, "ours_low": olow, "ours_high": ohigh, "ours_seeds": len(ours),
                     "benchmarl": tm, "benchmarl_low": tlow, "benchmarl_high": thigh, "benchmarl_seeds": len(theirs),
                     "benchmarl_wall_s": mean(r["wall_s"] for r in peers if r["env"] == env
                                              and r.get("config", "benchmarl") == config),
                     "within_each_others_interval": bool(tlow <= om <= thigh and olow <= tm <= ohigh),
                     **welch_difference(theirs, ours)})
    return rows


def ours_variants(out: Path) -> list[dict]:
    """Our MADDPG with one setting changed (ours_variants.jsonl) beside BenchMARL's `matched` runs."""
    mine, peers = read_runs(out / "ours_variants.jsonl"), read_runs(out / "benchmarl.jsonl")
    rows = []
    for env, config in dict.fromkeys((r["env"], r["config"]) for r in mine):
        ours = [r["eval_reward"] for r in mine if (r["env"], r["config"]) == (env, config)]
        theirs = [r["eval_reward"] for r in peers if r["env"] == env and r.get("config") == "matched"]
        if not theirs:
            continue
        (om, olow, ohigh), (tm, tlow, thigh) = mpe2_bench.t_interval(ours), mpe2_bench.t_interval(theirs)
        rows.append({"env": env, "benchmarl_config": "matched", "ours_config": config, "ours": om, "ours_low": olow,
                     "ours_high": ohigh, "ours_seeds": len(ours), "benchmarl": tm, "benchmarl_low": tlow,
                     "benchmarl_high": thigh, "benchmarl_seeds": len(theirs),
                     "within_each_others_interval": bool(tlow <= om <= thigh and olow <= tm <= ohigh),
                     **welch_difference(theirs, ours)})
    return rows


def welch_difference(a: list[float], b: list[float]) -> dict:
    """mean(a) - mean(b) with its 95% Welch (unequal-variance) t-interval; NaN bounds under 2 values each."""
    from scipy.stats import t

    d = mean(a) - mean(b)
    if len(a) < 2 or len(b) < 2:
        return {"diff": d, "diff_low": math.nan, "diff_high": math.nan}
    va, vb = (sum((x - mean(v)) ** 2 for x in v) / (len(v) - 1) / len(v) for v in (a, b))
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1)) if va + vb > 0 else 1.0
    half = t.ppf(0.975, df) * math.sqrt(va + vb)
    return {"diff": d, "diff_low": d - half, "diff_high": d + half}


def peer_markdown(rows: list[dict]) -> str:
    """Our MADDPG beside BenchMARL's, per BenchMARL configuration, as a README table."""
    lines = ["| BenchMARL configuration | seeds | BenchMARL MADDPG (95% CI) | our MADDPG (95% CI) | "
             "BenchMARL - ours (95% Welch CI) | within each other's interval | BenchMARL wall per run |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['benchmarl_config']} ({r['env']}) | {r['benchmarl_seeds']} | {r['benchmarl']:.1f} "
                     f"({r['benchmarl_low']:.1f}, {r['benchmarl_high']:.1f}) | {r['ours']:.1f} ({r['ours_low']:.1f}, "
                     f"{r['ours_high']:.1f}), {r['ours_seeds']} seeds | {r['diff']:+.1f} ({r['diff_low']:+.1f}, "
                     f"{r['diff_high']:+.1f}) | {'yes' if r['within_each_others_interval'] else 'no'} | "
                     f"{r['benchmarl_wall_s']:.0f} s |")
    return "\n".join(lines)


def variants_markdown(rows: list[dict]) -> str:
    lines = ["| our MADDPG | seeds | ours (95% CI) | BenchMARL matched (95% CI) | BenchMARL - ours (95% Welch CI) | "
             "within each other's interval |", "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['ours_config']} ({r['env']}) | {r['ours_seeds']} | {r['ours']:.1f} ({r['ours_low']:.1f}, "
                     f"{r['ours_high']:.1f}) | {r['benchmarl']:.1f} ({r['benchmarl_low']:.1f}, {r['benchmarl_high']:.1f}), "
                     f"{r['benchmarl_seeds']} seeds | {r['diff']:+.1f} ({r['diff_low']:+.1f}, {r['diff_high']:+.1f}) | "
                     f"{'yes' if r['within_each_others_interval'] else 'no'} |")
    return "\n".join(lines)


def goal_line(summary: dict) -> str:
    g = summary["goal"]
    if g.get("met") is None:
        return f"Goal figure ({g['figure']}): no paired seeds yet."
    return (f"Goal figure ({g['figure']}): {g['diff']:+.2f} (95% CI {g['low']:+.2f}, {g['high']:+.2f}), "
            f"{g['seeds']} paired seeds; met: {g['met']}; half-width {g['half_width']:.2f} vs a quarter of "
            f"MADDPG's gap over a random adversary {g['maddpg_vs_random_gap'] / 4:.2f}; powered: {g['powered']}.")


def markdown(summary: dict) -> str:
    """The comparisons as a README table: difference against MADDPG with its (corrected) interval."""
    lines = ["| scenario | variant | figure | seeds | diff vs MADDPG | interval | level | better in |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in summary["comparisons"]:
        lines.append(f"| {c['env']} | {c['variant']}{' (primary)' if c['primary'] else ''} | {c['figure']} | "
                     f"{c['seeds']} | {c['diff']:+.2f} | ({c['low']:+.2f}, {c['high']:+.2f}) | "
                     f"{100 * c['level']:.3g}% | {c['better_seeds']}/{c['seeds']} |")
    return "\n".join(lines)


def planned(study: str, seeds: int = 10) -> set[tuple[str, str, int]]:
    spec = STUDIES[study]
    return {(env, v, seed) for env in spec["envs"].split(",") for v in spec["variants"].split(",")
            for seed in range(seeds)}


def write_summary(out: Path, runs: list[dict], study: str = "100k", started: float | None = None) -> dict:
    """summary.json and study.svg in `out` from `runs` (whatever has finished); complete when every
    planned run of the study is among them."""
    rows = mpe2_bench.summarise(runs)
    comps = comparisons(runs, study)
    done = {(r["env"], r["variant"], r["seed"]) for r in runs}
    summary = {"study": study, "params": runs[0]["params"] if runs else {}, "seeds": sorted({r["seed"] for r in runs}),
               "runs": len(runs), "complete": planned(study) <= done, "goal": goal(runs, comps),
               "comparisons": comps, "rows": rows, "peer_anchor": peer_anchor(runs, out),
               "ours_variants": ours_variants(out),
               "study_wall_s": sum(r["wall_s"] for r in runs)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    if rows:
        title = (f"VMAS: HRTMADDPG vs MADDPG, {summary['params'].get('steps', 0):,} frames, "
                 f"{len(summary['seeds'])} seeds (paired)")
        (out / "study.svg").write_text(mpe2_bench.svg_chart(mpe2_bench.chart_panels(rows), title))
    return summary


def read_runs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def write_all_summaries() -> dict[str, dict]:
    """Every study that has runs: its summary rewritten from its runs.jsonl; all of them as README
    tables in OUT/summary.md (the README quotes them as of its writing; this file is the latest)."""
    summaries = {name: write_summary(spec["out"], runs, name)
                 for name, spec in STUDIES.items() if (runs := read_runs(spec["out"] / "runs.jsonl"))}
    parts = ["# VMAS studies: summary rebuilt by `python -m bench.marl --backend vmas summary`", ""]
    for name, summary in summaries.items():
        wall = summary["study_wall_s"] / 60
        parts += [f"## Study {name}: {summary['params'].get('steps', 0):,} frames per run, {summary['runs']} runs "
                  f"({wall:.0f} min of one thread), complete: {summary['complete']}", "", goal_line(summary), "",
                  markdown(summary), ""]
        if summary["peer_anchor"]:
            parts += ["Peer anchor (bench/results/marl_vmas/benchmarl.jsonl):", "", peer_markdown(summary["peer_anchor"]), ""]
        if summary.get("ours_variants"):
            parts += ["Our MADDPG with one setting changed (ours_variants.jsonl) beside BenchMARL `matched`:", "",
                      variants_markdown(summary["ours_variants"]), ""]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.md").write_text("\n".join(parts))
    return summaries
