"""training/rl without Django: reward penalties, GRPO loss math, evaluation metrics, bootstrap and gate."""
import copy
import json
import math

import pytest
import torch

from generation.checkpoint import read_metadata
from tests.conftest import GREETINGS
from training.data.prompts import PromptFileError, read_prompts
from training.judges.length import LengthJudge
from training.rl.evaluation import (
    CopyDetector,
    EvalSettings,
    EvaluationError,
    bootstrap_interval,
    distinct_n,
    evaluate_generation,
    novelty,
)
from training.rl.gate import gate, paired_bootstrap_difference
from training.rl.grpo import (
    GRPOConfig,
    GRPOError,
    Rollout,
    batch_queries,
    group_advantages,
    grpo_loss,
    grpo_update,
    k3_kl,
    pack,
    token_logprobs,
    train_grpo,
)
from training.rl.rewards import (
    DiversityBank,
    RewardConfig,
    compute_rewards,
    diversity_penalties,
    length_penalty,
    repetition_penalty,
    requested_length,
)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny SFT checkpoint on the conftest greetings (a few seconds)."""
    from training.trainer import TrainConfig, train_model

    folder = tmp_path_factory.mktemp("rl")
    data = folder / "sft.json"
    data.write_text(json.dumps([{"instruction": q, "input": "", "output": r} for q, r in GREETINGS * 3],
                               ensure_ascii=False))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_model(TrainConfig(preset="tiny", data_paths=[data], out_dir=folder / "sft", progress_bar=False))
    finally:
        torch.set_num_threads(threads)
    return result.checkpoint_dir


# --------------------------------------------------------------------------------------------
# Rewards


def test_length_bounds_follow_the_request():
    cfg = RewardConfig()
    assert requested_length("生日祝福 简短一点", cfg) == (cfg.min_chars, cfg.short_max)
    assert requested_length("给老师的祝福 详细", cfg)[0] == cfg.long_min
    assert requested_length("写一段20字的生日祝福", cfg) == (14, 26)
    assert requested_length("七十生日祝福语", cfg) == (cfg.min_chars, cfg.max_chars)


def test_length_penalty_only_outside_the_bounds_and_capped():
    cfg = RewardConfig()
    assert length_penalty("简短的生日祝福", "生日快乐，万事如意！", cfg) == 0.0
    long_text = "祝" * 60
    short_request = length_penalty("简短的生日祝福", long_text, cfg)
    assert short_request == pytest.approx(cfg.length_coef * (60 - cfg.short_max) / cfg.short_max)
    assert length_penalty("七十生日祝福语", long_text, cfg) == 0.0  # 60 characters are fine without a wish
    assert length_penalty("七十生日祝福语", "祝" * 1000, cfg) == cfg.length_coef  # capped
    assert length_penalty("七十生日祝福语", "好", cfg) > 0  # too short


def test_repetition_penalty_catches_padding_not_normal_text():
    normal = "愿您福如东海，寿比南山，身体康健，笑口常开。"
    padded = normal + "祝您快乐祝您快乐祝您快乐祝您快乐祝您快乐祝您快乐"
    assert repetition_penalty(normal) == 0.0
    assert 0 < repetition_penalty(padded) <= RewardConfig().repetition_coef


def test_rewards_combine_judge_score_and_penalties():
    judge = LengthJudge(10)
    rewards = compute_rewards(judge, ["简短的祝福", "简短的祝福", "祝福"], ["生日快乐万事如意心想事成", "祝" * 80, ""],
                              truncated=[False, True, False])
    assert rewards[0].total == pytest.approx(rewards[0].judge_score)  # inside the bounds, no repetition
    assert rewards[1].length_penalty > 0 and rewards[1].repetition_penalty > 0 and rewards[1].truncation_penalty > 0
    assert rewards[1].total < rewards[0].total  # the longer text the length judge likes loses after penalties
    assert rewards[2].judge_score == 0.0


def test_reward_config_rejects_bad_values():
    with pytest.raises(ValueError, match="min_chars"):
        RewardConfig(min_chars=0)
    with pytest.raises(ValueError, match="length_coef"):
        RewardConfig(length_coef=-1)


TEMPLATE = "如星辰般闪耀，如春风般轻盈"


def test_diversity_penalty_lowers_the_sample_that_repeats_its_group_and_recent_rollouts():
    cfg = RewardConfig(diversity_coef=2.0)
    group = ["生日快乐！" + TEMPLATE, "生日快乐！" + TEMPLATE + "，天天开心", "愿你笑口常开，岁岁平安", "福如东海，寿比南山"]
    bank = DiversityBank(size=8, n=cfg.diversity_ngram)
    bank.add(["新年快乐！" + TEMPLATE, "中秋快乐！" + TEMPLATE])
    penalties = diversity_penalties(group, 4, bank, cfg)
    assert min(penalties[:2]) > max(penalties[2:])  # the two templated samples pay, the distinct ones hardly
    assert all(0 <= p <= cfg.diversity_coef for p in penalties)
    assert len(bank) == 6  # the group joined the bank after being judged against it
    # the advantages (group-normalised totals) now favour the distinct samples under a flat judge
    totals = torch.tensor([1.0 - p for p in penalties])
    adv = group_advantages(totals, 4)
    assert adv[2] > 0 and adv[3] > 0 and adv[0] < 0 and adv[1] < 0
    assert diversity_penalties(group, 4, None, RewardConfig()) == [0.0] * 4  # off by default


def test_diversity_bank_forgets_the_oldest_rollouts():
    bank = DiversityBank(size=2, n=2)
    bank.add(["甲乙丙", "丁戊己"])
    grams = frozenset({"甲乙", "乙丙"})
    assert bank.containment(grams) == pytest.approx(0.5)  # found in one of the two remembered texts
    bank.add(["庚辛壬", "癸子丑"])  # both earlier texts pushed out
    assert len(bank) == 2 and bank.containment(grams) == 0.0 and "甲乙" not in bank.frequency
    assert DiversityBank(size=0).containment(grams) == 0.0


def test_copy_penalty_only_for_near_copies_of_training_greetings():
    cfg = RewardConfig(copy_coef=0.5)
    detector = CopyDetector([r for _, r in GREETINGS])
    copy_, fresh = GREETINGS[0][1], "愿你的每一天都像拆礼物一样充满惊喜和欢笑"
    rewards = compute_rewards(LengthJudge(10), ["祝福", "祝福"], [copy_, fresh], cfg, copies=detector)
    assert rewards[0].copy_penalty == 0.5 and rewards[1].copy_penalty == 0.0
    assert rewards[0].total == pytest.approx(rewards[0].judge_score - rewards[0].length_penalty
                                             - rewards[0].repetition_penalty - 0.5)
    with pytest.raises(ValueError, match="diversity_coef"):
        RewardConfig(diversity_coef=-1)


# --------------------------------------------------------------------------------------------
# GRPO math


def test_group_advantages_are_normalised_within_each_group():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 0.5, 0.5, 0.5, 0.5])
    adv = group_advantages(rewards, 4).view(2, 4)
    assert adv[0].mean().abs() < 1e-6
    assert adv[0].std(unbiased=False) == pytest.approx(1.0, abs=1e-3)
    assert torch.all(adv[0][1:] > adv[0][:-1])  # order kept
    assert torch.all(adv[1] == 0)  # a group with one reward carries no signal
    with pytest.raises(ValueError):
        group_advantages(torch.ones(6), 4)


def test_k3_is_non_negative_and_zero_when_policy_equals_reference():
    torch.manual_seed(0)
    logp, ref = -torch.rand(100) * 5, -torch.rand(100) * 5
    assert torch.all(k3_kl(logp, ref) >= 0)
    assert torch.all(k3_kl(logp, logp) == 0)
    # an unbiased estimate of KL(p||q): on samples of p it averages to the true KL
    p, q = torch.tensor([0.7, 0.2, 0.1]), torch.tensor([0.4, 0.4, 0.2])
    samples = torch.multinomial(p, 200_000, replacement=True, generator=torch.Generator().manual_seed(0))
    estimate = k3_kl(p.log()[samples], q.log()[samples]).mean()
    assert estimate == pytest.approx(float((p * (p / q).log()).sum()), rel=0.02)


def test_grpo_loss_is_the_clipped_surrogate_plus_kl():
    logp = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    old = logp.clone()
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = grpo_loss(logp, old, logp, adv, mask, clip_eps=0.2, kl_coef=0.001)
    # ratio 1, KL 0: loss = -mean over tokens of A = -(1 + 1 - 1) / 3
    assert float(loss) == pytest.approx(-1 / 3)
    assert stats["kl"] == 0.0 and stats["clip_fraction"] == 0.0
    # a ratio far above 1 + eps with a positive advantage is clipped: no more gain
    loss_hi, stats_hi = grpo_loss(old + 1.0, old, old, torch.tensor([1.0, 1.0]), mask, 0.2, 0.0)
    assert float(loss_hi) == pytest.approx(-1.2)
    assert stats_hi["clip_fraction"] == 1.0


def _fixed_rollouts(tokenizer):
    from generation.tokenizer import encode_prompt

    rollouts = []
    for query, response in GREETINGS[:2]:
        for text in (response, response[:6]):
            ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
            rollouts.append(Rollout(query, encode_prompt(tokenizer, query), ids, text, False))
    return rollouts


def test_a_grpo_step_changes_parameters_and_lowers_the_loss_on_its_batch(tiny_checkpoint, one_thread):
    from generation.checkpoint import load_checkpoint

    model, tokenizer = load_checkpoint(tiny_checkpoint)
    reference = copy.deepcopy(model)
    rollouts = _fixed_rollouts(tokenizer)
    advantages = group_advantages(torch.tensor([1.0, 0.0, 1.0, 0.0]), 2)
    ids, mask = pack(rollouts, tokenizer.pad_token_id, "cpu")
    assert mask.sum() == sum(len(r.completion_ids) for r in rollouts)
    with torch.no_grad():
        old = token_logprobs(model, ids)
        ref = token_logprobs(reference, ids)
        before, stats = grpo_loss(old, old, ref, advantages, mask, 0.2, 0.001)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-6)  # policy == reference
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    cfg = GRPOConfig(init_checkpoint=tiny_checkpoint, out_dir=tiny_checkpoint, prompts=["x"], group_size=2)
    grpo_update(model, reference, optimizer, rollouts, advantages, cfg, tokenizer.pad_token_id)
    changed = sum(not torch.equal(weights[n], p) for n, p in model.named_parameters())
    assert changed > 0
    with torch.no_grad():
        after, after_stats = grpo_loss(token_logprobs(model, ids), old, ref, advantages, mask, 0.2, 0.001)
    assert float(after) < float(before)
    assert after_stats["kl"] > 0


def test_train_grpo_runs_saves_and_refuses_bad_config(tiny_checkpoint, tmp_path, one_thread):
    queries = [q for q, _ in GREETINGS]
    events = []
    cfg = GRPOConfig(init_checkpoint=tiny_checkpoint, out_dir=tmp_path / "grpo", prompts=queries, max_steps=2,
                     prompts_per_step=2, max_new_tokens=16, progress_bar=False, save_every=1)
    result = train_grpo(cfg, LengthJudge(10), on_progress=lambda e: events.append(e) or True)
    assert result.completed and (result.checkpoint_dir / "model.safetensors").is_file()
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == [1, 2]
    for key in ("reward", "kl", "loss", "pass_rate", "real_experts_per_token"):
        assert all(math.isfinite(e[key]) for e in steps), key
    assert not list(tmp_path.glob("grpo/.checkpoint.tmp-*"))  # written through a temp folder, renamed into place
    # the GRPO checkpoint reads requests as its parent did
    assert read_metadata(result.checkpoint_dir)["prompt_format"] == read_metadata(tiny_checkpoint)["prompt_format"] == "query"
    # resumable: two more steps continue from step 2
    resumed = train_grpo(GRPOConfig(**{**vars(cfg), "max_steps": 4}), LengthJudge(10), resume=True)
    assert resumed.steps == 4 and len(resumed.history) == 4
    # the anti-collapse terms run inside the loop and are logged
    guarded = GRPOConfig(**{**vars(cfg), "out_dir": tmp_path / "guarded", "max_steps": 2, "training_greetings":
                            [r for _, r in GREETINGS], "reward": RewardConfig(diversity_coef=1.0, copy_coef=0.5)})
    history = train_grpo(guarded, LengthJudge(10)).history
    assert sum(h["diversity_penalty"] for h in history) > 0 and all(h["copy_penalty"] >= 0 for h in history)
    assert all(0 < h["distinct_2"] <= 1 for h in history)
    with pytest.raises(GRPOError, match="group_size"):
        train_grpo(GRPOConfig(**{**vars(cfg), "group_size": 1}), LengthJudge(10))
    with pytest.raises(GRPOError, match="prompts"):
        train_grpo(GRPOConfig(**{**vars(cfg), "prompts": []}), LengthJudge(10))


def test_a_cancelled_grpo_run_writes_no_checkpoint(tiny_checkpoint, tmp_path, one_thread):
    cfg = GRPOConfig(init_checkpoint=tiny_checkpoint, out_dir=tmp_path / "g", prompts=["生日祝福"], max_steps=5,
                     prompts_per_step=1, max_new_tokens=8, progress_bar=False)
    result = train_grpo(cfg, LengthJudge(10), on_progress=lambda e: e["event"] != "step")
    assert not result.completed and result.checkpoint_dir is None and result.steps == 1
    assert not (tmp_path / "g" / "checkpoint").exists() and (tmp_path / "g" / "state" / "state.json").is_file()


def test_batch_queries_are_a_function_of_seed_and_step():
    prompts = [f"q{i}" for i in range(5)]
    assert batch_queries(prompts, 3, 4, 0) == batch_queries(prompts, 3, 4, 0)
    first_epoch = [q for step in range(5) for q in batch_queries(prompts, step, 1, 0)]
    assert sorted(first_epoch) == prompts  # every prompt once per epoch


# --------------------------------------------------------------------------------------------
# Evaluation metrics


def test_distinct_n_on_known_strings():
    assert distinct_n(["abab"], 1) == 0.5
    assert distinct_n(["abab"], 2) == pytest.approx(2 / 3)
    assert distinct_n(["ab", "ab"], 2) == 0.5
    assert distinct_n(["a"], 2) == 0.0


def test_novelty_counts_verbatim_and_near_verbatim_copies():
    training = ["愿您福如东海，寿比南山，身体康健，笑口常开。", "恭喜高升！实至名归，愿你在新岗位上大展宏图。"]
    detector = CopyDetector(training)
    verbatim = training[0]
    near = "愿您福如东海，寿比南山，身体康健，天天开心。"  # last clause changed: most 8-grams shared
    stitched_phrases = "生日快乐！愿您福如东海，也愿你大展宏图，天天都有好心情呀。"  # set phrases, not a copy
    fresh = "春风十里，不如你笑；愿新的一岁，眼里有光，心中有梦。"
    assert detector.is_copy(verbatim) and detector.is_copy(" " + verbatim + " ")
    assert detector.overlap(near) > 0.5 and detector.is_copy(near)
    assert not detector.is_copy(stitched_phrases) and not detector.is_copy(fresh)
    assert novelty([verbatim, near, stitched_phrases, fresh], detector) == 0.5
    assert novelty(["x"], None) is None


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_data():
    values = [1.0, 0.0] * 10
    lo, hi = bootstrap_interval(values, seed=1)
    assert lo < 0.5 < hi
    lo2, hi2 = bootstrap_interval(values * 10, seed=1)
    assert hi2 - lo2 < hi - lo
    assert bootstrap_interval([0.3] * 5) == (pytest.approx(0.3), pytest.approx(0.3))


def _report(per_prompt, novelty_=1.0, distinct2=0.8):
    return {"per_prompt_pass": per_prompt, "pass_rate": sum(per_prompt) / len(per_prompt), "novelty": novelty_,
            "distinct_2": distinct2}


def test_gate_promotes_only_a_gain_beyond_noise_without_collapse():
    active = _report([0.25] * 40)
    better = _report([0.75] * 30 + [0.25] * 10)
    noisy = _report([0.5, 0.0] * 20)  # same mean as the active one plus noise
    assert gate(better, active).promote
    refused = gate(noisy, active)
    assert not refused.promote and refused.difference_ci95[0] <= 0 <= refused.difference_ci95[1]
    assert "not beyond noise" in refused.reasons[0]
    copying = gate(_report(better["per_prompt_pass"], novelty_=0.90), active)
    assert not copying.promote and any("floor" in r for r in copying.reasons)
    dropping = gate(_report(better["per_prompt_pass"], novelty_=0.96), _report(active["per_prompt_pass"], 1.0))
    assert not dropping.promote and any("dropped" in r for r in dropping.reasons)
    collapsed = gate(_report(better["per_prompt_pass"], distinct2=0.5), active)
    assert not collapsed.promote and collapsed.checks == {"pass_rate": True, "novelty": True, "diversity": False}
    assert not gate(_report([1.0] * 5), active).promote  # different prompt sets are never compared


def test_paired_bootstrap_uses_the_pairing():
    # per-prompt difficulty varies a lot; the candidate is better by 0.1 on every prompt
    active = [i / 50 for i in range(50)]
    candidate = [a + 0.1 for a in active]
    diff, (lo, hi) = paired_bootstrap_difference(candidate, active)
    assert diff == pytest.approx(0.1) and lo == pytest.approx(0.1) and hi == pytest.approx(0.1)
    with pytest.raises(ValueError):
        paired_bootstrap_difference([1.0], [1.0, 2.0])


def test_evaluate_generation_report_on_a_tiny_checkpoint(tiny_checkpoint, one_thread):
    queries = [q for q, _ in GREETINGS]
    report = evaluate_generation(tiny_checkpoint, queries, LengthJudge(10), tiny_checkpoint,
                                 training_greetings=[g for _, g in GREETINGS],
                                 settings=EvalSettings(samples=2, max_new_tokens=24), keep_greetings=True)
    assert report["greetings"] == 12 and len(report["per_prompt_pass"]) == 6
    kept = report["all_greetings"]
    assert [k["query"] for k in kept] == [q for q in queries for _ in range(2)]
    assert sum(k["judge_score"] >= 0.5 for k in kept) / 12 == pytest.approx(report["pass_rate"])
    lo, hi = report["pass_rate_ci95"]
    assert lo <= report["pass_rate"] <= hi
    assert report["kl_to_reference"]["kl_per_token"] == pytest.approx(0.0, abs=1e-6)  # itself as the reference
    assert 0 <= report["novelty"] <= 1 and 0 < report["distinct_2"] <= 1
    with pytest.raises(EvaluationError, match="prompts"):
        evaluate_generation(tiny_checkpoint, ["  "], LengthJudge(10))
    with pytest.raises(EvaluationError, match="samples"):
        evaluate_generation(tiny_checkpoint, queries, LengthJudge(10), settings=EvalSettings(samples=0))


def test_read_prompts_reads_query_lines_and_names_bad_files_with_their_field(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("七十生日祝福语\n\n古风新年祝福语\n七十生日祝福语\n", encoding="utf-8")
    assert read_prompts(path) == ["七十生日祝福语", "古风新年祝福语"]
    assert read_prompts(path, limit=1) == ["七十生日祝福语"]
    with pytest.raises(PromptFileError, match="does not exist") as missing:
        read_prompts(tmp_path / "missing.txt", field="prompts_file")
    assert missing.value.field == "prompts_file"
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(PromptFileError, match="prompts: .*empty"):
        read_prompts(tmp_path / "empty.txt")
    with pytest.raises(PromptFileError, match="holds no prompts"):
        read_prompts(tmp_path / "empty.txt", fmt="queries")
    assert read_prompts(tmp_path / "empty.txt", fmt="queries", require=False) == []
    pairs = tmp_path / "pairs.json"
    pairs.write_text('[{"conversations": [{"from": "human", "value": "生日祝福"}], "chosen": {"from": "gpt", "value": '
                     '"生日快乐"}, "rejected": {"from": "gpt", "value": "好"}}]', encoding="utf-8")
    with pytest.raises(PromptFileError, match="expected a verl parquet file or one query a line"):
        read_prompts(pairs)
    assert read_prompts(pairs, formats=None) == ["生日祝福"]


def test_judge_stage_leaves_out_heldout_queries_and_sets_an_excellence_bar(tmp_path):
    from training.judges.registry import query_hash, read_trained_queries
    from training.rl.pipeline import judge_stage

    warm = ["愿您福寿安康，笑口常开，儿孙绕膝", "新岁启新程，愿你所行皆坦途", "祝老师桃李满天下，岁岁常安康",
            "愿你前程似锦，心中有光，步履不停"]
    pairs = [{"conversations": [{"from": "human", "value": f"第{i}号祝福"}], "chosen": {"from": "gpt", "value": warm[i % 4]},
              "rejected": {"from": "gpt", "value": "祝你快乐快乐"}} for i in range(40)]
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(pairs, ensure_ascii=False), encoding="utf-8")
    judge = judge_stage(pair_files=[path], out_dir=tmp_path / "j", exclude_queries=["第0号祝福", "第1号祝福"])
    trained = read_trained_queries(tmp_path / "j")
    assert len(trained) == 38 and query_hash("第0号祝福") not in trained
    assert judge.info["pairs"] == 38
    strict = judge_stage(pair_files=[path], out_dir=tmp_path / "k", excellence_quantile=0.5)
    chosen_pass = [s >= 0.5 for s in strict.scores([""] * 4, warm)]
    assert 0 < sum(chosen_pass) < 4  # about half the chosen greetings clear an excellence bar at the median
