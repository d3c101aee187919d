"""The MoE reward model: learning, calibration, the Judge protocol, saving and loading."""
import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from generation.checkpoint import save_checkpoint
from generation.presets import get_preset
from generation.tokenizer import build_tokenizer, example_texts
from training.judges.evaluation import Pair, evaluate_pairs, split_by_query
from training.judges.registry import read_trained_queries
from training.judges.reward_model import (HEAD_FILE, INIT_LR_FACTOR, META_FILE, STEPS_FACTOR, RewardModelConfig,
                                          RewardModelError, RewardModelJudge)
from training.judges.reward_model_training import _build, train_reward_model, validation_split

WARM = ["愿您福寿安康", "新岁启新程，愿你所行皆坦途，所愿皆如意", "桃李满天下", "愿你前程似锦，心中有光，步履不停"]
HOLLOW = ["快乐快乐快乐快乐快乐快乐快乐快乐快乐快乐", "好", "开心开心开心开心开心开心", "哈哈"]


# 2 shared cores: a second OpenMP thread spin-waits against the other processes (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


WARM_PARTS = ["愿您福寿安康", "所行皆坦途", "所愿皆如意", "桃李满天下", "前程似锦", "心中有光", "岁岁常欢愉",
              "平安喜乐", "万事顺遂", "春风得意", "家和人兴", "笑口常开"]
HOLLOW_PARTS = ["快乐", "开心", "好", "哈哈", "嗯", "一般", "还行", "就这样"]


def balanced_pairs(n=160, offset=0):
    """Warm beats hollow, with texts built at random (seeded per pair); in every other pair the
    hollow text is padded to be the longer one, so length alone gets half of them wrong."""
    import random

    pairs = []
    for i in range(offset, offset + n):
        rng = random.Random(i)
        chosen = "，".join(rng.sample(WARM_PARTS, 2))
        rejected = "".join(rng.choice(HOLLOW_PARTS) for _ in range(rng.randint(1, 3)))
        if i % 2:
            while len(rejected) <= len(chosen):
                rejected += rng.choice(HOLLOW_PARTS)
        pairs.append(Pair(f"第{i}号祝福请求", chosen, rejected))
    return pairs


def tiny_cfg(**overrides):
    cfg = dict(preset="tiny", max_steps=40, batch_pairs=8, seed=0, progress_bar=False, eval_every=20)
    cfg.update(overrides)
    return RewardModelConfig(**cfg)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("rm") / "rm"
    result = train_reward_model(balanced_pairs(), tiny_cfg(), folder)
    return result, folder


def test_it_learns_more_than_length(trained):
    result, _ = trained
    heldout = balanced_pairs(40, offset=5000)
    report = evaluate_pairs(heldout, {"rm": result.judge})
    assert report["chosen_not_longer"]["pick_longer"]["accuracy"] == 0.0
    assert report["chosen_not_longer"]["rm"]["count"] == 20
    assert report["chosen_not_longer"]["rm"]["accuracy"] >= 0.9
    assert report["overall"]["rm"]["accuracy"] >= 0.9


def test_history_reports_the_three_subsets_each_evaluation(trained):
    result, _ = trained
    assert [h["step"] for h in result.history] == [20, 40]
    for record in result.history:
        for subset in ("val_overall", "val_chosen_not_longer", "val_length_matched"):
            assert set(record[subset]) == {"accuracy", "correct", "count"}
    assert result.metrics["validation_pairs"] + result.metrics["train_pairs"] == 160


def test_scores_follow_the_calibrated_threshold(trained):
    judge = trained[0].judge
    queries, responses = ["q"] * 4, [WARM[1], HOLLOW[0], WARM[0], HOLLOW[1]]
    rewards = judge.rewards(queries, responses)
    scores = judge.scores(queries, responses)
    for r, s in zip(rewards, scores):
        assert s == pytest.approx(1 / (1 + math.exp(-(r - judge.threshold) / judge.scale)))
    verdict = judge.evaluate("q", WARM[1])
    assert verdict.verdict == ("Good" if verdict.score >= 0.5 else "Bad") and verdict.judge_version == judge.version
    # batched scoring (sorted by length inside) gives each item the score it gets alone
    assert scores == pytest.approx([judge.scores([q], [r])[0] for q, r in zip(queries, responses)], abs=1e-5)
    assert judge.scores([], []) == []


def test_saved_folder_round_trips(trained):
    result, folder = trained
    for name in ("config.json", "model.safetensors", "tokenizer.json", HEAD_FILE, META_FILE, "trained_queries.json"):
        assert (folder / name).is_file(), name
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["preset"] == "tiny" and meta["threshold"] == result.judge.threshold
    assert len(read_trained_queries(folder)) == 160
    loaded = RewardModelJudge.load(folder)
    queries, responses = ["a", "b", "c"], [WARM[0], HOLLOW[2], "一条从没见过的祝福😀"]
    assert loaded.scores(queries, responses) == pytest.approx(result.judge.scores(queries, responses), abs=1e-6)
    assert not list(folder.parent.glob(".rm.tmp-*"))


def _copy(folder, tmp_path):
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(folder, target)
    return target


def test_load_errors_name_the_problem(trained, tmp_path):
    _, folder = trained
    with pytest.raises(RewardModelError, match="does not exist"):
        RewardModelJudge.load(tmp_path / "missing")
    broken = _copy(folder, tmp_path)
    (broken / HEAD_FILE).write_bytes(b"not safetensors at all")
    with pytest.raises(RewardModelError, match="corrupt safetensors"):
        RewardModelJudge.load(broken)
    (broken / HEAD_FILE).unlink()
    with pytest.raises(RewardModelError, match=f"missing {HEAD_FILE}"):
        RewardModelJudge.load(broken)
    save_file({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)}, str(broken / HEAD_FILE))
    with pytest.raises(RewardModelError, match="expected weight"):
        RewardModelJudge.load(broken)
    (broken / META_FILE).write_text("{not json")
    with pytest.raises(RewardModelError, match="invalid JSON"):
        RewardModelJudge.load(broken)
    (broken / META_FILE).unlink()
    with pytest.raises(RewardModelError, match=f"missing {META_FILE}"):
        RewardModelJudge.load(broken)


def test_pickle_only_backbone_is_refused(trained, tmp_path):
    _, folder = trained
    broken = _copy(folder, tmp_path)
    (broken / "model.safetensors").rename(broken / "pytorch_model.bin")
    with pytest.raises(RewardModelError, match="only safetensors are loaded"):
        RewardModelJudge.load(broken)


def test_truncated_backbone_is_refused(trained, tmp_path):
    _, folder = trained
    broken = _copy(folder, tmp_path)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(RewardModelError, match="corrupt safetensors"):
        RewardModelJudge.load(broken)


def test_a_failed_save_leaves_the_old_folder_and_no_debris(trained, tmp_path, monkeypatch):
    _, folder = trained
    target = _copy(folder, tmp_path)
    before = (target / HEAD_FILE).read_bytes()
    import transformers

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(transformers.PreTrainedTokenizerFast, "save_pretrained", boom)
    with pytest.raises(OSError, match="disk full"):
        train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=2), target)
    assert (target / HEAD_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy"]


def test_stopping_early_writes_nothing(tmp_path):
    steps = []

    def stop_at_three(event):
        if event["event"] == "step":
            steps.append(event["step"])
            assert event["eta_s"] >= 0
            return event["step"] < 3

    result = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=10), tmp_path / "rm", on_progress=stop_at_three)
    assert not result.completed and result.folder is None and steps == [1, 2, 3]
    assert not (tmp_path / "rm").exists()


def test_training_is_seeded(tmp_path):
    a = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=4), None).judge
    b = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=4), None).judge
    c = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=4, seed=1), None).judge
    texts = [WARM[1], HOLLOW[0]]
    assert a.rewards(["q", "q"], texts) == pytest.approx(b.rewards(["q", "q"], texts), abs=1e-6)
    assert a.rewards(["q", "q"], texts) != pytest.approx(c.rewards(["q", "q"], texts), abs=1e-6)


def test_default_length_is_the_measured_one():
    result = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=None, eval_every=1000), None)
    assert result.metrics["steps"] == round(get_preset("tiny").max_steps * STEPS_FACTOR)
    assert result.metrics["hard_pair_weight"] == RewardModelConfig().hard_pair_weight == 4.0


def test_bad_input_is_refused():
    with pytest.raises(RewardModelError, match="no usable preference pairs"):
        train_reward_model([Pair("q", "同一条", "同一条")], tiny_cfg(), None)
    with pytest.raises(RewardModelError, match="unknown preset"):
        train_reward_model(balanced_pairs(10), tiny_cfg(preset="huge"), None)
    with pytest.raises(RewardModelError, match="validation_fraction"):
        validation_split(balanced_pairs(10), 1.5)
    with pytest.raises(RewardModelError, match="pooling"):
        train_reward_model(balanced_pairs(10), tiny_cfg(pooling="max"), None)


def test_validation_split_is_by_query_and_independent_of_the_outer_split():
    pairs = [Pair(f"查询{i}", "好", "坏") for i in range(2000)]
    train, heldout = split_by_query(pairs, 0.15)
    inner_train, validation = validation_split(train, 0.1)
    assert 100 < len(validation) < 260  # about 10% of the outer training side, not empty
    assert {p.query for p in validation}.isdisjoint({p.query for p in inner_train})
    assert {p.query for p in validation}.isdisjoint({p.query for p in heldout})


def test_backbone_starts_from_a_generator_checkpoint(tmp_path):
    from transformers import LongcatFlashForCausalLM

    preset = get_preset("tiny")
    tokenizer = build_tokenizer(example_texts([(p.query, p.chosen) for p in balanced_pairs(20)]))
    torch.manual_seed(7)
    lm = LongcatFlashForCausalLM(preset.model_config(tokenizer))
    ckpt = save_checkpoint(lm, tokenizer, tmp_path / "gen")
    model, tok, info = _build(tiny_cfg(init_checkpoint=ckpt), preset, balanced_pairs(20))
    assert info["checkpoint"] == str(ckpt) and len(tok) == len(tokenizer)
    saved = load_file(str(ckpt / "model.safetensors"))
    ours = model.backbone.state_dict()
    assert torch.equal(ours["embed_tokens.weight"], saved["model.embed_tokens.weight"])
    # and it trains from there
    result = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=2, init_checkpoint=ckpt), None)
    assert result.completed and result.metrics["steps"] == 2
    # fine-tuning a trained backbone takes a quarter of the preset's lr unless told otherwise
    assert result.judge.info["lr"] == pytest.approx(preset.lr * INIT_LR_FACTOR)
    assert train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=1), None).judge.info["lr"] == preset.lr
    told = train_reward_model(balanced_pairs(40), tiny_cfg(max_steps=1, init_checkpoint=ckpt, lr=1e-3), None)
    assert told.judge.info["lr"] == 1e-3
    with pytest.raises(RewardModelError, match="does not match preset"):
        _build(tiny_cfg(preset="small", init_checkpoint=ckpt), get_preset("small"), balanced_pairs(20))
    with pytest.raises(RewardModelError, match="cannot start from the generator checkpoint"):
        _build(tiny_cfg(init_checkpoint=tmp_path / "nothing"), preset, balanced_pairs(20))
