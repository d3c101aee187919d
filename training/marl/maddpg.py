"""MADDPG (Lowe et al. 2017) with optional HRT history encoders in the actors and/or critics.

Actors are decentralised (agent i sees its own observation, and its own observation history
when its actor has an encoder); critics are centralised (all observations and all actions,
plus the joint observation history when the critic has an encoder).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.marl.buffer import Batch, BatchHistory, EpisodeHistory
from training.marl.encoder import HRTEncoder



@dataclass
class NetConfig:
    hidden: int = 64
    encoder: str | None = None   # None (plain MADDPG) or an encoder kind: hrt, rnn, transformer
    placement: str = "actor"      # where encoders feed: actor, critic or both
    window: int = 4
    windows: int = 4
    d_model: int = 32
    heads: int = 2
    layers: int = 1
    lr_actor: float = 1e-3
    lr_critic: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.01
    grad_clip: float = 0.5
    action_reg: float = 1e-3  # penalty on actor pre-activations, as in the reference MADDPG
    noise: float = 0.1        # Gaussian exploration noise for continuous actions
    # "own": agent i's actor through its critic with the others' buffer actions (Lowe et al.); "joint": every
    # actor through every critic with all agents' current actions (TorchRL's DDPGLoss, so BenchMARL's MADDPG)
    actor_loss: str = "own"

    @property
    def history(self) -> int:
        return self.window * self.windows if self.encoder else 0

    def encodes(self, part: str) -> bool:
        return self.encoder is not None and self.placement in (part, "both")


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


def make_encoder(input_dim: int, cfg: NetConfig) -> HRTEncoder:
    return HRTEncoder(input_dim, window=cfg.window, windows=cfg.windows, d_model=cfg.d_model, heads=cfg.heads,
                      layers=cfg.layers, kind=cfg.encoder)


class Actor(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, cfg: NetConfig):
        super().__init__()
        self.encoder = make_encoder(obs_dim, cfg) if cfg.encodes("actor") else None
        extra = self.encoder.out_dim if self.encoder else 0
        self.net = mlp(obs_dim + extra, cfg.hidden, act_dim)

    def forward(self, obs, history=None, mask=None) -> torch.Tensor:
        """Action logits (pre-activations)."""
        if self.encoder is not None:
            obs = torch.cat([obs, self.encoder(history, mask)], dim=-1)
        return self.net(obs)


class Critic(nn.Module):
    def __init__(self, obs_dims: list[int], act_dims: list[int], cfg: NetConfig):
        super().__init__()
        self.encoder = make_encoder(sum(obs_dims), cfg) if cfg.encodes("critic") else None
        extra = self.encoder.out_dim if self.encoder else 0
        self.net = mlp(sum(obs_dims) + sum(act_dims) + extra, cfg.hidden, 1)

    def encode(self, joint_history, mask) -> torch.Tensor | None:
        return self.encoder(joint_history, mask) if self.encoder is not None else None

    def forward(self, obs: list, actions: list, encoding: torch.Tensor | None = None) -> torch.Tensor:
        """Q from all observations and actions (and the joint-history encoding when the critic has one)."""
        parts = list(obs) + list(actions) + ([encoding] if encoding is not None else [])
        return self.net(torch.cat(parts, dim=-1)).squeeze(-1)


def gumbel_softmax(logits: torch.Tensor, temperature: float = 1.0, hard: bool = False) -> torch.Tensor:
    """A differentiable sample of a one-hot action (torch's global generator, so seeded runs repeat)."""
    return F.gumbel_softmax(logits, tau=temperature, hard=hard, dim=-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source, parameter by parameter."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.mul_(1.0 - tau).add_(s, alpha=tau)


def hard_update(target: nn.Module, source: nn.Module) -> None:
    target.load_state_dict(source.state_dict())


class Lineup(nn.Module):
    """Decentralised acting: one actor per agent. MADDPG acts through its own actors; a lineup can
    also take each agent's actor from a different trained model (cross-play evaluation)."""

    def __init__(self, actors, obs_dims: list[int], action_type: str, noise: float = 0.1):
        super().__init__()
        self.actors = nn.ModuleList(actors)
        self.obs_dims, self.action_type, self.noise = obs_dims, action_type, noise
        # Acting keeps one rolling history, so every encoder must read the same number of steps.
        lengths = {a.encoder.history for a in self.actors if a.encoder is not None}
        if len(lengths) > 1:
            raise ValueError(f"lineup: the actors' encoders read different history lengths {sorted(lengths)}")
        self.history = lengths.pop() if lengths else 0  # steps of history acting keeps (0: no encoder)

    # ---- acting -----------------------------------------------------------------------------

    def to_action(self, logits: torch.Tensor, explore: bool) -> torch.Tensor:
        """Differentiable action from logits: sigmoid in [0, 1], or a Gumbel-softmax sample."""
        if self.action_type == "continuous":
            return torch.sigmoid(logits)
        return gumbel_softmax(logits) if explore else F.one_hot(logits.argmax(-1), logits.shape[-1]).float()

    @torch.no_grad()
    def act(self, obs: list[np.ndarray], history: EpisodeHistory | None, explore: bool,
            rng: np.random.Generator) -> list[np.ndarray]:
        """One action per agent: [0, 1]^d vectors (continuous) or one-hot vectors (discrete)."""
        actions = []
        for i, actor in enumerate(self.actors):
            o = torch.as_tensor(obs[i], dtype=torch.float32).unsqueeze(0)
            if actor.encoder is not None:
                hist = torch.as_tensor(history.rows[i]).unsqueeze(0)
                mask = torch.as_tensor(history.mask).unsqueeze(0)
                logits = actor(o, hist, mask)[0]
            else:
                logits = actor(o)[0]
            if self.action_type == "continuous":
                a = torch.sigmoid(logits).numpy()
                if explore:
                    a = np.clip(a + rng.normal(0.0, self.noise, size=a.shape), 0.0, 1.0)
                actions.append(a.astype(np.float32))
            else:
                a = gumbel_softmax(logits, hard=True) if explore else F.one_hot(logits.argmax(-1), logits.shape[-1])
                actions.append(a.float().numpy())
        return actions


    @torch.no_grad()
    def act_batch(self, obs: list[np.ndarray], history: BatchHistory | None, explore: bool,
                  rng: np.random.Generator) -> list[np.ndarray]:
        """`act` for N environments at once: per agent [N, obs_dim] in, [N, act_dim] out."""
        actions = []
        for i, actor in enumerate(self.actors):
            o = torch.as_tensor(obs[i], dtype=torch.float32)
            if actor.encoder is not None:
                logits = actor(o, torch.as_tensor(history.rows[i]), torch.as_tensor(history.mask))
            else:
                logits = actor(o)
            if self.action_type == "continuous":
                a = torch.sigmoid(logits).numpy()
                if explore:
                    a = np.clip(a + rng.normal(0.0, self.noise, size=a.shape), 0.0, 1.0)
                actions.append(a.astype(np.float32))
            else:
                a = gumbel_softmax(logits, hard=True) if explore else F.one_hot(logits.argmax(-1), logits.shape[-1])
                actions.append(a.float().numpy())
        return actions


class MADDPG(Lineup):
    def __init__(self, obs_dims: list[int], act_dims: list[int], action_type: str, cfg: NetConfig):
        n = len(obs_dims)
        super().__init__([Actor(obs_dims[i], act_dims[i], cfg) for i in range(n)], obs_dims, action_type, cfg.noise)
        self.act_dims, self.cfg = act_dims, cfg
        self.critics = nn.ModuleList(Critic(obs_dims, act_dims, cfg) for _ in range(n))
        self.target_actors = nn.ModuleList(Actor(obs_dims[i], act_dims[i], cfg) for i in range(n))
        self.target_critics = nn.ModuleList(Critic(obs_dims, act_dims, cfg) for _ in range(n))
        hard_update(self.target_actors, self.actors)
        hard_update(self.target_critics, self.critics)
        for p in list(self.target_actors.parameters()) + list(self.target_critics.parameters()):
            p.requires_grad_(False)
        self.actor_optims = [torch.optim.Adam(a.parameters(), lr=cfg.lr_actor) for a in self.actors]
        self.critic_optims = [torch.optim.Adam(c.parameters(), lr=cfg.lr_critic) for c in self.critics]

    # ---- learning ---------------------------------------------------------------------------

    def update(self, batch: Batch) -> dict:
        cfg = self.cfg
        t = lambda xs: [torch.as_tensor(x) for x in xs]  # noqa: E731
        obs, next_obs, actions = t(batch.obs), t(batch.next_obs), t(batch.actions)
        rewards, dones = torch.as_tensor(batch.rewards), torch.as_tensor(batch.dones)
        hist = t(batch.history) if batch.history is not None else [None] * len(obs)
        next_hist = t(batch.next_history) if batch.next_history is not None else [None] * len(obs)
        mask = torch.as_tensor(batch.mask) if batch.mask is not None else None
        next_mask = torch.as_tensor(batch.next_mask) if batch.next_mask is not None else None
        joint = torch.cat(hist, dim=-1) if cfg.encodes("critic") else None
        next_joint = torch.cat(next_hist, dim=-1) if cfg.encodes("critic") else None

        with torch.no_grad():
            next_actions = [self.to_action(actor(next_obs[j], next_hist[j], next_mask), explore=True)
                            for j, actor in enumerate(self.target_actors)]

        critic_losses, actor_losses = [], []
        for i in range(len(self.actors)):
            with torch.no_grad():
                target_critic = self.target_critics[i]
                target_q = target_critic(next_obs, next_actions, target_critic.encode(next_joint, next_mask))
                y = rewards[:, i] + cfg.gamma * (1.0 - dones) * target_q
            encoding = self.critics[i].encode(joint, mask)
            q = self.critics[i](obs, actions, encoding)
            critic_loss = F.mse_loss(q, y)
            self.critic_optims[i].zero_grad()
            critic_loss.backward()
            nn.utils.clip_grad_norm_(self.critics[i].parameters(), cfg.grad_clip)
            self.critic_optims[i].step()
            critic_losses.append(critic_loss.item())
            if cfg.actor_loss == "joint":
                continue
            logits = self.actors[i](obs[i], hist[i], mask)
            joint_actions = list(actions)
            joint_actions[i] = self.to_action(logits, explore=True)
            # The critic's history encoding is reused (detached): the actor step does not train the critic.
            encoding = encoding.detach() if encoding is not None else None
            actor_loss = -self.critics[i](obs, joint_actions, encoding).mean() + cfg.action_reg * (logits ** 2).mean()
            self.actor_optims[i].zero_grad()
            actor_loss.backward()
            nn.utils.clip_grad_norm_(self.actors[i].parameters(), cfg.grad_clip)
            self.actor_optims[i].step()
            actor_losses.append(actor_loss.item())
        if cfg.actor_loss == "joint":
            actor_losses.append(self.joint_actor_step(obs, hist, mask, joint))

        soft_update(self.target_actors, self.actors, cfg.tau)
        soft_update(self.target_critics, self.critics, cfg.tau)
        return {"critic_loss": float(np.mean(critic_losses)), "actor_loss": float(np.mean(actor_losses))}

    def joint_actor_step(self, obs, hist, mask, joint) -> float:
        """actor_loss="joint": all actors at once, -mean_i Q_i(s, pi_1(o_1), ..., pi_n(o_n)), as TorchRL's
        DDPGLoss does for a group (its critics' parameters are not trained by this step)."""
        cfg = self.cfg
        logits = [actor(obs[j], hist[j], mask) for j, actor in enumerate(self.actors)]
        current = [self.to_action(x, explore=True) for x in logits]
        values = []
        for i, critic in enumerate(self.critics):
            encoding = critic.encode(joint, mask)
            values.append(critic(obs, current, encoding.detach() if encoding is not None else None).mean())
        loss = -torch.stack(values).mean() + cfg.action_reg * torch.stack([(x ** 2).mean() for x in logits]).mean()
        for optim in self.actor_optims:
            optim.zero_grad()
        for critic in self.critics:
            critic.zero_grad(set_to_none=True)
        loss.backward()
        for actor, optim in zip(self.actors, self.actor_optims):
            nn.utils.clip_grad_norm_(actor.parameters(), cfg.grad_clip)
            optim.step()
        for critic in self.critics:  # the critics were stepped already; drop the actor step's gradients on them
            critic.zero_grad(set_to_none=True)
        return float(loss.item())
