"""A VMAS scenario beside its mpe2 twin: spaces per agent and random-policy returns per team.

Random policy: uniform actions in each backend's own action space as our actors see it
([0, 1]^d continuous, mapped by each backend onto its force), summed over an episode of 25
steps, per team (adversary_*, agent_*), averaged over episodes.
"""
from __future__ import annotations

import numpy as np

from training.marl.envs import EPISODE_LENGTH, describe_spaces, make_env, teams
from training.marl.vmas_env import VmasEnv


def spaces(name: str) -> dict:
    """{"mpe2": describe_spaces, "vmas": describe_spaces} for one scenario."""
    return {"mpe2": describe_spaces(make_env(name)), "vmas": describe_spaces(VmasEnv(name, 1))}


def mpe2_random_returns(name: str, episodes: int, seed: int) -> np.ndarray:
    """[episodes, agents] returns of uniformly random continuous actions on mpe2."""
    env, rng = make_env(name), np.random.default_rng(seed)
    totals = []
    for k in range(episodes):
        env.reset(seed=seed * 100_003 + k)
        agents, returns = list(env.possible_agents), np.zeros(len(env.possible_agents))
        while env.agents:
            _, rewards, _, _, _ = env.step({a: rng.uniform(0, 1, env.action_space(a).shape).astype(np.float32)
                                            for a in env.agents})
            returns += [rewards[a] for a in agents]
        totals.append(returns)
    return np.array(totals)


def vmas_random_returns(name: str, episodes: int, seed: int) -> np.ndarray:
    """[episodes, agents] returns of uniformly random continuous actions on VMAS, all episodes at once."""
    env, rng = VmasEnv(name, episodes, seed=seed), np.random.default_rng(seed)
    env.reset()
    totals = np.zeros((episodes, len(env.agents)))
    for _ in range(EPISODE_LENGTH):
        actions = [rng.uniform(0, 1, (episodes, env.action_space(a).shape[0])).astype(np.float32) for a in env.agents]
        _, rewards, _, _ = env.step(actions)
        totals += rewards
    return totals


def team_means(returns: np.ndarray, agents: list[str]) -> dict[str, dict]:
    """Per team: mean episode return (summed over the team's agents) and its standard error."""
    out = {}
    for team, idx in teams(agents).items():
        per_episode = returns[:, idx].sum(axis=1)
        out[team] = {"mean": float(per_episode.mean()),
                     "sem": float(per_episode.std(ddof=1) / np.sqrt(len(per_episode)))}
    return out


def random_returns(name: str, episodes: int = 200, seed: int = 0) -> dict:
    """{"mpe2": team_means, "vmas": team_means} of the random policy on both backends."""
    agents = describe_spaces(make_env(name))["agents"]
    return {"mpe2": team_means(mpe2_random_returns(name, episodes, seed), agents),
            "vmas": team_means(vmas_random_returns(name, episodes, seed), agents)}
