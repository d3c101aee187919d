"""Random LongCat-Flash models and a small real tokenizer, for tests and the bench (no checkpoint needed)."""
from __future__ import annotations

import torch
from transformers import LongcatFlashForCausalLM

from generation.presets import get_preset
from generation.tokenizer import build_tokenizer

SAMPLE_TEXTS = [
    "请只生成一条祝福语：新年快乐",
    "祝你新年快乐，万事如意，身体健康，阖家幸福！",
    "生日快乐，愿你心想事成，前程似锦。",
    '{"verdict": "Good", "score": 0.75, "reason": "true false null"}',
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 -+.,:;!?'\"{}[]()eE",
]


def toy_tokenizer():
    """Our character tokenizer trained on a few lines: Chinese, ASCII and every JSON character."""
    return build_tokenizer(SAMPLE_TEXTS)


def random_model(tokenizer, preset: str = "small", seed: int = 0, max_position_embeddings: int = 1024, **overrides):
    """A randomly initialised model of the preset's shapes, fp32, eval mode."""
    config = get_preset(preset).model_config(tokenizer)
    config.max_position_embeddings = max_position_embeddings
    for key, value in overrides.items():
        setattr(config, key, value)
    torch.manual_seed(seed)
    model = LongcatFlashForCausalLM(config).eval()
    # zero router bias is the init; a random one exercises the bias path of routing too
    for module in model.modules():
        if hasattr(module, "e_score_correction_bias"):
            module.e_score_correction_bias.normal_(0, 0.01)
    return model
