"""The trainer on the tiny preset: it learns, logs, resumes exactly, and names bad inputs."""
import json

import pytest
import torch
from safetensors.torch import load_file

from generation.checkpoint import load_checkpoint
from generation.presets import PRESETS, get_preset
from generation.sampling import generate_greetings
from training.trainer import TrainConfig, TrainingError, train_model

OCCASIONS = ["生日", "新年", "中秋", "考试", "升学", "乔迁", "结婚", "退休", "教师节", "母亲节"]


@pytest.fixture
def corpus(tmp_path):
    rows = []
    for i, occasion in enumerate(OCCASIONS):
        for j in range(4):
            rows.append({"query": f"{occasion}祝福语{j}", "response": f"祝你{occasion}快乐，万事如意，心想事成！🎉{i}",
                         "label": 1})
    rows.append({"query": "生日祝福语0", "response": "不好的祝福", "label": 0})
    path = tmp_path / "greetings.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return path


def config(corpus, out_dir, **kwargs):
    return TrainConfig(preset="tiny", data_paths=[corpus], out_dir=out_dir, progress_bar=False, **kwargs)


def test_tiny_trains_logs_and_writes_a_loadable_checkpoint(corpus, tmp_path):
    events = []
    result = train_model(config(corpus, tmp_path / "run"), on_progress=events.append)
    losses = [m["loss"] for m in result.history]
    assert result.completed and len(losses) >= 3
    assert losses[-1] < losses[0] - 0.5  # it learns, not just noise
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [m["step"] for m in result.history]
    for key in ("loss", "heldout_loss", "grad_norm", "tokens_per_s", "real_experts_per_token_mean",
                "real_experts_per_token_std", "expert_load", "router_entropy", "lr"):
        assert key in logged[-1], key
    assert {e["event"] for e in events} == {"step", "log", "done"}
    assert sum(e["event"] == "step" for e in events) == get_preset("tiny").max_steps
    assert result.data["examples"] == len(OCCASIONS) * 4  # the label-0 response is left out
    assert result.data["train_examples"] + result.data["heldout_examples"] == result.data["examples"]
    assert result.metrics["heldout_loss"] is not None
    model, tokenizer = load_checkpoint(result.checkpoint_dir, expected_config={"vocab_size": len(tokenizer_of(result))})
    assert len(generate_greetings(model, tokenizer, "生日祝福语", n=2, max_new_tokens=8, seed=1)) == 2


def tokenizer_of(result):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(result.checkpoint_dir)


def test_router_bias_is_updated_and_saved(corpus, tmp_path):
    result = train_model(config(corpus, tmp_path / "run", max_steps=6))
    weights = load_file(result.checkpoint_dir / "model.safetensors")
    bias = [v for k, v in weights.items() if k.endswith("e_score_correction_bias")]
    assert bias and any(b.abs().sum() > 0 for b in bias)  # update_router_bias moved them off zero


def final_weights(run_dir):
    return load_file(run_dir / "checkpoint" / "model.safetensors")


def test_deterministic_resume_equals_an_uninterrupted_run(corpus, tmp_path):
    steps = 10
    straight = train_model(config(corpus, tmp_path / "a", deterministic=True, max_steps=steps))

    def stop_at_step_7(event):
        return not (event["event"] == "step" and event["step"] == 7)

    cut = train_model(config(corpus, tmp_path / "b", deterministic=True, max_steps=steps), on_progress=stop_at_step_7)
    assert not cut.completed and cut.checkpoint_dir is None
    assert json.loads((tmp_path / "b" / "state" / "state.json").read_text())["step"] == 7
    seen = []
    resumed = train_model(config(corpus, tmp_path / "b", deterministic=True, max_steps=steps), resume=True,
                          on_progress=seen.append)
    assert resumed.completed
    assert seen[0]["step"] == 8  # continues after the saved step, does not start over
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])]
    assert [m["loss"] for m in straight.history] == [m["loss"] for m in resumed.history]


def test_resume_with_a_different_config_is_refused(corpus, tmp_path):
    train_model(config(corpus, tmp_path / "run", max_steps=4))
    with pytest.raises(TrainingError, match="max_steps"):
        train_model(config(corpus, tmp_path / "run", max_steps=5), resume=True)
    with pytest.raises(TrainingError, match="seed"):
        train_model(config(corpus, tmp_path / "run", max_steps=4, seed=3), resume=True)


def test_resume_with_nothing_saved(corpus, tmp_path):
    with pytest.raises(TrainingError, match="nothing to resume"):
        train_model(config(corpus, tmp_path / "empty"), resume=True)


def test_unknown_preset_names_the_valid_ones(corpus, tmp_path):
    with pytest.raises(TrainingError) as info:
        train_model(TrainConfig(preset="huge", data_paths=[corpus], out_dir=tmp_path))
    assert "huge" in str(info.value) and all(name in str(info.value) for name in PRESETS)


def test_missing_data_file(tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        train_model(TrainConfig(preset="tiny", data_paths=[tmp_path / "nope.json"], out_dir=tmp_path / "r"))


def test_empty_corpus(tmp_path):
    path = tmp_path / "bad_only.jsonl"
    path.write_text(json.dumps({"query": "生日", "response": "差", "label": 0}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(TrainingError, match="empty"):
        train_model(TrainConfig(preset="tiny", data_paths=[path], out_dir=tmp_path / "r"))


def test_malformed_data_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('[{"instruction": "生日", "output": ', encoding="utf-8")
    with pytest.raises(TrainingError, match="broken.json"):
        train_model(TrainConfig(preset="tiny", data_paths=[path], out_dir=tmp_path / "r"))


def test_pretrain_objective_puts_loss_on_every_token(corpus, tmp_path):
    result = train_model(config(corpus, tmp_path / "pt", max_steps=3, objective="pretrain"))
    assert result.completed and result.metrics["loss"] > 0
    with pytest.raises(TrainingError, match="objective"):
        train_model(config(corpus, tmp_path / "x", objective="rlhf"))


def test_pretraining_documents_then_sft_from_the_pretrained_weights(corpus, tmp_path):
    documents = tmp_path / "corpus.jsonl"
    poems = ["床前明月光，疑是地上霜。", "春眠不觉晓，处处闻啼鸟。", "白日依山尽，黄河入海流。"] * 4
    documents.write_text("\n".join(json.dumps({"text": t, "source": "t"}, ensure_ascii=False) for t in poems),
                         encoding="utf-8")
    pre = train_model(config(corpus, tmp_path / "pre", max_steps=3, objective="pretrain", text_paths=[documents],
                             max_texts=5))
    assert pre.data["plain_texts"] == 5 and str(documents) in pre.data["paths"]
    from transformers import AutoTokenizer

    from training.steps import build_model

    tokenizer = AutoTokenizer.from_pretrained(pre.checkpoint_dir)
    start = build_model(get_preset("tiny"), tokenizer, 0, pre.checkpoint_dir).state_dict()
    saved = load_checkpoint(pre.checkpoint_dir, fast_moe=False)[0].state_dict()
    assert start.keys() == saved.keys() and all(torch.equal(start[k], saved[k]) for k in saved)  # SFT starts there
    sft = train_model(config(corpus, tmp_path / "sft", max_steps=2, init_checkpoint=pre.checkpoint_dir))
    tokens = json.loads((sft.checkpoint_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    assert "霜" in tokens  # the tokenizer is the pretraining one, which saw the documents

    documents.write_text('{"text": "好"}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(TrainingError, match="line 2"):
        train_model(config(corpus, tmp_path / "bad", max_steps=1, objective="pretrain", text_paths=[documents]))


def test_get_preset_error_lists_presets():
    with pytest.raises(KeyError, match="tiny, small, base"):
        get_preset("nope")
    small = get_preset("small")
    assert small.target_real_experts < small.moe_topk
    assert small.model["n_routed_experts"] == 16 and small.model["zero_expert_num"] == 8
