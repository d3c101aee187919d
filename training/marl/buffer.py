"""A ring replay buffer of transitions that can also hand back each sample's recent history.

Transitions are stored flat, with their step number inside the episode; a sample at index t
can then gather the last `history` observations of each agent ending at t (and ending at the
next observation, for the targets), zero-filled and masked before the episode began or where
the ring already overwrote them.

Vectorised environments add one row per environment per step (`add_batch`): with `stride` N
environments, the previous step of the environment at row t is row t - N, so histories are
gathered N rows apart; the capacity is rounded up to a multiple of N so that each environment
keeps its own column of the ring.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    obs: list[np.ndarray]        # per agent [B, obs_dim]
    actions: list[np.ndarray]    # per agent [B, act_dim]
    rewards: np.ndarray          # [B, agents]
    next_obs: list[np.ndarray]   # per agent [B, obs_dim]
    dones: np.ndarray            # [B]
    history: list[np.ndarray] | None = None       # per agent [B, L, obs_dim], oldest first, ending at obs
    next_history: list[np.ndarray] | None = None  # per agent [B, L, obs_dim], ending at next_obs
    mask: np.ndarray | None = None                # [B, L] valid rows of history
    next_mask: np.ndarray | None = None


class SequenceReplayBuffer:
    def __init__(self, capacity: int, obs_dims: list[int], act_dims: list[int], stride: int = 1):
        if stride < 1:
            raise ValueError("stride: must be at least 1")
        capacity = -(-max(capacity, stride) // stride) * stride  # a whole number of rows per environment
        self.capacity, self.size, self.ptr, self.stride = capacity, 0, 0, stride
        self.obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.next_obs = [np.zeros((capacity, d), np.float32) for d in obs_dims]
        self.actions = [np.zeros((capacity, d), np.float32) for d in act_dims]
        self.rewards = np.zeros((capacity, len(obs_dims)), np.float32)
        self.dones = np.zeros(capacity, np.float32)
        self.episode_step = np.zeros(capacity, np.int64)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, actions, rewards, next_obs, done: bool, episode_step: int) -> None:
        i = self.ptr
        for agent, o in enumerate(obs):
            self.obs[agent][i] = o
            self.next_obs[agent][i] = next_obs[agent]
            self.actions[agent][i] = actions[agent]
        self.rewards[i] = rewards
        self.dones[i] = float(done)
        self.episode_step[i] = episode_step
        self.ptr = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def add_batch(self, obs, actions, rewards, next_obs, dones, episode_steps) -> None:
        """One step of `stride` environments: per agent [N, dim] arrays, rewards [N, agents],
        dones and episode_steps [N]."""
        n = len(dones)
        if n != self.stride:
            raise ValueError(f"add_batch: expected {self.stride} environments, got {n}")
        rows = slice(self.ptr, self.ptr + n)  # never wraps: capacity is a multiple of stride
        for agent in range(len(self.obs)):
            self.obs[agent][rows] = obs[agent]
            self.next_obs[agent][rows] = next_obs[agent]
            self.actions[agent][rows] = actions[agent]
        self.rewards[rows] = rewards
        self.dones[rows] = dones
        self.episode_step[rows] = episode_steps
        self.ptr = (self.ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, rng: np.random.Generator, history: int = 0) -> Batch:
        # Ring positions 0..size-1 hold data; index ptr-1 is the newest.
        idx = rng.integers(0, self.size, size=batch_size)
        batch = Batch(
            obs=[o[idx] for o in self.obs], actions=[a[idx] for a in self.actions], rewards=self.rewards[idx],
            next_obs=[o[idx] for o in self.next_obs], dones=self.dones[idx],
        )
        if history:
            self._attach_history(batch, idx, history)
        return batch

    def _attach_history(self, batch: Batch, idx: np.ndarray, length: int) -> None:
        back = np.arange(length - 1, -1, -1)                        # k steps back, oldest first
        rows_back = back * self.stride                              # the same environment's earlier rows
        positions = (idx[:, None] - rows_back[None, :]) % self.capacity  # [B, L]
        age = (self.ptr - 1 - idx) % self.capacity                  # 0 for the newest transition
        # Row k back is valid when it is in the same episode and the ring still holds it.
        mask = (back[None, :] <= self.episode_step[idx][:, None]) & (age[:, None] + rows_back[None, :] < self.size)
        # The next history drops the oldest row and ends at next_obs, which is always valid.
        next_mask = np.concatenate([mask[:, 1:], np.ones((len(idx), 1), bool)], axis=1)
        batch.history, batch.next_history = [], []
        for agent, obs in enumerate(self.obs):
            seq = obs[positions] * mask[..., None]
            batch.history.append(seq.astype(np.float32))
            batch.next_history.append(np.concatenate([seq[:, 1:], self.next_obs[agent][idx][:, None]], axis=1))
        batch.mask, batch.next_mask = mask, next_mask


class BatchHistory:
    """EpisodeHistory for N environments at once: rows per agent [N, L, dim], mask [N, L]."""

    def __init__(self, length: int, obs_dims: list[int], num_envs: int):
        self.length = length
        self.rows = [np.zeros((num_envs, length, d), np.float32) for d in obs_dims]
        self.mask = np.zeros((num_envs, length), bool)

    def reset(self, obs, envs: np.ndarray | None = None) -> None:
        """Start new episodes in `envs` (a boolean [N] selection; all when None) from `obs`."""
        envs = np.ones(len(self.mask), bool) if envs is None else envs
        for rows, o in zip(self.rows, obs):
            rows[envs] = 0
            rows[envs, -1] = o[envs]
        self.mask[envs] = False
        self.mask[envs, -1] = True

    def push(self, obs) -> None:
        for rows, o in zip(self.rows, obs):
            rows[:, :-1] = rows[:, 1:]
            rows[:, -1] = o
        self.mask[:, :-1] = self.mask[:, 1:]
        self.mask[:, -1] = True


class EpisodeHistory:
    """The rolling last-L observations of each agent while acting, in the buffer's layout."""

    def __init__(self, length: int, obs_dims: list[int]):
        self.length = length
        self.rows = [np.zeros((length, d), np.float32) for d in obs_dims]
        self.mask = np.zeros(length, bool)

    def reset(self, obs) -> None:
        for rows in self.rows:
            rows[:] = 0
        self.mask[:] = False
        self.push(obs)

    def push(self, obs) -> None:
        for rows, o in zip(self.rows, obs):
            rows[:-1] = rows[1:]
            rows[-1] = o
        self.mask[:-1] = self.mask[1:]
        self.mask[-1] = True
