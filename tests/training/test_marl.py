"""training/marl without Django: buffer histories, encoder causality, soft updates, actions, learning steps."""
import json

import numpy as np
import pytest
import torch

from training.marl.buffer import EpisodeHistory, SequenceReplayBuffer
from training.marl.encoder import HRTEncoder
from training.marl.envs import make_env
from training.marl.maddpg import MADDPG, Lineup, NetConfig, gumbel_softmax, soft_update
from training.marl.options import ENCODER_KINDS
from training.marl.train import (MARLCheckpointError, MARLConfig, MARLConfigError, build, crossplay, load_policy,
                                 random_actions, train_marl)


def fill(buffer: SequenceReplayBuffer, episodes: list[int], start: float = 0.0) -> None:
    """Episodes of the given lengths; agent a's observation at global step g is [start + g + a/10]."""
    g = 0
    for length in episodes:
        for t in range(length):
            obs = [np.array([start + g + a / 10], np.float32) for a in range(2)]
            nxt = [np.array([start + g + 1 + a / 10], np.float32) for a in range(2)]
            buffer.add(obs, [np.zeros(1)] * 2, np.zeros(2), nxt, done=False, episode_step=t)
            g += 1


def test_buffer_histories_stop_at_episode_start_and_end_at_next_obs():
    buffer = SequenceReplayBuffer(100, [1, 1], [1, 1])
    fill(buffer, [5, 5])  # global steps 0-4 episode 1, 5-9 episode 2
    batch = buffer.sample(64, np.random.default_rng(0), history=4)
    for row in range(64):
        g = int(round(batch.obs[0][row, 0]))
        t = g % 5
        for k in range(4):  # k rows back from the newest
            pos = 3 - k
            valid = k <= t
            assert batch.mask[row, pos] == valid
            expected = g - k + 0.1 if valid else 0.0
            assert batch.history[1][row, pos, 0] == pytest.approx(expected)
        assert batch.next_history[1][row, -1, 0] == pytest.approx(g + 1.1)
        assert np.array_equal(batch.next_history[0][row, :-1], batch.history[0][row, 1:])
        assert batch.next_mask[row].tolist() == batch.mask[row, 1:].tolist() + [True]


def test_buffer_masks_rows_the_ring_overwrote():
    buffer = SequenceReplayBuffer(6, [1, 1], [1, 1])
    fill(buffer, [8])  # one long episode; the ring holds global steps 2..7 only
    batch = buffer.sample(200, np.random.default_rng(1), history=4)
    for row in range(200):
        g = int(round(batch.obs[0][row, 0]))
        for k in range(4):
            assert batch.mask[row, 3 - k] == (g - k >= 2)
            if g - k >= 2:
                assert batch.history[0][row, 3 - k, 0] == pytest.approx(g - k)


def test_episode_history_matches_the_buffer_layout():
    history = EpisodeHistory(3, [1])
    history.reset([np.array([1.0])])
    history.push([np.array([2.0])])
    assert history.rows[0][:, 0].tolist() == [0.0, 1.0, 2.0]
    assert history.mask.tolist() == [False, True, True]


@pytest.mark.parametrize("kind", ENCODER_KINDS)
def test_encoder_shapes_and_causality(kind):
    torch.manual_seed(0)
    encoder = HRTEncoder(5, window=3, windows=4, d_model=16, kind=kind).eval()
    x, mask = torch.randn(2, 12, 5), torch.ones(2, 12, dtype=torch.bool)
    per_window = encoder.per_window(x, mask)
    assert per_window.shape == (2, 4, 16) and encoder(x, mask).shape == (2, 16)
    for t in range(3):  # change only the steps after window t: windows 0..t must not move
        changed = x.clone()
        changed[:, (t + 1) * 3:] += torch.randn_like(changed[:, (t + 1) * 3:]) * 5
        after = encoder.per_window(changed, mask)
        assert torch.allclose(after[:, : t + 1], per_window[:, : t + 1], atol=1e-6)
        assert not torch.allclose(after[:, t + 1], per_window[:, t + 1], atol=1e-4)
    with pytest.raises(ValueError, match="history"):
        encoder(torch.randn(2, 11, 5), torch.ones(2, 11, dtype=torch.bool))


def test_soft_update_math():
    torch.manual_seed(0)
    target, source = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.clone() for p in target.parameters()]
    soft_update(target, source, 0.25)
    for t, b, s in zip(target.parameters(), before, source.parameters()):
        assert torch.allclose(t, 0.75 * b + 0.25 * s)
    soft_update(target, source, 1.0)
    assert all(torch.equal(t, s) for t, s in zip(target.parameters(), source.parameters()))


def test_gumbel_softmax_and_acted_actions_are_valid():
    torch.manual_seed(0)
    logits = torch.randn(64, 5, requires_grad=True)
    soft = gumbel_softmax(logits)
    assert torch.all(soft >= 0) and torch.allclose(soft.sum(-1), torch.ones(64))
    soft.sum().backward()  # differentiable
    hard = gumbel_softmax(logits.detach(), hard=True)
    assert torch.equal(hard.sum(-1), torch.ones(64)) and set(hard.unique().tolist()) == {0.0, 1.0}

    rng = np.random.default_rng(0)
    for action_type in ("discrete", "continuous"):
        env = make_env("simple_spread", action_type)
        model, info = build(MARLConfig(action_type=action_type, algo="hrtmaddpg"), env)
        obs, _ = env.reset(seed=0)
        obs = [obs[a] for a in info["agents"]]
        history = EpisodeHistory(model.cfg.history, model.obs_dims)
        history.reset(obs)
        for explore in (True, False):
            for action in model.act(obs, history, explore=explore, rng=rng):
                if action_type == "discrete":
                    assert action.sum() == 1.0 and set(np.unique(action)) <= {0.0, 1.0}
                else:
                    assert action.shape == (5,) and np.all((action >= 0) & (action <= 1))
        env.step({a: (int(np.argmax(x)) if action_type == "discrete" else x)
                  for a, x in zip(info["agents"], model.act(obs, history, True, rng))})


@pytest.mark.parametrize("algo,placement,action_type", [("maddpg", "actor", "discrete"),
                                                        ("hrtmaddpg", "both", "continuous")])
def test_training_steps_change_parameters_with_finite_losses(algo, placement, action_type):
    config = MARLConfig(algo=algo, placement=placement, action_type=action_type, batch_size=16)
    torch.manual_seed(0)
    env = make_env("simple_spread", action_type)
    model, info = build(config, env)
    rng = np.random.default_rng(0)
    buffer = SequenceReplayBuffer(200, model.obs_dims, model.act_dims)
    obs, _ = env.reset(seed=0)
    obs = [obs[a] for a in info["agents"]]
    for t in range(25):
        actions = random_actions(model, rng)
        nxt, rew, _, _, _ = env.step({a: (int(np.argmax(x)) if action_type == "discrete" else x)
                                      for a, x in zip(info["agents"], actions)})
        nxt = [nxt[a] for a in info["agents"]]
        buffer.add(obs, actions, [rew[a] for a in info["agents"]], nxt, done=False, episode_step=t)
        obs = nxt
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for _ in range(3):
        losses = model.update(buffer.sample(16, rng, model.cfg.history))
        assert all(np.isfinite(v) for v in losses.values())
    after = model.state_dict()
    for part in ("actors.0.net.0.weight", "critics.2.net.4.weight", "target_actors.1.net.0.weight"):
        assert not torch.equal(before[part], after[part]), part
    if algo == "hrtmaddpg":  # the history encoders learn too, in actors and critics
        assert not torch.equal(before["actors.0.encoder.rnn.weight_hh_l0"], after["actors.0.encoder.rnn.weight_hh_l0"])
        assert not torch.equal(before["critics.0.encoder.embed.weight"], after["critics.0.encoder.embed.weight"])
    else:
        assert not any("encoder" in k for k in after)


TINY = dict(steps=100, warmup=30, update_every=5, batch_size=16, eval_episodes=1, report_every=1, progress_bar=False)


def test_seeded_runs_repeat_and_report_reward_curves(tmp_path):
    events = []
    first = train_marl(MARLConfig(seed=3, out_dir=tmp_path / "a", **TINY), on_progress=events.append)
    second = train_marl(MARLConfig(seed=3, **TINY))
    assert first.metrics["eval_reward"] == second.metrics["eval_reward"]
    assert [p["episode_reward"] for p in first.curve] == [p["episode_reward"] for p in second.curve]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [25, 50, 75, 100] and all(e["max_steps"] == 100 for e in steps)
    assert all(np.isfinite(e["episode_reward"]) for e in steps) and "eta_s" in steps[0]
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["env"] == "simple_spread" and saved["algo"] == "hrtmaddpg"
    assert saved["spaces"]["agent_0"]["observation"]["shape"] == [18]
    assert saved["spaces"]["agent_0"]["action"] == {"type": "continuous", "shape": [5], "low": 0.0, "high": 1.0}
    assert (tmp_path / "a" / "model.safetensors").is_file()

    model, _ = load_policy(tmp_path / "a", "simple_spread")
    assert torch.equal(model.state_dict()["actors.1.net.0.weight"],
                       _load_tensor(tmp_path / "a", "actors.1.net.0.weight"))
    with pytest.raises(MARLCheckpointError, match="^env: the checkpoint was trained on 'simple_spread'"):
        load_policy(tmp_path / "a", "simple_adversary")
    with pytest.raises(MARLCheckpointError, match="^env:"):
        train_marl(MARLConfig(env="simple_tag", init_from=tmp_path / "a", **TINY))


def test_a_run_stops_when_progress_says_cancelled():
    result = train_marl(MARLConfig(**TINY), on_progress=lambda e: e["event"] != "step")
    assert result.cancelled and result.checkpoint_dir is None and result.metrics["steps"] == 25


def _load_tensor(folder, name):
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))[name]


@pytest.mark.parametrize("changes,field", [
    ({"env": "simple_world"}, "env"), ({"algo": "qmix"}, "algo"), ({"steps": 10}, "steps"),
    ({"steps": 10**9}, "steps"), ({"encoder": "lstm"}, "encoder"), ({"placement": "nowhere"}, "placement"),
    ({"action_type": "binary"}, "action_type"), ({"window": 0}, "window"),
])
def test_bad_config_names_the_field(changes, field):
    with pytest.raises(MARLConfigError, match=f"^{field}: "):
        train_marl(MARLConfig(**changes))


def test_crossplay_lineups_take_each_teams_actors_from_its_checkpoint(tmp_path):
    tiny = dict(TINY, env="simple_adversary", eval_episodes=2)
    plain = train_marl(MARLConfig(algo="maddpg", seed=1, out_dir=tmp_path / "plain", **tiny))
    hrt = train_marl(MARLConfig(algo="hrtmaddpg", seed=2, out_dir=tmp_path / "hrt", **tiny))
    # A run against itself is its own evaluation.
    same = crossplay({"adversary": tmp_path / "hrt", "agent": tmp_path / "hrt"}, "simple_adversary", 2)
    assert same["eval_reward_adversary"] == hrt.metrics["eval_reward_adversary"]
    assert same["eval_reward"] == hrt.metrics["eval_reward"]
    mixed = crossplay({"adversary": tmp_path / "hrt", "agent": tmp_path / "plain"}, "simple_adversary", 2)
    assert mixed["eval_reward_adversary"] not in (hrt.metrics["eval_reward_adversary"],
                                                  plain.metrics["eval_reward_adversary"])
    # The lineup holds the HRT adversary's actor (with its encoder) and MADDPG's good agents.
    hrt_model, _ = load_policy(tmp_path / "hrt", "simple_adversary")
    plain_model, _ = load_policy(tmp_path / "plain", "simple_adversary")
    lineup = Lineup([hrt_model.actors[0], *plain_model.actors[1:]], hrt_model.obs_dims, "continuous")
    assert lineup.history == 16
    with pytest.raises(MARLCheckpointError, match="^lineup: "):
        crossplay({"adversary": tmp_path / "hrt"}, "simple_adversary", 2)
    with pytest.raises(MARLCheckpointError, match="^env: "):
        crossplay({"adversary": tmp_path / "hrt", "agent": tmp_path / "plain"}, "simple_spread", 2)


def test_a_lineup_refuses_encoders_of_different_lengths():
    env = make_env("simple_spread")
    short, _ = build(MARLConfig(window=2, windows=2), env)
    long, _ = build(MARLConfig(window=4, windows=4), env)
    with pytest.raises(ValueError, match=r"^lineup: .*\[4, 16\]"):
        Lineup([short.actors[0], long.actors[1], long.actors[2]], long.obs_dims, "continuous")
