"""VMAS (vectorised MPE in PyTorch) behind the small interface the vectorised trainer needs.

`VmasEnv(name, num_envs)` steps N copies of a scenario at once: observations and actions are
per-agent numpy arrays [N, dim]. Our actors emit continuous actions in [0, 1] (sigmoid, as for
mpe2); they are mapped onto VMAS's force range ([-1, 1] per axis) here, so the MADDPG update
does not change between backends. Discrete actions are one-hot and sent as indices.

Differences from mpe2 that matter for comparisons (measured in tests/training/test_marl_vmas.py and
`python -m bench.marl_vmas parity`, written up in the README):
- actions: VMAS takes a 2-d force in [-1, 1] (mpe2: 5 numbers in [0, 1] whose differences,
  times a sensitivity of 5, are the force), and 9 discrete moves (mpe2: 5);
- observations: simple_spread has no communication slots (14 numbers, mpe2 18 with 4 that
  silent agents always leave 0) and puts position before velocity;
- rewards: VMAS simple_spread gives every agent one shared reward in which the landmark
  distances count once per agent, and collisions once per ordered pair (mpe2 mixes a global
  and a local term half and half), so its scale is several times mpe2's;
- simple_adversary: VMAS draws one goal landmark for all N environments of a reset; we draw
  it per environment (`PerEnvGoalAdversary`), as mpe2 does per episode, so that N parallel
  episodes (and a batch of fixed evaluation episodes) are not all about the same landmark.

Seeding: VMAS draws resets from torch's global generator; `VmasEnv(seed=...)` seeds it.
"""
from __future__ import annotations

import contextlib
import io
import warnings
from types import SimpleNamespace

import numpy as np
import torch

from training.marl.envs import EPISODE_LENGTH, EnvError
from training.marl.options import ACTION_TYPES, MAX_NUM_ENVS, MIN_NUM_ENVS, VMAS_SCENARIOS


def import_vmas():
    # vmas imports the old gym for its spaces, which prints a deprecation notice on import
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        import vmas
    return vmas


def per_env_goal_adversary():
    """VMAS's simple_adversary with the goal landmark drawn per environment, not per batch."""
    import_vmas()
    from vmas.scenarios.mpe.simple_adversary import Scenario

    class PerEnvGoalAdversary(Scenario):
        def reset_world_at(self, env_index: int | None = None):
            super().reset_world_at(env_index)
            world = self.world
            if not hasattr(self, "goal"):
                self.goal = SimpleNamespace(state=SimpleNamespace(
                    pos=torch.zeros(world.batch_dim, world.dim_p, device=world.device)), size=0.08)
            landmarks = torch.stack([landmark.state.pos for landmark in world.landmarks], dim=1)  # [N, L, 2]
            envs = torch.arange(world.batch_dim, device=world.device) if env_index is None else \
                torch.tensor([env_index], device=world.device)
            picks = torch.randint(0, len(world.landmarks), (len(envs),), device=world.device)
            self.goal.state.pos[envs] = landmarks[envs, picks]
            for agent in world.agents:  # the rewards and good agents' observations read agent.goal
                agent.goal = self.goal

    return PerEnvGoalAdversary()


def make_scenario(name: str):
    return per_env_goal_adversary() if name == "simple_adversary" else name


def check_vmas_args(name: str, num_envs: int, action_type: str) -> None:
    if name not in VMAS_SCENARIOS:
        raise EnvError(f"env: unknown VMAS scenario {name!r}; choose one of {', '.join(VMAS_SCENARIOS)}")
    if not MIN_NUM_ENVS <= num_envs <= MAX_NUM_ENVS:
        raise EnvError(f"num_envs: {num_envs} is out of range [{MIN_NUM_ENVS}, {MAX_NUM_ENVS}]")
    if action_type not in ACTION_TYPES:
        raise EnvError(f"action_type: unknown {action_type!r}; choose one of {', '.join(ACTION_TYPES)}")


class VmasEnv:
    def __init__(self, name: str, num_envs: int, action_type: str = "continuous", seed: int = 0,
                 max_steps: int = EPISODE_LENGTH, device: str = "cpu"):
        check_vmas_args(name, num_envs, action_type)
        vmas = import_vmas()
        self.name, self.num_envs, self.action_type = name, num_envs, action_type
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.env = vmas.make_env(make_scenario(name), num_envs=num_envs, device=device,
                                     continuous_actions=action_type == "continuous", max_steps=max_steps,
                                     seed=seed, terminated_truncated=True)
        self.agents = [agent.name for agent in self.env.agents]
        self.possible_agents = self.agents
        spaces = self.env.action_space.spaces
        self.action_low = [torch.as_tensor(s.low) if hasattr(s, "low") else None for s in spaces]
        self.action_high = [torch.as_tensor(s.high) if hasattr(s, "high") else None for s in spaces]

    def observation_space(self, agent: str):
        return self.env.observation_space.spaces[self.agents.index(agent)]

    def action_space(self, agent: str):
        return self.env.action_space.spaces[self.agents.index(agent)]

    def reset(self) -> list[np.ndarray]:
        return self._numpy(self.env.reset())

    def reset_done(self, done: np.ndarray) -> list[np.ndarray]:
        """Start new episodes where `done` [N] is set; the observations of every environment."""
        if done.all():
            return self.reset()
        obs = None
        for index in np.flatnonzero(done):
            obs = self.env.reset_at(int(index))
        return self._numpy(obs)

    def step(self, actions: list[np.ndarray]):
        """Per-agent actions [N, act_dim] (in [0, 1], or one-hot) -> next observations, rewards
        [N, agents], terminated [N], truncated [N] (the episode-length limit)."""
        obs, rewards, terminated, truncated, _ = self.env.step(self.to_env_actions(actions))
        return (self._numpy(obs), torch.stack(rewards, dim=1).numpy(), terminated.numpy().copy(),
                truncated.numpy().copy())

    def to_env_actions(self, actions: list[np.ndarray]) -> list[torch.Tensor]:
        if self.action_type == "discrete":
            return [torch.as_tensor(a).argmax(-1) for a in actions]
        return [low + torch.as_tensor(a) * (high - low) for a, low, high in zip(actions, self.action_low,
                                                                              self.action_high)]

    @staticmethod
    def _numpy(obs) -> list[np.ndarray]:
        return [o.numpy().astype(np.float32, copy=True) for o in obs]
