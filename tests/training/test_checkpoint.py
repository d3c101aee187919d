"""Checkpoints load with stock transformers, keep the router biases, and refuse bad folders."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from generation.checkpoint import CheckpointError, load_checkpoint, read_metadata, save_checkpoint
from generation.presets import get_preset
from generation.sampling import generate_greetings
from generation.tokenizer import build_example, build_tokenizer
from training.steps import build_model

CORPUS = ["祝你生日快乐，万事如意！🎂", "新年快乐，身体健康", "考试顺利，金榜题名", "请只生成一条祝福语："]


def biases_of(model):
    return {n: b for n, b in model.named_buffers() if n.endswith("e_score_correction_bias")}


def biases(model):
    return {n: b.clone() for n, b in biases_of(model).items()}


@pytest.fixture(scope="module")
def tiny():
    tokenizer = build_tokenizer(CORPUS)
    model = build_model(get_preset("tiny"), tokenizer, seed=0)
    with torch.no_grad():  # non-zero router biases, as after training, so a dropped buffer shows
        for i, buf in enumerate(biases_of(model).values()):
            buf.copy_(torch.linspace(-0.5, 0.5, buf.numel()) * (i + 1))
    model.eval()
    return model, tokenizer


@pytest.fixture
def saved(tiny, tmp_path):
    model, tokenizer = tiny
    return save_checkpoint(model, tokenizer, tmp_path / "ckpt", {"preset": "tiny", "metrics": {"loss": 1.5}})


def sample_ids(tokenizer):
    ids, _ = build_example(tokenizer, "生日祝福", "祝你生日快乐🎂")
    return torch.tensor([ids])


def test_stock_auto_classes_load_it_with_same_logits_and_biases(tiny, saved):
    model, tokenizer = tiny
    stock = AutoModelForCausalLM.from_pretrained(saved, use_safetensors=True).eval()
    stock_tok = AutoTokenizer.from_pretrained(saved)
    ids = sample_ids(stock_tok)
    assert torch.equal(ids, sample_ids(tokenizer))
    with torch.no_grad():
        assert torch.allclose(stock(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    for name, value in biases(model).items():
        assert torch.equal(biases(stock)[name], value), name
    assert any(v.abs().sum() > 0 for v in biases(stock).values())


def test_load_checkpoint_round_trip(tiny, saved):
    model, tokenizer = tiny
    loaded, loaded_tok = load_checkpoint(saved, expected_config={"model_type": "longcat_flash", "moe_topk": 2})
    ids = sample_ids(loaded_tok)
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5)
    assert biases(loaded).keys() == biases(model).keys()
    assert all(torch.equal(biases(loaded)[k], v) for k, v in biases(model).items())
    assert read_metadata(saved)["metrics"] == {"loss": 1.5}


def test_save_replaces_old_checkpoint_and_leaves_no_temp_folders(tiny, saved):
    model, tokenizer = tiny
    save_checkpoint(model, tokenizer, saved, {"preset": "tiny", "metrics": {"loss": 0.5}})
    assert read_metadata(saved)["metrics"] == {"loss": 0.5}
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt"]


def test_failed_save_keeps_the_old_checkpoint(tiny, saved):
    model, _ = tiny

    class BrokenTokenizer:
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(model, BrokenTokenizer(), saved, {"preset": "broken"})
    assert read_metadata(saved)["preset"] == "tiny"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ckpt"]
    load_checkpoint(saved)


def expect_error(path, match, **kwargs):
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(path, **kwargs)


def test_missing_folder(tmp_path):
    expect_error(tmp_path / "nope", "does not exist")


def test_pickle_only_checkpoint_is_refused(saved):
    (saved / "model.safetensors").rename(saved / "pytorch_model.bin")
    expect_error(saved, "only safetensors")


def test_no_weights(saved):
    (saved / "model.safetensors").unlink()
    expect_error(saved, "no model.safetensors")


def test_corrupt_safetensors(saved):
    weights = saved / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    expect_error(saved, "corrupt safetensors")


def test_garbage_safetensors(saved):
    (saved / "model.safetensors").write_bytes(b"\x00\x01not a safetensors file")
    expect_error(saved, "corrupt safetensors")


def test_config_missing(saved):
    (saved / "config.json").unlink()
    expect_error(saved, "config.json missing")


def test_config_invalid_json(saved):
    (saved / "config.json").write_text("{not json", encoding="utf-8")
    expect_error(saved, "invalid JSON")


def test_config_of_another_model(saved):
    config = json.loads((saved / "config.json").read_text())
    config["model_type"] = "llama"
    (saved / "config.json").write_text(json.dumps(config))
    expect_error(saved, "model_type")


def test_config_mismatch_names_the_keys(saved):
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(saved, expected_config={"hidden_size": 999, "moe_topk": 7, "num_layers": 1})
    message = str(info.value)
    assert "hidden_size" in message and "moe_topk" in message and "num_layers," not in message


def test_weights_that_do_not_fit_the_config(saved):
    config = json.loads((saved / "config.json").read_text())
    config["hidden_size"] = 48
    (saved / "config.json").write_text(json.dumps(config))
    expect_error(saved, "weights do not match|could not be loaded")


def test_tokenizer_missing(saved):
    (saved / "tokenizer.json").unlink()
    expect_error(saved, "tokenizer missing")


def test_generate_greetings_n_strings_and_seeded(tiny):
    model, tokenizer = tiny
    first = generate_greetings(model, tokenizer, "生日祝福", n=3, max_new_tokens=12, seed=7)
    again = generate_greetings(model, tokenizer, "生日祝福", n=3, max_new_tokens=12, seed=7)
    assert len(first) == 3 and all(isinstance(g, str) for g in first)
    assert first == again
    assert not any("<eos>" in g or "请只生成一条祝福语" in g for g in first)


def test_generate_greetings_stops_at_end_token(tiny):
    model, tokenizer = tiny
    # Make <eos> the only likely token: the greeting must come back empty, not run to max_new_tokens.
    with torch.no_grad():
        saved = model.lm_head.weight.clone()
        model.lm_head.weight.zero_()
        model.lm_head.weight[tokenizer.eos_token_id] = 1.0
    try:
        out = generate_greetings(model, tokenizer, "生日祝福", n=2, temperature=0, max_new_tokens=8)
    finally:
        with torch.no_grad():
            model.lm_head.weight.copy_(saved)
    assert out == ["", ""]
