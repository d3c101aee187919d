"""training/marl on VMAS: batched rollouts, strided histories, refusals, parity with the mpe2 twins."""
import json

import numpy as np
import pytest
import torch

from training.marl.buffer import BatchHistory, SequenceReplayBuffer
from training.marl.envs import EnvError
from training.marl.parity import mpe2_random_returns, spaces, team_means, vmas_random_returns
from training.marl.train import MARLCheckpointError, MARLConfig, MARLConfigError, load_policy, train_marl
from training.marl.vector_train import updates_due
from training.marl.vmas_env import VmasEnv

TINY = dict(backend="vmas", num_envs=4, steps=200, warmup=40, update_every=5, batch_size=16, eval_episodes=6,
            report_every=4, progress_bar=False)


def test_strided_buffer_gathers_each_environments_own_history():
    n, buffer = 3, SequenceReplayBuffer(10, [1], [1], stride=3)
    assert buffer.capacity == 12  # rounded up to whole rows per environment
    for t in range(5):  # environment e's observation at step t is [10 * e + t]; e=2 restarts at t=3
        steps = np.array([t, t, t if t < 3 else t - 3])
        obs = [np.array([[10 * e + t] for e in range(n)], np.float32)]
        buffer.add_batch(obs, [np.zeros((n, 1))], np.zeros((n, 1)), [obs[0] + 1], np.zeros(n), steps)
    batch = buffer.sample(300, np.random.default_rng(0), history=3)
    for row in range(300):
        value = int(batch.obs[0][row, 0])
        env, t = divmod(value, 10)
        start = 3 if env == 2 and t >= 3 else 0
        for k in range(3):  # k steps back
            valid = t - k >= start and t - k >= 1  # the ring (12 rows) holds steps 1..4 only
            assert batch.mask[row, 2 - k] == valid, (value, k)
            assert batch.history[0][row, 2 - k, 0] == (value - k if valid else 0.0)
    with pytest.raises(ValueError, match="^add_batch: expected 3"):
        buffer.add_batch([np.zeros((2, 1))], [np.zeros((2, 1))], np.zeros((2, 1)), [np.zeros((2, 1))], np.zeros(2),
                         np.zeros(2))


def test_batch_history_restarts_only_the_finished_environments():
    history = BatchHistory(3, [1], 2)
    history.reset([np.array([[1.0], [5.0]])])
    history.push([np.array([[2.0], [6.0]])])
    history.reset([np.array([[9.0], [7.0]])], envs=np.array([True, False]))
    assert history.rows[0][0, :, 0].tolist() == [0.0, 0.0, 9.0] and history.mask[0].tolist() == [False, False, True]
    assert history.rows[0][1, :, 0].tolist() == [0.0, 5.0, 6.0] and history.mask[1].tolist() == [False, True, True]


def test_the_update_schedule_is_the_mpe2_loops_counted_in_frames():
    config = MARLConfig(warmup=100, update_every=8)
    single = sum(1 for s in range(1, 1001) if s >= 100 and s % 8 == 0)  # the mpe2 loop's rule, step by step
    assert sum(updates_due(s, s + 64, config) for s in range(0, 1000, 64)) == \
        sum(1 for s in range(1, 1025) if s >= 100 and s % 8 == 0)
    assert sum(updates_due(s, s + 1, config) for s in range(1000)) == single


def test_a_tiny_vmas_run_trains_repeats_and_saves_its_backend(tmp_path):
    events = []
    first = train_marl(MARLConfig(env="simple_adversary", seed=2, out_dir=tmp_path / "a", **TINY),
                       on_progress=events.append)
    second = train_marl(MARLConfig(env="simple_adversary", seed=2, **TINY))
    m = first.metrics
    assert m["backend"] == "vmas" and m["num_envs"] == 4 and m["steps"] == 200 and m["episodes"] == 8
    assert m["updates"] == sum(1 for s in range(1, 201) if s >= 40 and s % 5 == 0)
    assert m["eval_episodes"] == 6 and np.isfinite(m["eval_reward_adversary"]) and np.isfinite(m["eval_reward_agent"])
    assert m["eval_reward"] == second.metrics["eval_reward"]  # seeded: the same run twice
    assert [p["episode_reward"] for p in first.curve] == [p["episode_reward"] for p in second.curve]
    steps = [e["step"] for e in events if e["event"] == "step"]
    assert steps == [100, 200]  # 4 episodes (one per environment) every 25 vectorised steps
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["backend"] == "vmas" and saved["hyperparameters"]["num_envs"] == 4
    assert saved["spaces"]["adversary_0"]["action"] == {"type": "continuous", "shape": [2], "low": -1.0, "high": 1.0}

    model, _ = load_policy(tmp_path / "a", "simple_adversary", backend="vmas")
    assert model.history == 16
    with pytest.raises(MARLCheckpointError, match="^backend: the checkpoint was trained on backend 'vmas', not 'mpe2'"):
        load_policy(tmp_path / "a", "simple_adversary")
    with pytest.raises(MARLCheckpointError, match="^env: "):
        train_marl(MARLConfig(env="simple_spread", init_from=tmp_path / "a", **TINY))
    with pytest.raises(MARLCheckpointError, match="^backend: "):
        train_marl(MARLConfig(env="simple_adversary", steps=50, eval_episodes=1, progress_bar=False,
                              init_from=tmp_path / "a"))


def test_the_joint_actor_step_trains_every_actor_and_leaves_the_critics_as_their_own_step_left_them():
    """actor_loss="joint" (BenchMARL's): one step through every critic with all current actions."""
    import torch

    from training.marl.buffer import SequenceReplayBuffer
    from training.marl.maddpg import MADDPG, NetConfig

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    models = {kind: MADDPG([6, 6], [2, 2], "continuous", NetConfig(hidden=8, actor_loss=kind)) for kind in ("own", "joint")}
    models["joint"].load_state_dict(models["own"].state_dict())
    buffer = SequenceReplayBuffer(64, [6, 6], [2, 2])
    for _ in range(64):
        buffer.add([rng.normal(size=6).astype(np.float32)] * 2, [rng.uniform(size=2).astype(np.float32)] * 2,
                   rng.normal(size=2), [rng.normal(size=6).astype(np.float32)] * 2, 0.0, 0)
    batch = buffer.sample(32, np.random.default_rng(1), 0)
    before = {k: v.clone() for k, v in models["joint"].state_dict().items()}
    for model in models.values():
        torch.manual_seed(1)
        model.update(batch)
    after = {kind: model.state_dict() for kind, model in models.items()}
    critic_keys = [k for k in before if k.startswith("critics.")]
    actor_keys = [k for k in before if k.startswith("actors.")]
    assert all(torch.equal(after["own"][k], after["joint"][k]) for k in critic_keys)  # same critic steps
    assert all(not torch.equal(before[k], after["joint"][k]) for k in actor_keys if k.endswith("weight"))
    assert any(not torch.equal(after["own"][k], after["joint"][k]) for k in actor_keys)  # another actor step


def test_discrete_actions_run_on_vmas():
    result = train_marl(MARLConfig(env="simple_spread", algo="maddpg", action_type="discrete", **TINY))
    assert result.metrics["updates"] > 0 and np.isfinite(result.metrics["eval_reward"])


@pytest.mark.parametrize("changes,field", [
    ({"backend": "isaac"}, "backend"), ({"backend": "vmas", "env": "simple_world"}, "env"),
    ({"backend": "vmas", "num_envs": 0}, "num_envs"), ({"backend": "vmas", "num_envs": 10**6}, "num_envs"),
    ({"num_envs": 4}, "num_envs"), ({"backend": "vmas", "steps": 10}, "steps"),
    ({"backend": "vmas", "steps": 10**9}, "steps"), ({"backend": "vmas", "num_envs": 8, "steps": 199}, "steps"), ({"backend": "vmas", "eval_episodes": 10**5}, "eval_episodes"),
    ({"actor_loss": "shared"}, "actor_loss"),
])
def test_bad_vmas_config_names_the_field(changes, field):
    with pytest.raises(MARLConfigError, match=f"^{field}: "):
        train_marl(MARLConfig(**changes))


def test_the_env_wrapper_refuses_bad_arguments_naming_them():
    with pytest.raises(EnvError, match="^env: "):
        VmasEnv("simple_world", 2)
    with pytest.raises(EnvError, match="^num_envs: "):
        VmasEnv("simple_spread", 0)


def test_simple_adversary_draws_its_goal_per_environment():
    env = VmasEnv("simple_adversary", 64, seed=0)
    obs = env.reset()
    # A good agent sees the goal's offset first and the landmarks' offsets next: which landmark it is.
    good = obs[1]
    goal_is = np.stack([np.abs(good[:, :2] - good[:, 2 + 2 * k: 4 + 2 * k]).sum(1) < 1e-5 for k in range(2)], 1)
    assert goal_is.sum(1).tolist() == [1] * 64  # the goal is exactly one of the two landmarks
    assert 10 < goal_is[:, 0].sum() < 54  # and not the same one in every environment (VMAS's own draw)
    env.env.reset_at(3)  # resetting one environment redraws only its goal, and keeps it on a landmark
    good = env._numpy(env.env.get_from_scenario(get_observations=True, get_rewards=False, get_infos=False,
                                                get_dones=False)[0])[1]
    assert min(np.abs(good[3, :2] - good[3, 2 + 2 * k: 4 + 2 * k]).sum() for k in range(2)) < 1e-5


@pytest.mark.parametrize("name", ["simple_spread", "simple_adversary", "simple_tag"])
def test_parity_spaces_with_the_mpe2_twin(name):
    both = spaces(name)
    assert both["vmas"]["agents"] == both["mpe2"]["agents"]
    n = len(both["mpe2"]["agents"])
    for agent in both["mpe2"]["agents"]:
        mpe2, vmas = both["mpe2"]["spaces"][agent], both["vmas"]["spaces"][agent]
        # mpe2's simple_spread adds 2 communication numbers per other agent (always 0: its agents are silent).
        comm = 2 * (n - 1) if name == "simple_spread" else 0
        assert vmas["observation"]["shape"][0] == mpe2["observation"]["shape"][0] - comm
        # The same force in the plane: 2 numbers in [-1, 1] on VMAS, 5 in [0, 1] on mpe2 (no-op, -x, +x, -y, +y).
        assert vmas["action"] == {"type": "continuous", "shape": [2], "low": -1.0, "high": 1.0}
        assert mpe2["action"] == {"type": "continuous", "shape": [5], "low": 0.0, "high": 1.0}


def test_parity_random_policy_returns():
    agents = spaces("simple_adversary")["mpe2"]["agents"]
    mpe2 = team_means(mpe2_random_returns("simple_adversary", 100, 0), agents)
    vmas = team_means(vmas_random_returns("simple_adversary", 100, 0), agents)
    for team in ("adversary", "agent"):  # the same reward formulas: within noise of each other
        gap = abs(mpe2[team]["mean"] - vmas[team]["mean"])
        assert gap < 4 * np.hypot(mpe2[team]["sem"], vmas[team]["sem"]), (team, mpe2[team], vmas[team])
    assert mpe2["adversary"]["mean"] < 0 and vmas["adversary"]["mean"] < 0
    # simple_spread: VMAS counts landmark distances once per agent and shares the reward, so its scale differs.
    spread = spaces("simple_spread")["mpe2"]["agents"]
    ratio = (team_means(vmas_random_returns("simple_spread", 50, 0), spread)["agent"]["mean"]
             / team_means(mpe2_random_returns("simple_spread", 50, 0), spread)["agent"]["mean"])
    assert 3 < ratio < 8, ratio


def test_acting_in_batches_matches_acting_one_environment_at_a_time():
    from training.marl.buffer import EpisodeHistory
    from training.marl.train import build, open_env

    torch.manual_seed(0)
    config = MARLConfig(env="simple_spread", backend="vmas", num_envs=3)
    env = open_env(config)
    model, _ = build(config, env)
    obs = env.reset()
    batch = BatchHistory(model.history, model.obs_dims, 3)
    batch.reset(obs)
    singles = [EpisodeHistory(model.history, model.obs_dims) for _ in range(3)]
    for e, h in enumerate(singles):
        h.reset([o[e] for o in obs])
    for _ in range(5):
        actions = model.act_batch(obs, batch, explore=False, rng=np.random.default_rng(0))
        for e, h in enumerate(singles):
            single = model.act([o[e] for o in obs], h, explore=False, rng=np.random.default_rng(0))
            for a in range(3):
                assert np.allclose(single[a], actions[a][e], atol=1e-5)
        obs, _, _, _ = env.step(actions)
        batch.push(obs)
        for e, h in enumerate(singles):
            h.push([o[e] for o in obs])


def test_the_vmas_study_appends_each_run_and_resumes_where_it_stopped(tmp_path, capsys):
    from bench import marl_vmas

    args = ["study", "--envs", "simple_adversary", "--seeds", "1", "--variants", "maddpg,hrt", "--steps", "200",
            "--num-envs", "4", "--update-every", "10", "--eval-episodes", "4", "--out", str(tmp_path / "out"),
            "--checkpoints", str(tmp_path / "ck")]
    marl_vmas.main(args)
    runs = [json.loads(x) for x in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["seed"]) for r in runs] == [("maddpg", 0), ("hrt", 0)]
    assert "xp_random_adversary" in runs[0] and "xp_adversary" in runs[1] and "xp_agent" in runs[1]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["goal"]["figure"].startswith("simple_adversary xp_adversary") and summary["runs"] == 2
    capsys.readouterr()
    marl_vmas.main(args)  # everything done: nothing reruns
    assert "2 runs done, 0 to go" in capsys.readouterr().out
    assert len((tmp_path / "out" / "runs.jsonl").read_text().splitlines()) == 2
    # Resumed on a machine without the checkpoints: the MADDPG partner is retrained (same seed; not
    # always bit-for-bit the recorded run), and the variant is paired with the partner it met.
    import shutil

    shutil.rmtree(tmp_path / "ck")
    (tmp_path / "out" / "runs.jsonl").write_text(json.dumps(runs[0]) + "\n")
    marl_vmas.main(args)
    rerun = [json.loads(x) for x in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert len(rerun) == 2 and "retraining the maddpg checkpoint" in capsys.readouterr().out
    # The variant is paired with the partner it met: the retrained checkpoint's own self-play figures.
    partner = json.loads((tmp_path / "ck" / "simple_adversary" / "maddpg-0" / "metrics.json").read_text())
    assert rerun[1]["partner"] == {"eval_reward": partner["eval_reward"], "xp_adversary": partner["eval_reward_adversary"],
                                   "xp_agent": partner["eval_reward_agent"]}
    from bench.marl_vmas_summary import comparisons

    moved = [dict(rerun[0], xp_adversary=rerun[0]["xp_adversary"] + 100.0), rerun[1]]  # a recorded run unlike the partner
    primary = next(c for c in comparisons(moved) if c["primary"])
    assert primary["diff"] == pytest.approx(rerun[1]["xp_adversary"] - partner["eval_reward_adversary"])
    with pytest.raises(SystemExit, match="^steps: "):  # other settings are refused, not mixed in
        marl_vmas.main([a if a != "200" else "300" for a in args])


def test_secondary_intervals_are_bonferroni_corrected_and_wider():
    from bench.marl_vmas_summary import FIGURES, PRIMARY, comparisons, corrected_interval

    diffs = [0.5, 1.0, -0.2, 0.8, 0.3]
    _, low95, high95 = corrected_interval(diffs, 1)
    _, low8, high8 = corrected_interval(diffs, 8)
    assert low8 < low95 < high95 < high8
    runs = [{"env": env, "variant": v, "seed": s, "eval_reward": s + (v == "hrt"), "xp_adversary": -s, "xp_agent": s}
            for env in FIGURES for v in ("maddpg", "hrt", "rnn_only", "transformer_only") for s in range(3)]
    rows = comparisons(runs)
    assert len(rows) == 9 and sum(r["primary"] for r in rows) == 1
    primary = next(r for r in rows if r["primary"])
    assert (primary["env"], primary["variant"], primary["figure"]) == PRIMARY and primary["level"] == 0.95
    assert {r["level"] for r in rows if not r["primary"]} == {1 - 0.05 / 8}
    spread_hrt = next(r for r in rows if r["env"] == "simple_spread" and r["variant"] == "hrt")
    assert spread_hrt["diff"] == 1.0 and spread_hrt["better_seeds"] == 3


@pytest.mark.parametrize("changes,field", [
    (["--envs", "simple_world"], "envs"), (["--envs", "simple_tag"], "envs"), (["--variants", "maddpg,lstm"], "variants"),
    (["--num-envs", "0"], "num_envs"), (["--num-envs", "5000"], "num_envs"), (["--steps", "10"], "steps"),
    (["--steps", "3000000"], "steps"), (["--num-envs", "64", "--steps", "1000"], "steps"),
    (["--eval-episodes", "5000"], "eval_episodes"),
])
def test_a_bad_study_is_refused_before_any_run_naming_the_field(tmp_path, changes, field):
    from bench import marl_vmas

    options = {"--envs": "simple_adversary", "--seeds": "1", "--steps": "200", "--num-envs": "4",
               "--eval-episodes": "4", "--out": str(tmp_path / "out"), "--checkpoints": str(tmp_path / "ck")}
    options.update(zip(changes[::2], changes[1::2]))
    with pytest.raises(SystemExit, match=f"^{field}: "):
        marl_vmas.main(["study", *[x for pair in options.items() for x in pair]])
    assert not (tmp_path / "out").exists() and not (tmp_path / "ck").exists()  # nothing ran, nothing was written


def test_the_bench_refuses_an_unknown_backend_or_study():
    from bench import marl_vmas

    for argv in (["--backend", "isaac", "study"], ["study", "--study", "1m"]):
        with pytest.raises(SystemExit):
            marl_vmas.main(argv)


def test_the_summary_rebuilds_every_study_and_the_peer_anchor_from_whatever_finished(tmp_path, monkeypatch):
    from bench import marl_vmas_summary as summary

    studies = {name: {**spec, "out": tmp_path / name} for name, spec in summary.STUDIES.items()}
    monkeypatch.setattr(summary, "STUDIES", studies)
    monkeypatch.setattr(summary, "OUT", tmp_path / "100k")
    params = {"steps": 100_000}

    def run(env, variant, seed, **figures):
        return {"env": env, "variant": variant, "seed": seed, "params": params, "steps": 100_000, "wall_s": 60.0,
                "eval_reward": -370.0 - seed,
                "xp_adversary": -18.0 + seed / 10 + (variant == "hrt"), "xp_agent": 15.0, "xp_random_adversary": -26.0,
                "eval_reward_adversary": -18.0, "eval_reward_agent": 15.0,
                **figures}

    rows = [run("simple_adversary", v, s) for s in range(3) for v in ("maddpg", "hrt")]
    rows += [run("simple_spread", "maddpg", s) for s in range(3)]
    (tmp_path / "100k").mkdir()
    (tmp_path / "100k" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    peers = [{"env": "simple_spread", "seed": s, "config": "matched", "eval_reward": -365.0 + s, "wall_s": 300.0}
             for s in range(3)]
    (tmp_path / "100k" / "benchmarl.jsonl").write_text("".join(json.dumps(r) + "\n" for r in peers))
    done = summary.write_all_summaries()
    assert list(done) == ["100k"]  # the 200k study has no runs yet: skipped, not an error
    s100 = json.loads((tmp_path / "100k" / "summary.json").read_text())
    assert s100["complete"] is False and s100["goal"]["met"] is True and s100["goal"]["seeds"] == 3
    (peer,) = s100["peer_anchor"]
    assert peer["benchmarl_config"] == "matched" and peer["diff"] == pytest.approx(-364.0 - (-371.0))
    assert peer["diff_low"] < peer["diff"] < peer["diff_high"]
    text = (tmp_path / "100k" / "summary.md").read_text()
    assert "## Study 100k" in text and "| matched (simple_spread) | 3 |" in text and "hrt (primary)" in text
    assert (tmp_path / "100k" / "study.svg").read_text().startswith("<svg")
    # the 200k study's first pair appears on the next rebuild, with its only secondary at 95%
    (tmp_path / "200k").mkdir()
    (tmp_path / "200k" / "runs.jsonl").write_text("".join(json.dumps(run("simple_adversary", v, s)) + "\n"
                                                          for s in range(2) for v in ("maddpg", "hrt")))
    done = summary.write_all_summaries()
    assert list(done) == ["100k", "200k"] and {c["level"] for c in done["200k"]["comparisons"]} == {0.95}
    assert "## Study 200k" in (tmp_path / "100k" / "summary.md").read_text()
