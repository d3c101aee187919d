"""The training loop and evaluation on VMAS: N environments per step, one buffer row per environment.

Same algorithm as the mpe2 loop in train.py, counted in environment steps (frames): one step of
N environments is N frames; uniform random actions for the first `warmup` frames; one MADDPG
update per `update_every` frames (so N / update_every updates after each vectorised step),
batches sampled with histories gathered N rows apart in the replay ring.
"""
from __future__ import annotations

import time

import numpy as np
from tqdm import tqdm

from training.marl.buffer import BatchHistory, SequenceReplayBuffer
from training.marl.maddpg import MADDPG, Lineup
from training.marl.vmas_env import VmasEnv
from training.runs import notify


def random_batch_actions(model: MADDPG, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Warm-up exploration for N environments: uniform in [0, 1]^d, or uniformly chosen one-hot actions."""
    if model.action_type == "continuous":
        return [rng.uniform(0.0, 1.0, size=(n, d)).astype(np.float32) for d in model.act_dims]
    return [np.eye(d, dtype=np.float32)[rng.integers(d, size=n)] for d in model.act_dims]


def updates_due(before: int, after: int, config) -> int:
    """Updates owed for the frames (before, after]: one per update_every frames past warm-up."""
    start = max(before, config.warmup - 1)
    return max(0, after // config.update_every - start // config.update_every) if after >= config.warmup else 0


def train_vectorised(config, env: VmasEnv, model: MADDPG, rng: np.random.Generator, on_progress, agents: list[str],
                     curve_point) -> tuple[dict, list, bool]:
    """Train `model` on `env` for config.steps frames; returns (stats, curve, cancelled)."""
    n, history_len = env.num_envs, model.cfg.history
    buffer = SequenceReplayBuffer(min(config.buffer_size, max(config.steps, n)), model.obs_dims, model.act_dims,
                                  stride=n)
    history = BatchHistory(history_len, model.obs_dims, n) if history_len else None
    obs = env.reset()
    if history is not None:
        history.reset(obs)
    t = np.zeros(n, np.int64)
    returns = np.zeros((n, len(agents)))
    curve, episode_rewards, losses = [], [], []
    step, episode, cancelled, reported = 0, 0, False, 0
    started = time.perf_counter()
    bar = tqdm(total=config.steps, desc=f"{config.algo} {config.env} x{n}", unit="step",
               disable=not config.progress_bar, dynamic_ncols=True)
    while step < config.steps and not cancelled:
        if step < config.warmup and config.init_from is None:
            actions = random_batch_actions(model, rng, n)
        else:
            actions = model.act_batch(obs, history, explore=True, rng=rng)
        next_obs, rewards, terminated, truncated = env.step(actions)
        buffer.add_batch(obs, actions, rewards, next_obs, terminated.astype(np.float32), t)
        returns += rewards
        before, step, t = step, step + n, t + 1
        for _ in range(updates_due(before, step, config)):
            if len(buffer) >= config.batch_size:
                losses.append(model.update(buffer.sample(config.batch_size, rng, history_len)))
        done = terminated | truncated
        obs = next_obs
        if history is not None:
            history.push(obs)
        if done.any():
            episode_rewards.extend(returns[done].copy())
            episode += int(done.sum())
            returns[done], t[done] = 0.0, 0
            obs = env.reset_done(done)
            if history is not None:
                history.reset(obs, done)
        bar.update(n)
        if episode // config.report_every > reported or (step >= config.steps and episode_rewards):
            reported = episode // config.report_every
            point = curve_point(step, episode, episode_rewards[-max(config.report_every, n):], agents, losses[-50:])
            curve.append(point)
            bar.set_postfix(reward=f"{point['episode_reward']:.1f}")
            elapsed = time.perf_counter() - started
            cancelled = not notify(on_progress, {"event": "step", "step": step, "max_steps": config.steps,
                                                 "elapsed_s": round(elapsed, 1),
                                                 "eta_s": round(elapsed / step * max(0, config.steps - step), 1),
                                                 **point})
    bar.close()
    stats = {"steps": step, "episodes": episode, "updates": len(losses), "episode_rewards": episode_rewards,
             "train_seconds": time.perf_counter() - started}
    return stats, curve, cancelled


def evaluate_vectorised(model: Lineup, config, agents: list[str], seed: int) -> np.ndarray:
    """Greedy returns per episode and agent [eval_episodes, agents]: all fixed-seed episodes at once."""
    env = VmasEnv(config.env, config.eval_episodes, config.action_type, seed=seed)
    history = BatchHistory(model.history, model.obs_dims, env.num_envs) if model.history else None
    rng = np.random.default_rng(0)
    obs = env.reset()
    if history is not None:
        history.reset(obs)
    totals = np.zeros((env.num_envs, len(agents)))
    finished = np.zeros(env.num_envs, bool)
    while not finished.all():
        actions = model.act_batch(obs, history, explore=False, rng=rng)
        obs, rewards, terminated, truncated = env.step(actions)
        totals += rewards * ~finished[:, None]  # an episode that ended early adds nothing more
        finished |= terminated | truncated
        if history is not None:
            history.push(obs)
    return totals
