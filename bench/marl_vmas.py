"""HRTMADDPG vs MADDPG on VMAS: ``python -m bench.marl --backend vmas {study,summary,throughput,parity,benchmarl}``

- study [--study 100k|200k]: the paired-seed comparison (MADDPG, HRTMADDPG, RNN only, transformer
  only) on VMAS scenarios, one run at a time on one thread, resumable: every finished run is
  appended to the study's runs.jsonl (with its cross-play figures) and its summary is rewritten,
  so a killed study keeps what it had and a rerun of the same command skips the runs done.
- summary: every study's summary.json and study.svg rebuilt from its runs.jsonl, README tables
  printed (bench/marl_vmas_summary.py, which also declares the studies).
- throughput: environment steps per second of our training loop (acting + stepping + updates,
  the study's schedule) on VMAS at several num_envs beside mpe2, in one run, as ratios to mpe2.
- parity: each VMAS scenario beside its mpe2 twin: spaces per agent and random-policy returns.
- benchmarl: BenchMARL's MADDPG on the same VMAS task, frames and seeds, run in its own venv
  (bench/benchmarl_maddpg.py), as a peer anchor for our MADDPG.

The pre-declared goal figure and its interval method are in the README (HRTMADDPG section).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import marl as mpe2_bench
from bench.marl_vmas_summary import (ANCHOR, FIGURES, MIXED, STUDIES, VARIANTS, markdown, read_runs,
                                     write_all_summaries, write_summary)
from training.metrics import emit, format_table

STUDY_DEFAULTS = dict(seeds=10, num_envs=32, update_every=32, batch_size=64, eval_episodes=100)


# ---- study --------------------------------------------------------------------------------------


def study_params(args) -> dict:
    return {"steps": args.steps, "num_envs": args.num_envs, "update_every": args.update_every,
            "batch_size": args.batch_size, "eval_episodes": args.eval_episodes}


def run_key(row: dict) -> tuple:
    return row["env"], row["variant"], row["seed"]


def load_runs(path: Path, params: dict) -> list[dict]:
    """The runs already done; refuses results made with other settings (resuming must not mix them)."""
    if not path.is_file():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for row in runs:
        for name, value in params.items():
            if row["params"][name] != value:
                raise SystemExit(f"{name}: {path} holds runs made with {name}={row['params'][name]}, not {value}; "
                                 f"use another --out or the same settings")
    return runs


def run_one(env: str, variant: str, seed: int, params: dict, checkpoints: Path) -> dict:
    from training.marl.train import MARLConfig, train_marl

    algo, encoder = VARIANTS[variant]
    started = time.perf_counter()
    result = train_marl(MARLConfig(env=env, algo=algo, encoder=encoder, seed=seed, backend="vmas",
                                   progress_bar=False, out_dir=mpe2_bench.checkpoint_dir(str(checkpoints), env,
                                                                                          variant, seed),
                                   **params))
    m = result.metrics
    return {"env": env, "variant": variant, "seed": seed, "steps": m["steps"], "params": params,
            "wall_s": time.perf_counter() - started, "train_seconds": m["train_seconds"],
            "eval_reward": m["eval_reward"], "eval_episodes": m["eval_episodes"],
            "final_train_reward": m["final_train_reward"], "parameters": m["parameters"], "updates": m["updates"],
            **{k: v for k, v in m.items() if k.startswith("eval_reward_")},
            "curve": [(p["episode"], p["episode_reward"]) for p in result.curve[:: max(1, len(result.curve) // 40)]]}


def add_crossplay(row: dict, checkpoints: Path, episodes: int) -> None:
    """xp_<team>: that team against the MADDPG run's other team (same seed); for MADDPG itself also a
    uniformly random team against its other team (xp_random_<team>), the floor the gap is measured from."""
    from training.marl.train import crossplay

    env, teams = row["env"], MIXED.get(row["env"])
    if not teams:
        return
    anchor = mpe2_bench.checkpoint_dir(str(checkpoints), env, ANCHOR, row["seed"])
    for team in teams:
        if row["variant"] == ANCHOR:
            row["xp_" + team] = row["eval_reward_" + team]
            row["xp_random_" + team] = random_team_return(anchor, env, team, episodes)
            continue
        mine = mpe2_bench.checkpoint_dir(str(checkpoints), env, row["variant"], row["seed"])
        folders = {t: mine if t == team else anchor for t in teams}
        row["xp_" + team] = crossplay(folders, env, episodes, backend="vmas")["eval_reward_" + team]


def random_team_return(anchor: Path, env: str, team: str, episodes: int) -> float:
    """`team` acting uniformly at random against the anchor checkpoint's other team(s)."""
    from training.marl.envs import teams as team_indices
    from training.marl.maddpg import Lineup
    from training.marl.train import MARLConfig, evaluate, load_policy

    model, saved = load_policy(anchor, env, backend="vmas")
    actors = list(model.actors)
    for i in team_indices(saved["agents"])[team]:
        actors[i] = UniformActor(model.act_dims[i])
    lineup = Lineup(actors, model.obs_dims, model.action_type)
    config = MARLConfig(env=env, backend="vmas", action_type=model.action_type, eval_episodes=episodes)
    return evaluate(lineup, config, saved["agents"])["eval_reward_" + team]


def uniform_actor_class():
    import torch
    from torch import nn

    class UniformActor(nn.Module):
        """Logits whose sigmoid is uniform in [0, 1]: the random policy in a lineup."""

        def __init__(self, act_dim: int):
            super().__init__()
            self.act_dim, self.encoder = act_dim, None
            self.generator = torch.Generator().manual_seed(0)

        def forward(self, obs, history=None, mask=None):
            u = torch.rand(obs.shape[0], self.act_dim, generator=self.generator).clamp(1e-6, 1 - 1e-6)
            return torch.logit(u)

    return UniformActor


def UniformActor(act_dim: int):  # noqa: N802 (a class made on first use, so this module imports without torch)
    return uniform_actor_class()(act_dim)


def ensure_anchor(env: str, variant: str, seed: int, params: dict, checkpoints: Path) -> None:
    """Cross-play needs the MADDPG checkpoint of the same seed; a study resumed on a machine without
    var/ retrains it (seeded, but not bit-for-bit the recorded run: on 2026-12-03 seed 2 evaluated to
    -3.199, recorded -3.208), without a new result row; `partner_figures` then pairs against it."""
    if env not in MIXED or variant == ANCHOR:
        return
    if not (mpe2_bench.checkpoint_dir(str(checkpoints), env, ANCHOR, seed) / "model.safetensors").is_file():
        print(f"retraining the {ANCHOR} checkpoint of {env} seed {seed} for cross-play", flush=True)
        run_one(env, ANCHOR, seed, params, checkpoints)


def partner_figures(row: dict, checkpoints: Path) -> None:
    """row["partner"]: the self-play figures of the MADDPG checkpoint this run met in cross-play (from its
    metrics.json), which the comparison pairs against, so a retrained partner is compared with itself."""
    if row["env"] not in MIXED or row["variant"] == ANCHOR:
        return
    folder = mpe2_bench.checkpoint_dir(str(checkpoints), row["env"], ANCHOR, row["seed"])
    metrics = json.loads((folder / "metrics.json").read_text())
    row["partner"] = {"eval_reward": metrics["eval_reward"],
                      **{"xp_" + team: metrics["eval_reward_" + team] for team in MIXED[row["env"]]}}


def plan(envs: list[str], variants: list[str], seeds: int) -> list[tuple[str, str, int]]:
    return mpe2_bench.plan(envs, variants, seeds)


def check_study(args, params: dict) -> None:
    """Refuse a bad study before any run starts, naming the field (a typo must not cost a run first)."""
    from training.marl.train import MARLConfig, MARLConfigError

    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"variants: unknown variant {variant!r}; choose from {', '.join(VARIANTS)}")
    for env in args.envs.split(","):
        if env not in FIGURES:
            raise SystemExit(f"envs: the studies have no figure for {env!r}; choose from {', '.join(FIGURES)}")
        try:
            MARLConfig(env=env, backend="vmas", **params).validate()
        except MARLConfigError as error:
            raise SystemExit(str(error)) from None


def study(args) -> dict:
    import torch

    torch.set_num_threads(1)  # one core: other work shares this machine
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    params, out = study_params(args), Path(args.out)
    check_study(args, params)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "runs.jsonl"
    runs = load_runs(runs_path, params)
    done = {run_key(r) for r in runs}
    jobs = [job for job in plan(args.envs.split(","), args.variants.split(","), args.seeds) if job not in done]
    print(f"study: {len(done)} runs done, {len(jobs)} to go ({params})", flush=True)
    started = time.perf_counter()
    for env, variant, seed in jobs:
        ensure_anchor(env, variant, seed, params, Path(args.checkpoints))
        row = run_one(env, variant, seed, params, Path(args.checkpoints))
        add_crossplay(row, Path(args.checkpoints), args.eval_episodes)
        partner_figures(row, Path(args.checkpoints))
        with runs_path.open("a") as f:  # one line per finished run: a killed study keeps every run it finished
            f.write(json.dumps(row) + "\n")
        runs.append(row)
        xp = " ".join(f"{k} {v:.2f}" for k, v in row.items() if k.startswith("xp_"))
        print(f"done {env} {variant} seed {seed}: eval {row['eval_reward']:.2f} in {row['wall_s']:.0f} s {xp}",
              flush=True)
        write_summary(out, runs, args.study, started=started)
    return write_summary(out, runs, args.study, started=started)


# ---- throughput ---------------------------------------------------------------------------------


def throughput(args) -> dict:
    """Frames per second of the whole training loop for `--seconds`-ish runs on each backend."""
    import torch

    from training.marl.train import MARLConfig, train_marl

    torch.set_num_threads(1)
    rows = []
    for backend, n in [("mpe2", 1)] + [("vmas", int(x)) for x in args.sizes.split(",")]:
        for variant in args.throughput_variants.split(","):
            algo, encoder = VARIANTS[variant]
            steps = max(args.throughput_steps, 50 * n)  # at least 50 vectorised steps
            config = MARLConfig(env=args.env, algo=algo, encoder=encoder, backend=backend, num_envs=n, steps=steps,
                                update_every=args.update_every, warmup=args.warmup, eval_episodes=1,
                                progress_bar=False)
            result = train_marl(config)
            seconds = result.metrics["train_seconds"]
            rows.append({"backend": backend, "num_envs": n, "variant": variant, "steps": result.metrics["steps"],
                         "updates": result.metrics["updates"], "seconds": seconds,
                         "steps_per_s": result.metrics["steps"] / seconds})
            print(f"{backend} x{n} {variant}: {rows[-1]['steps_per_s']:.0f} steps/s", flush=True)
    for row in rows:
        base = next(r for r in rows if r["backend"] == "mpe2" and r["variant"] == row["variant"])
        row["ratio_vs_mpe2"] = row["steps_per_s"] / base["steps_per_s"]
    summary = {"env": args.env, "update_every": args.update_every, "warmup": args.warmup, "threads": 1,
               "rows": rows, "raw_env": raw_env_throughput(args.env, args.sizes)}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(summary, indent=1))
    return summary


def raw_env_throughput(env_name: str, sizes: str, seconds: float = 2.0) -> list[dict]:
    """Environment alone (uniform random actions, no learning): steps per second per backend."""
    import numpy as np

    from training.marl.envs import make_env
    from training.marl.vmas_env import VmasEnv

    rng, rows = np.random.default_rng(0), []
    env, steps, started = make_env(env_name), 0, time.perf_counter()
    env.reset(seed=0)
    while time.perf_counter() - started < seconds:
        if not env.agents:
            env.reset(seed=steps)
        env.step({a: rng.uniform(0, 1, 5).astype(np.float32) for a in env.agents})
        steps += 1
    rows.append({"backend": "mpe2", "num_envs": 1, "steps_per_s": steps / (time.perf_counter() - started)})
    for n in (int(x) for x in sizes.split(",")):
        venv, steps, started = VmasEnv(env_name, n), 0, time.perf_counter()
        venv.reset()
        while time.perf_counter() - started < seconds:
            _, _, term, trunc = venv.step([rng.uniform(0, 1, (n, 2)).astype(np.float32) for _ in venv.agents])
            steps += n
            if (term | trunc).any():
                venv.reset_done(term | trunc)
        rows.append({"backend": "vmas", "num_envs": n, "steps_per_s": steps / (time.perf_counter() - started)})
    for row in rows:
        row["ratio_vs_mpe2"] = row["steps_per_s"] / rows[0]["steps_per_s"]
    return rows


# ---- parity -------------------------------------------------------------------------------------


def parity(args) -> dict:
    from training.marl.parity import random_returns, spaces

    rows = []
    for name in args.envs.split(","):
        both, returns = spaces(name), random_returns(name, args.episodes, 0)
        for agent in both["mpe2"]["agents"]:
            m, v = both["mpe2"]["spaces"][agent], both["vmas"]["spaces"][agent]
            rows.append({"env": name, "agent": agent, "obs_mpe2": m["observation"]["shape"][0],
                         "obs_vmas": v["observation"]["shape"][0], "act_mpe2": m["action"]["shape"][0],
                         "act_vmas": v["action"]["shape"][0]})
        for team in returns["mpe2"]:
            rows.append({"env": name, "team": team, "random_mpe2": returns["mpe2"][team]["mean"],
                         "sem_mpe2": returns["mpe2"][team]["sem"], "random_vmas": returns["vmas"][team]["mean"],
                         "sem_vmas": returns["vmas"][team]["sem"],
                         "ratio": returns["vmas"][team]["mean"] / returns["mpe2"][team]["mean"]})
    summary = {"episodes": args.episodes, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(json.dumps(summary, indent=1))
    return summary


# ---- BenchMARL ----------------------------------------------------------------------------------


def benchmarl(args) -> dict:
    """Run bench/benchmarl_maddpg.py under the separate venv's python, one seed at a time."""
    python = Path(args.benchmarl_python)
    if not python.is_file():
        raise SystemExit(f"benchmarl_python: {python} does not exist (make it: see README, HRTMADDPG section)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = out / "benchmarl.jsonl"
    done = {(r["env"], r["seed"], r.get("config", "benchmarl")) for r in map(json.loads, results.read_text().splitlines())} \
        if results.is_file() else set()
    script = Path(__file__).resolve().parent / "benchmarl_maddpg.py"
    for env in args.envs.split(","):
        for seed in range(args.seeds):
            if (env, seed, args.benchmarl_config) in done:
                continue
            cmd = [str(python), str(script), "--env", env, "--seed", str(seed), "--frames", str(args.steps),
                   "--num-envs", str(args.num_envs), "--eval-episodes", str(args.eval_episodes),
                   "--config", args.benchmarl_config, "--out", str(results)]
            print(" ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    rows = [json.loads(line) for line in results.read_text().splitlines()] if results.is_file() else []
    return {"rows": rows}


def ours_variant(args) -> dict:
    """Our MADDPG with --actor-loss changed, on the peer anchor's task and settings, one line per seed in
    ours_variants.jsonl (resumable): does BenchMARL's joint actor step explain what is left between them?"""
    import torch

    from training.marl.train import MARLConfig, train_marl

    torch.set_num_threads(1)
    results, name = Path(args.out) / "ours_variants.jsonl", f"actor_loss={args.actor_loss}"
    done = {(r["env"], r["seed"], r["config"]) for r in read_runs(results)}
    for env in args.envs.split(","):
        for seed in range(args.seeds):
            if (env, seed, name) in done:
                continue
            started = time.perf_counter()
            m = train_marl(MARLConfig(env=env, algo="maddpg", backend="vmas", seed=seed, progress_bar=False,
                                      actor_loss=args.actor_loss, **study_params(args))).metrics
            row = {"env": env, "seed": seed, "config": name, "params": study_params(args), "eval_reward": m["eval_reward"],
                   "updates": m["updates"], "wall_s": time.perf_counter() - started}
            with results.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"done {env} {name} seed {seed}: eval {row['eval_reward']:.2f} in {row['wall_s']:.0f} s", flush=True)
    return {"rows": read_runs(results)}


# ---- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["vmas"], default="vmas", help="(this bench is the vmas one)")
    parser.add_argument("command", nargs="?", default="study", choices=["study", "throughput", "parity", "benchmarl",
                                                                       "summary", "ours-variant"])
    parser.add_argument("--study", choices=list(STUDIES), default="100k",
                        help="study: which declared study (sets --envs, --variants, --steps, --out, --checkpoints)")
    for name, value in STUDY_DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--envs", help="default: the study's scenarios")
    parser.add_argument("--variants", help="default: the study's variants")
    parser.add_argument("--steps", type=int, help="frames per run; default: the study's")
    parser.add_argument("--checkpoints", help="default: the study's checkpoint folder")
    parser.add_argument("--out", help="default: the study's results folder")
    parser.add_argument("--env", default="simple_adversary", help="throughput: the scenario")
    parser.add_argument("--sizes", default="1,64,512", help="throughput: VMAS num_envs to measure")
    parser.add_argument("--throughput-variants", default="maddpg,hrt")
    parser.add_argument("--throughput-steps", type=int, default=4000, help="throughput: frames per measured run")
    parser.add_argument("--warmup", type=int, default=1000, help="throughput: random-action frames first")
    parser.add_argument("--episodes", type=int, default=200, help="parity: random-policy episodes per backend")
    parser.add_argument("--benchmarl-python", default="/work/marl-venv-benchmarl/bin/python")
    parser.add_argument("--benchmarl-config", default="benchmarl",
                        choices=["benchmarl", "ours", "matched", "ours+target_actor", "ours+bootstrap"],
                        help="benchmarl: BenchMARL's own defaults; ours: its knobs set to our MADDPG's; matched: "
                             "ours plus a target actor, bootstrapping at the time limit and small collections; "
                             "ours+target_actor, ours+bootstrap: one of those each (bench/benchmarl_maddpg.py)")
    parser.add_argument("--actor-loss", default="joint", help="ours-variant: own (Lowe et al.) or joint (BenchMARL's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    spec = STUDIES[args.study]
    for name in ("envs", "variants", "steps", "checkpoints", "out"):
        if getattr(args, name) is None:
            setattr(args, name, spec[name] if name in ("envs", "variants", "steps") else str(spec[name]))
    if args.command == "study":
        summary = study(args)
        emit(summary, format_table(summary["comparisons"], ["env", "variant", "figure", "seeds", "level", "diff",
                                                            "low", "high", "better_seeds"]), args.json)
    elif args.command == "summary":  # every study's summary and chart, from whatever runs have finished
        summaries = write_all_summaries()
        for name, summary in summaries.items():
            print(f"study {name} ({summary['runs']} runs, complete: {summary['complete']}):\n{markdown(summary)}\n")
        summary = summaries.get(args.study, {"rows": [], "peer_anchor": []})
        emit(summaries if args.json else summary, format_table(summary["rows"], ["env", "variant", "seeds", "eval_reward", "xp_adversary",
                                                     "xp_agent", "wall_s", "wall_ratio"]) + "\n"
             + (format_table(summary["peer_anchor"], ["env", "benchmarl_config", "ours", "ours_low", "ours_high", "benchmarl",
                                                      "benchmarl_low", "benchmarl_high",
                                                      "within_each_others_interval"]) if summary["peer_anchor"] else
                "(no BenchMARL runs yet)"), args.json)
    elif args.command == "throughput":
        summary = throughput(args)
        emit(summary, format_table(summary["rows"] + summary["raw_env"],
                                   ["backend", "num_envs", "variant", "updates", "steps_per_s", "ratio_vs_mpe2"]),
             args.json)
    elif args.command == "parity":
        summary = parity(args)
        emit(summary, format_table(summary["rows"], ["env", "agent", "team", "obs_mpe2", "obs_vmas", "act_mpe2",
                                                     "act_vmas", "random_mpe2", "random_vmas", "ratio"]), args.json)
    elif args.command == "ours-variant":
        summary = ours_variant(args)
        emit(summary, format_table(summary["rows"], ["env", "config", "seed", "eval_reward", "wall_s"]), args.json)
    else:
        summary = benchmarl(args)
        emit(summary, format_table(summary["rows"], ["env", "seed", "frames", "eval_reward", "wall_s"]), args.json)


if __name__ == "__main__":
    main(sys.argv[1:])
