"""BenchMARL's MADDPG on a VMAS task, evaluated like ours; run by `python -m bench.marl --backend vmas benchmarl`.

This file runs under BenchMARL's own venv (README: it reads our site-packages and is held to
our torch by a constraint file), so it imports nothing from this repository. BenchMARL's own MADDPG, model and
experiment configuration (its YAML defaults), except: the frame budget (ours), the episode
length (25 steps, ours and mpe2's; BenchMARL's VMAS tasks default to 100), CPU, csv logging
only and no evaluation during training. Evaluation afterwards is ours: the final deterministic
policy on `--eval-episodes` VMAS episodes at once, summed over agents and steps, per team too.
One JSON line per run is appended to `--out`.

`--config ours` instead sets BenchMARL's knobs to our MADDPG's (separate actors and critics per
agent, 64x64 ReLU MLPs, lr 1e-3, gamma 0.95, tau 0.01, gradient clip 0.5, batch 64, one update
per 32 frames, 1,000 random warm-up frames, Gaussian exploration of 0.2 on [-1, 1] (ours: 0.1 on
[0, 1])): the same hyperparameters in another code base.
`--config matched` is `ours` plus the two algorithmic choices where BenchMARL's MADDPG differs
from ours (and from Lowe et al.'s): a target actor (BenchMARL's DDPGLoss bootstraps through the
live actor) and bootstrapping at the 25-step time limit (TorchRL's VmasEnv marks the horizon as
terminated; VMAS MPE scenarios never end otherwise), and one update per 32 frames in small
collections (one episode per environment) instead of 100 updates after 3,200 frames.
`ours+target_actor` and `ours+bootstrap` make one of those changes each, to attribute the gap
(bootstrapping alone closes it: README, HRTMADDPG on VMAS).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def our_settings(config, model, algorithm, num_envs: int) -> None:
    """BenchMARL's knobs set to our MADDPG's (see the module docstring)."""
    config.lr, config.gamma, config.polyak_tau, config.clip_grad_val = 1e-3, 0.95, 0.01, 0.5
    config.adam_eps = 1e-8
    config.share_policy_params, algorithm.share_param_critic = False, False
    config.off_policy_collected_frames_per_batch = num_envs * 25 * 4  # 4 episodes per environment
    config.off_policy_n_optimizer_steps = config.off_policy_collected_frames_per_batch // 32
    config.off_policy_train_batch_size, config.off_policy_memory_size = 64, 100_000
    config.off_policy_init_random_frames = 1000
    config.exploration_eps_init = config.exploration_eps_end = 0.2
    model.num_cells, model.activation_class = [64, 64], torch.nn.ReLU


# `matched` and the two single changes that attribute its difference from `ours` (seed 0 of each).
CONFIGS = {"benchmarl": (), "ours": ("ours",),
           "matched": ("ours", "target_actor", "bootstrap", "small_collections"),
           "ours+target_actor": ("ours", "target_actor"), "ours+bootstrap": ("ours", "bootstrap")}


def with_target_actor() -> None:
    """A target actor for the TD target, as ours and Lowe et al.'s (BenchMARL's DDPGLoss: delay_actor=False)."""
    import functools

    from benchmarl.algorithms import maddpg
    from torchrl.objectives import DDPGLoss

    maddpg.DDPGLoss = functools.partial(DDPGLoss, delay_actor=True)


def with_time_limit_bootstrap() -> None:
    """The 25-step horizon as a truncation: TorchRL's VmasEnv marks it terminated; VMAS MPE scenarios never end otherwise."""
    from benchmarl.algorithms import maddpg

    process = maddpg.Maddpg.process_batch

    def bootstrap_time_limit(self, group, batch):
        batch = process(self, group, batch)
        for key in (("next", group, "terminated"), ("next", "terminated")):
            batch.set(key, torch.zeros_like(batch.get(key)))
        return batch

    maddpg.Maddpg.process_batch = bootstrap_time_limit


def with_small_collections(config, num_envs: int) -> None:
    """One episode per environment per collection, then its 25 updates (ours interleaves one per 32 frames)."""
    config.off_policy_collected_frames_per_batch = num_envs * 25
    config.off_policy_n_optimizer_steps = config.off_policy_collected_frames_per_batch // 32


def curve_callback(curve: list):
    """A BenchMARL callback appending (frames, mean training episode return per agent) after every
    collection. BenchMARL pickles its callbacks, so the class is module-level (made on first use, so
    that this module imports without BenchMARL)."""
    global Curve
    from benchmarl.experiment.callback import Callback

    class Curve(Callback):
        def __init__(self, points: list):
            super().__init__()
            self.points = points

        def on_train_end(self, training_td, group):
            self.points.append((self.experiment.total_frames, float(self.experiment.mean_return)))

    Curve.__qualname__ = "Curve"
    return Curve(curve)


def experiment(env: str, seed: int, frames: int, num_envs: int, folder: str, settings: str = "benchmarl",
               curve: list | None = None):
    from benchmarl.algorithms import MaddpgConfig
    from benchmarl.environments import VmasTask
    from benchmarl.experiment import Experiment, ExperimentConfig
    from benchmarl.models.mlp import MlpConfig

    task = getattr(VmasTask, env.upper()).get_from_yaml()
    task.config["max_steps"] = 25
    config = ExperimentConfig.get_from_yaml()
    config.max_n_frames = frames
    config.off_policy_n_envs_per_worker = num_envs
    config.loggers, config.evaluation, config.render, config.create_json = ["csv"], False, False, False
    config.save_folder, config.checkpoint_at_end, config.checkpoint_interval = folder, False, 0
    config.sampling_device = config.train_device = config.buffer_device = "cpu"
    model, algorithm = MlpConfig.get_from_yaml(), MaddpgConfig.get_from_yaml()
    changes = CONFIGS[settings]
    if "ours" in changes:
        our_settings(config, model, algorithm, num_envs)
    if "target_actor" in changes:
        with_target_actor()
    if "bootstrap" in changes:
        with_time_limit_bootstrap()
    if "small_collections" in changes:
        with_small_collections(config, num_envs)
    return Experiment(task=task, algorithm_config=algorithm, model_config=model, critic_model_config=model,
                      seed=seed, config=config, callbacks=[curve_callback(curve if curve is not None else [])])


def evaluate(exp, episodes: int, seed: int) -> dict:
    """Deterministic rollouts of the trained policy on `episodes` fresh environments at once."""
    from torchrl.envs.utils import ExplorationType, set_exploration_type

    env = exp.task.get_env_fun(num_envs=episodes, continuous_actions=True, seed=seed, device="cpu")()
    with torch.no_grad(), set_exploration_type(ExplorationType.DETERMINISTIC):
        rollout = env.rollout(max_steps=25, policy=exp.policy, auto_cast_to_device=True, break_when_any_done=False)
    result, total = {}, 0.0
    for group, agents in exp.group_map.items():
        rewards = rollout.get(("next", group, "reward"))  # [episodes, steps, agents, 1]
        per_episode = rewards.sum(dim=(1, 2, 3))
        result[f"eval_reward_{group}"] = float(per_episode.mean())
        total = total + per_episode
    result["eval_reward"] = float(total.mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="simple_spread")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--num-envs", type=int, default=32)
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--config", choices=list(CONFIGS), default="benchmarl",
                        help="BenchMARL's own defaults, its knobs set to our MADDPG's, or those plus our target "
                             "actor and time-limit bootstrapping")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="benchmarl-") as folder:
        curve = []
        exp = experiment(args.env, args.seed, args.frames, args.num_envs, folder, args.config, curve)
        exp.run()
        train_s = time.perf_counter() - started
        row = {"env": args.env, "seed": args.seed, "config": args.config, "frames": exp.total_frames, "num_envs": args.num_envs,
               "train_seconds": train_s, "optimizer_steps": exp.config.off_policy_n_optimizer_steps * exp.n_iters_performed,
               **evaluate(exp, args.eval_episodes, 1_000_000), "wall_s": time.perf_counter() - started,
               "groups": {g: list(a) for g, a in exp.group_map.items()},
               "curve": curve[:: max(1, len(curve) // 40)]}
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
