"""Train MADDPG or HRTMADDPG on an mpe2 or VMAS scenario, evaluate it, save a safetensors checkpoint.

`backend="mpe2"` steps one environment at a time (the original loop, kept for the old figures);
`backend="vmas"` steps `num_envs` environments at once (training/marl/vector_train.py).

`train_marl(MARLConfig(...), on_progress=...)` reports {"event": "step", "step", "max_steps",
"episode", "episode_reward", ...} after every `report_every` episodes (the reward curve) and
stops cleanly when on_progress returns False. The checkpoint folder holds model.safetensors,
config.json (format, env, algo, agents, observation/action spaces, hyperparameters) and
metrics.json.
"""
from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from training.marl.buffer import EpisodeHistory, SequenceReplayBuffer
from training.marl.envs import EPISODE_LENGTH, EnvError, action_dim, describe_spaces, make_env, teams
from training.marl.maddpg import MADDPG, Lineup, NetConfig
from training.marl.options import (ACTION_TYPES, ACTOR_LOSSES, ALGOS, BACKENDS, ENCODER_KINDS, MAX_NUM_ENVS,
                                  MAX_STEPS, MIN_NUM_ENVS, MIN_STEPS, PLACEMENTS, SCENARIOS)
from training.runs import jsonable, notify, write_json
from training.trainer import determinism

CHECKPOINT_FORMAT = "zhufu-marl-v1"
EVAL_SEED_BASE = 1_000_000  # evaluation episodes never reuse a training episode's seed


class MARLConfigError(ValueError):
    """Bad input; the message starts with the field it is about."""


@dataclass
class MARLConfig:
    env: str = "simple_spread"
    algo: str = "hrtmaddpg"
    backend: str = "mpe2"         # mpe2 (one environment per step) or vmas (num_envs per step)
    num_envs: int = 1             # vmas only: environments stepped at once
    steps: int = 10_000
    seed: int = 0
    action_type: str = "continuous"
    encoder: str = "hrt"          # hrtmaddpg only: hrt, rnn, transformer (ablations)
    placement: str = "actor"      # hrtmaddpg only: actor, critic, both
    window: int = 4
    windows: int = 4
    hidden: int = 64
    d_model: int = 32
    batch_size: int = 64
    buffer_size: int = 100_000
    warmup: int = 1_000
    update_every: int = 8
    lr: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.01
    actor_loss: str = "own"       # own (Lowe et al.) or joint (BenchMARL's): see NetConfig
    eval_episodes: int = 20
    report_every: int = 4         # episodes between on_progress reward points
    out_dir: Path | None = None
    progress_bar: bool = True
    init_from: Path | None = None  # start from this checkpoint's weights (same env and spaces)

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise MARLConfigError(f"backend: unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        scenarios = SCENARIOS[self.backend]
        if self.env not in scenarios:
            raise MARLConfigError(f"env: unknown {self.backend} environment {self.env!r}; "
                                  f"choose one of {', '.join(scenarios)}")
        if not MIN_NUM_ENVS <= self.num_envs <= MAX_NUM_ENVS:
            raise MARLConfigError(f"num_envs: {self.num_envs} is out of range [{MIN_NUM_ENVS}, {MAX_NUM_ENVS}]")
        if self.backend == "mpe2" and self.num_envs != 1:
            raise MARLConfigError("num_envs: the mpe2 backend steps one environment; use backend 'vmas' for more")
        if self.backend == "vmas" and self.steps < self.num_envs * EPISODE_LENGTH:
            raise MARLConfigError(f"steps: {self.steps} do not finish one episode in each of {self.num_envs} "
                                  f"environments (at least {self.num_envs * EPISODE_LENGTH})")
        if self.algo not in ALGOS:
            raise MARLConfigError(f"algo: unknown algorithm {self.algo!r}; choose one of {', '.join(ALGOS)}")
        if not MIN_STEPS <= self.steps <= MAX_STEPS:
            raise MARLConfigError(f"steps: {self.steps} is out of range [{MIN_STEPS}, {MAX_STEPS}]")
        if self.action_type not in ACTION_TYPES:
            raise MARLConfigError(f"action_type: unknown {self.action_type!r}; choose one of {', '.join(ACTION_TYPES)}")
        if self.encoder not in ENCODER_KINDS:
            raise MARLConfigError(f"encoder: unknown {self.encoder!r}; choose one of {', '.join(ENCODER_KINDS)}")
        if self.actor_loss not in ACTOR_LOSSES:
            raise MARLConfigError(f"actor_loss: unknown {self.actor_loss!r}; choose one of {', '.join(ACTOR_LOSSES)}")
        if self.placement not in PLACEMENTS:
            raise MARLConfigError(f"placement: unknown {self.placement!r}; choose one of {', '.join(PLACEMENTS)}")
        for name in ("window", "windows", "hidden", "d_model", "batch_size", "update_every", "eval_episodes",
                     "report_every"):
            if getattr(self, name) < 1:
                raise MARLConfigError(f"{name}: must be at least 1")
        if self.d_model % 2:
            raise MARLConfigError("d_model: must be even (two attention heads)")
        if not 0 < self.tau <= 1:
            raise MARLConfigError("tau: must be in (0, 1]")
        if self.backend == "vmas" and self.eval_episodes > MAX_NUM_ENVS:
            raise MARLConfigError(f"eval_episodes: at most {MAX_NUM_ENVS} on vmas (they run as one batch)")
        if self.init_from is not None:  # refused before anything trains (forms and jobs validate too)
            check_origin(read_checkpoint_config(Path(self.init_from)), self.env, self.action_type, self.backend)

    def net_config(self) -> NetConfig:
        return NetConfig(hidden=self.hidden, encoder=self.encoder if self.algo == "hrtmaddpg" else None,
                         placement=self.placement, window=self.window, windows=self.windows, d_model=self.d_model,
                         lr_actor=self.lr, lr_critic=self.lr, gamma=self.gamma, tau=self.tau,
                         actor_loss=self.actor_loss)

    def hyperparameters(self) -> dict:
        skip = {"out_dir", "progress_bar", "init_from"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


@dataclass
class MARLResult:
    checkpoint_dir: Path | None
    metrics: dict
    curve: list[dict] = field(default_factory=list)
    cancelled: bool = False


def seed_everything(seed: int) -> np.random.Generator:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def env_action(action: np.ndarray, action_type: str):
    return action if action_type == "continuous" else int(np.argmax(action))


def open_env(config: MARLConfig, num_envs: int | None = None, seed: int | None = None):
    """The training environment of `config`'s backend (VMAS: num_envs copies, seeded)."""
    if config.backend == "vmas":
        from training.marl.vmas_env import VmasEnv

        return VmasEnv(config.env, num_envs or config.num_envs, config.action_type,
                       seed=config.seed if seed is None else seed)
    return make_env(config.env, config.action_type)


def build(config: MARLConfig, env) -> tuple[MADDPG, dict]:
    info = describe_spaces(env)
    obs_dims = [info["spaces"][a]["observation"]["shape"][0] for a in info["agents"]]
    act_dims = [action_dim(info["spaces"][a]) for a in info["agents"]]
    return MADDPG(obs_dims, act_dims, config.action_type, config.net_config()), info


def train_marl(config: MARLConfig, on_progress=None) -> MARLResult:
    config.validate()
    with determinism(True):
        return _train(config, on_progress)


def _train(config: MARLConfig, on_progress) -> MARLResult:
    rng = seed_everything(config.seed)
    env = open_env(config)
    model, info = build(config, env)
    if config.init_from is not None:
        load_weights(model, Path(config.init_from), config.env, info, config.action_type, config.backend)
    if config.backend == "vmas":
        return _train_vmas(config, env, model, info, rng, on_progress)
    agents, history_len = info["agents"], model.cfg.history
    buffer = SequenceReplayBuffer(min(config.buffer_size, config.steps), model.obs_dims, model.act_dims)
    history = EpisodeHistory(history_len, model.obs_dims) if history_len else None

    curve, episode_rewards, losses = [], [], []
    step, episode, cancelled = 0, 0, False
    started = time.perf_counter()
    bar = tqdm(total=config.steps, desc=f"{config.algo} {config.env}", unit="step", disable=not config.progress_bar,
               dynamic_ncols=True)
    notify(on_progress, {"event": "stage", "stage": "training"})
    while step < config.steps and not cancelled:
        obs_dict, _ = env.reset(seed=config.seed * 100_003 + episode)
        obs = [obs_dict[a] for a in agents]
        if history is not None:
            history.reset(obs)
        returns, t = np.zeros(len(agents)), 0
        while env.agents and step < config.steps:
            if step < config.warmup and config.init_from is None:
                actions = random_actions(model, rng)
            else:
                actions = model.act(obs, history, explore=True, rng=rng)
            next_dict, rew, term, trunc, _ = env.step({a: env_action(actions[i], config.action_type)
                                                       for i, a in enumerate(agents)})
            next_obs = [next_dict[a] for a in agents]
            rewards = np.array([rew[a] for a in agents], np.float32)
            buffer.add(obs, actions, rewards, next_obs, done=any(term[a] for a in agents), episode_step=t)
            returns += rewards
            obs, t, step = next_obs, t + 1, step + 1
            if history is not None:
                history.push(obs)
            if step >= config.warmup and step % config.update_every == 0 and len(buffer) >= config.batch_size:
                losses.append(model.update(buffer.sample(config.batch_size, rng, history_len)))
            bar.update(1)
        episode += 1
        episode_rewards.append(returns.copy())
        if episode % config.report_every == 0 or step >= config.steps:
            point = curve_point(step, episode, episode_rewards[-config.report_every:], agents, losses[-50:])
            curve.append(point)
            bar.set_postfix(reward=f"{point['episode_reward']:.1f}")
            elapsed = time.perf_counter() - started
            cancelled = not notify(on_progress, {"event": "step", "step": step, "max_steps": config.steps,
                                                 "elapsed_s": round(elapsed, 1),
                                                 "eta_s": round(elapsed / step * (config.steps - step), 1), **point})
    bar.close()
    train_seconds = time.perf_counter() - started
    if cancelled:
        return MARLResult(None, {"steps": step, "episodes": episode}, curve, cancelled=True)

    return _finish(config, model, info, on_progress, curve, {
        "steps": step, "episodes": episode, "updates": len(losses), "train_seconds": train_seconds,
        "episode_rewards": episode_rewards})


def _train_vmas(config: MARLConfig, env, model: MADDPG, info: dict, rng, on_progress) -> MARLResult:
    from training.marl.vector_train import train_vectorised

    notify(on_progress, {"event": "stage", "stage": "training"})
    stats, curve, cancelled = train_vectorised(config, env, model, rng, on_progress, info["agents"], curve_point)
    if cancelled:
        return MARLResult(None, {"steps": stats["steps"], "episodes": stats["episodes"]}, curve, cancelled=True)
    return _finish(config, model, info, on_progress, curve, stats)


def _finish(config: MARLConfig, model: MADDPG, info: dict, on_progress, curve: list[dict], stats: dict) -> MARLResult:
    """Evaluate, write the checkpoint (when out_dir is set) and the metrics."""
    notify(on_progress, {"event": "stage", "stage": "evaluating"})
    evaluation = evaluate(model, config, info["agents"])
    episode_rewards, episode = stats["episode_rewards"], stats["episodes"]
    metrics = {
        "env": config.env, "backend": config.backend, "num_envs": config.num_envs, "algo": config.algo,
        "encoder": model.cfg.encoder, "placement": config.placement,
        "seed": config.seed, "steps": stats["steps"], "episodes": episode, "updates": stats["updates"],
        "train_seconds": round(stats["train_seconds"], 2), "parameters": count_parameters(model),
        "final_train_reward": float(np.mean([r.sum() for r in episode_rewards[-max(1, episode // 10):]])),
        **evaluation,
    }
    checkpoint_dir = None
    if config.out_dir is not None:
        checkpoint_dir = save_checkpoint(Path(config.out_dir), model, config, info, metrics, curve)
    notify(on_progress, {"event": "log", "message": f"eval reward {evaluation['eval_reward']:.2f}"})
    return MARLResult(checkpoint_dir, metrics, curve)


def random_actions(model: MADDPG, rng: np.random.Generator) -> list[np.ndarray]:
    """Warm-up exploration: uniform in [0, 1]^d, or a uniformly chosen one-hot action."""
    if model.action_type == "continuous":
        return [rng.uniform(0.0, 1.0, size=d).astype(np.float32) for d in model.act_dims]
    return [np.eye(d, dtype=np.float32)[rng.integers(d)] for d in model.act_dims]


def curve_point(step: int, episode: int, recent: list[np.ndarray], agents: list[str], losses: list[dict]) -> dict:
    recent_arr = np.array(recent)
    point = {"episode": episode, "episode_reward": float(recent_arr.sum(axis=1).mean())}
    for team, idx in teams(agents).items():
        point[f"reward_{team}"] = float(recent_arr[:, idx].sum(axis=1).mean())
    if losses:
        point["critic_loss"] = float(np.mean([x["critic_loss"] for x in losses]))
        point["actor_loss"] = float(np.mean([x["actor_loss"] for x in losses]))
    return point


def evaluate(model: Lineup, config: MARLConfig, agents: list[str]) -> dict:
    """Greedy policy over `eval_episodes` fixed-seed episodes: mean summed reward, per team too."""
    if config.backend == "vmas":
        from training.marl.vector_train import evaluate_vectorised

        return summarise_returns(evaluate_vectorised(model, config, agents, EVAL_SEED_BASE), agents,
                                 config.eval_episodes)
    env = make_env(config.env, config.action_type)
    history = EpisodeHistory(model.history, model.obs_dims) if model.history else None
    rng = np.random.default_rng(0)
    totals = []
    for k in range(config.eval_episodes):
        obs_dict, _ = env.reset(seed=EVAL_SEED_BASE + k)
        obs = [obs_dict[a] for a in agents]
        if history is not None:
            history.reset(obs)
        returns = np.zeros(len(agents))
        while env.agents:
            actions = model.act(obs, history, explore=False, rng=rng)
            next_dict, rew, _, _, _ = env.step({a: env_action(actions[i], config.action_type)
                                                for i, a in enumerate(agents)})
            returns += [rew[a] for a in agents]
            obs = [next_dict[a] for a in agents]
            if history is not None:
                history.push(obs)
        totals.append(returns)
    return summarise_returns(np.array(totals), agents, config.eval_episodes)


def summarise_returns(totals: np.ndarray, agents: list[str], episodes: int) -> dict:
    """Mean summed return of [episodes, agents] returns, and of each team."""
    result = {"eval_reward": float(totals.sum(axis=1).mean()), "eval_episodes": episodes}
    for team, idx in teams(agents).items():
        result[f"eval_reward_{team}"] = float(totals[:, idx].sum(axis=1).mean())
    return result


def count_parameters(model: MADDPG) -> int:
    return sum(p.numel() for m in (model.actors, model.critics) for p in m.parameters())


def crossplay(folders: dict[str, Path], env_name: str, episodes: int, backend: str = "mpe2") -> dict:
    """Evaluate a lineup in which each team plays with the actors of its own checkpoint (all trained
    on `env_name`), e.g. {"adversary": HRTMADDPG run, "agent": MADDPG run}: a team's policies are
    compared against the same opponents, which self-play rewards of a mixed game cannot do."""
    loaded = {team: load_policy(Path(folder), env_name, backend) for team, folder in folders.items()}
    (model, saved), *_ = loaded.values()
    groups = teams(saved["agents"])
    if set(folders) != set(groups):
        raise MARLCheckpointError(f"lineup: name one checkpoint per team ({', '.join(groups)}), "
                                  f"got {', '.join(folders)}")
    if len({s["action_type"] for _, s in loaded.values()}) > 1:
        raise MARLCheckpointError("action_type: the lineup's checkpoints use different action types")
    actors = [None] * len(saved["agents"])
    for team, indices in groups.items():
        for i in indices:
            actors[i] = loaded[team][0].actors[i]
    lineup = Lineup(actors, model.obs_dims, model.action_type)
    config = MARLConfig(env=env_name, backend=backend, action_type=model.action_type, eval_episodes=episodes)
    return evaluate(lineup, config, saved["agents"])


# ---- checkpoints ------------------------------------------------------------------------------


class MARLCheckpointError(ValueError):
    pass


def save_checkpoint(out_dir: Path, model: MADDPG, config: MARLConfig, info: dict, metrics: dict,
                    curve: list[dict]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(out_dir / "model.safetensors"))
    write_json(out_dir / "config.json", {
        "format": CHECKPOINT_FORMAT, "env": config.env, "backend": config.backend, "algo": config.algo,
        "action_type": config.action_type,
        "agents": info["agents"], "spaces": info["spaces"], "net": asdict(model.cfg),
        "hyperparameters": jsonable(config.hyperparameters()),
    })
    write_json(out_dir / "metrics.json", {**metrics, "curve": curve})
    return out_dir


def read_checkpoint_config(folder: Path) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file() or not (Path(folder) / "model.safetensors").is_file():
        raise MARLCheckpointError(f"checkpoint: {folder} has no config.json and model.safetensors")
    config = json.loads(path.read_text())
    if config.get("format") != CHECKPOINT_FORMAT:
        raise MARLCheckpointError(f"checkpoint: {folder} is not a MARL checkpoint (format {config.get('format')!r})")
    return config


def saved_backend(saved: dict) -> str:
    return saved.get("backend", "mpe2")  # checkpoints from before the VMAS backend are mpe2's


def check_origin(saved: dict, env_name: str, action_type: str, backend: str) -> None:
    """MARLCheckpointError naming the field when the checkpoint comes from another backend, scenario or action type."""
    if saved_backend(saved) != backend:
        raise MARLCheckpointError(f"backend: the checkpoint was trained on backend {saved_backend(saved)!r}, "
                                  f"not {backend!r}")
    if saved["env"] != env_name:
        raise MARLCheckpointError(f"env: the checkpoint was trained on {saved['env']!r}, not {env_name!r}")
    if saved["action_type"] != action_type:
        raise MARLCheckpointError(f"action_type: the checkpoint uses {saved['action_type']!r} actions, not {action_type!r}")


def check_compatible(saved: dict, env_name: str, info: dict, action_type: str, backend: str = "mpe2") -> None:
    check_origin(saved, env_name, action_type, backend)
    if saved["agents"] != info["agents"] or saved["spaces"] != jsonable(info["spaces"]):
        raise MARLCheckpointError("env: the checkpoint's agents or observation/action spaces differ from this environment's")


def load_weights(model: MADDPG, folder: Path, env_name: str, info: dict, action_type: str,
                 backend: str = "mpe2") -> None:
    saved = read_checkpoint_config(folder)
    check_compatible(saved, env_name, info, action_type, backend)
    if asdict(model.cfg)["encoder"] != saved["net"]["encoder"]:
        raise MARLCheckpointError(f"algo: the checkpoint was trained with encoder {saved['net']['encoder']!r}")
    state = load_file(str(Path(folder) / "model.safetensors"))
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise MARLCheckpointError(f"checkpoint: weights do not fit this network ({exc})") from None


def load_policy(folder: Path, env_name: str, backend: str = "mpe2") -> tuple[MADDPG, dict]:
    """The saved model for evaluating on `env_name` of `backend`; refuses a checkpoint from another
    environment or backend."""
    saved = read_checkpoint_config(folder)
    if saved_backend(saved) != backend:
        raise MARLCheckpointError(f"backend: the checkpoint was trained on backend {saved_backend(saved)!r}, "
                                  f"not {backend!r}")
    if saved["env"] != env_name:
        raise MARLCheckpointError(f"env: the checkpoint was trained on {saved['env']!r}, not {env_name!r}")
    config = MARLConfig(**{k: v for k, v in saved["hyperparameters"].items()})
    env = open_env(config, num_envs=1)
    model, info = build(config, env)
    load_weights(model, Path(folder), env_name, info, config.action_type, backend)
    return model, saved


__all__ = ["ALGOS", "MARLConfig", "MARLConfigError", "MARLCheckpointError", "MARLResult", "train_marl",
           "load_policy", "crossplay", "read_checkpoint_config", "EnvError"]
