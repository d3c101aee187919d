"""The mpe2 scenarios we train on, headless, through PettingZoo's parallel API."""
from __future__ import annotations

import importlib

import numpy as np

from training.marl.options import ACTION_TYPES
from training.marl.options import ENV_MODULES as ENVS
EPISODE_LENGTH = 25  # MPE's customary max_cycles


class EnvError(ValueError):
    pass


def make_env(name: str, action_type: str = "continuous", max_cycles: int = EPISODE_LENGTH):
    if name not in ENVS:
        raise EnvError(f"env: unknown environment {name!r}; choose one of {', '.join(ENVS)}")
    if action_type not in ACTION_TYPES:
        raise EnvError(f"action_type: unknown {action_type!r}; choose one of {', '.join(ACTION_TYPES)}")
    module = importlib.import_module(ENVS[name])
    return module.parallel_env(max_cycles=max_cycles, continuous_actions=action_type == "continuous",
                               render_mode=None)


def describe_spaces(env) -> dict:
    """What a checkpoint records so loading can refuse a mismatched environment."""
    agents = list(env.possible_agents)
    spaces = {}
    for agent in agents:
        obs, act = env.observation_space(agent), env.action_space(agent)
        spaces[agent] = {
            "observation": {"shape": list(obs.shape)},
            "action": ({"type": "continuous", "shape": list(act.shape), "low": float(np.min(act.low)),
                        "high": float(np.max(act.high))} if hasattr(act, "low") else
                       {"type": "discrete", "n": int(act.n)}),
        }
    return {"agents": agents, "spaces": spaces}


def action_dim(space: dict) -> int:
    action = space["action"]
    return action["shape"][0] if action["type"] == "continuous" else action["n"]


def teams(agents: list[str]) -> dict[str, list[int]]:
    """Agent indices per team (adversary_*, agent_*): mixed scenarios report each team's reward."""
    grouped: dict[str, list[int]] = {}
    for i, agent in enumerate(agents):
        grouped.setdefault(agent.rsplit("_", 1)[0], []).append(i)
    return grouped
