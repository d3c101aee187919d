"""Model and training presets: a LongcatFlashConfig plus the hyperparameters that go with it.

* ``tiny``  tests: trains in seconds.
* ``small`` the demo default: 400 steps of 24 sequences on 2 CPU cores (its held-out loss and
  time: README, Benchmarks, ``python -m bench.heldout``).
* ``base``  for a GPU.

Routing follows LongCat-Flash (arXiv:2509.01322): every token picks ``moe_topk`` = K experts
out of ``n_routed_experts`` real FFN experts plus ``zero_expert_num`` identity ("zero
computation") experts; the router bias is nudged after each step so that on average
``target_real_experts`` = K_e < K of the picks are real experts (rate ``bias_update_rate`` = mu).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from transformers import LongcatFlashConfig


@dataclass(frozen=True)
class Preset:
    name: str
    model: dict  # LongcatFlashConfig arguments; vocab size and token ids come from the tokenizer
    # routing
    target_real_experts: float  # K_e
    bias_update_rate: float  # mu
    balance_groups: int  # balance-loss groups (see training.routing.balance_loss)
    balance_coef: float  # 0 disables the balance loss
    z_loss_coef: float  # 0 disables the hidden z-loss
    # optimisation
    lr: float
    warmup_steps: int
    max_steps: int
    batch_size: int
    seq_len: int
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # bookkeeping
    heldout_fraction: float = 0.05
    log_every: int = 10
    eval_batches: int = 4
    save_every: int = 100
    tokenizer_min_freq: int = 1
    extra: dict = field(default_factory=dict)

    @property
    def moe_topk(self) -> int:
        return self.model["moe_topk"]

    def to_dict(self) -> dict:
        return asdict(self)

    def model_config(self, tokenizer) -> LongcatFlashConfig:
        return LongcatFlashConfig(
            vocab_size=len(tokenizer),
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            max_position_embeddings=self.seq_len,
            **self.model,
        )


def _mla(hidden: int, heads: int, q_rank: int, kv_rank: int, nope: int, rope: int, v: int) -> dict:
    """Multi-head latent attention dimensions (head_dim is the rotary part, as in DeepSeek-V3)."""
    return dict(
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        q_lora_rank=q_rank,
        kv_lora_rank=kv_rank,
        qk_nope_head_dim=nope,
        qk_rope_head_dim=rope,
        qk_head_dim=nope + rope,
        head_dim=rope,
        v_head_dim=v,
    )


# Rope theta is small because sequences are short (a greeting is ~100 tokens).
_ROPE = {"rope_type": "default", "rope_theta": 10000.0}

PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny",
        model=dict(
            **_mla(hidden=32, heads=2, q_rank=16, kv_rank=16, nope=8, rope=8, v=8),
            num_layers=1,
            ffn_hidden_size=64,
            expert_ffn_hidden_size=16,
            n_routed_experts=4,
            zero_expert_num=2,
            moe_topk=2,
            routed_scaling_factor=2.0,
            rope_parameters=_ROPE,
            initializer_range=0.02,
        ),
        target_real_experts=1.5,
        bias_update_rate=0.3,
        balance_groups=1,
        balance_coef=0.01,
        z_loss_coef=1e-5,
        lr=3e-3,
        warmup_steps=2,
        max_steps=30,
        batch_size=8,
        seq_len=64,
        heldout_fraction=0.2,
        log_every=5,
        eval_batches=1,
        save_every=4,
    ),
    "small": Preset(
        name="small",
        model=dict(
            **_mla(hidden=256, heads=4, q_rank=128, kv_rank=64, nope=32, rope=16, v=32),
            num_layers=2,
            ffn_hidden_size=512,
            expert_ffn_hidden_size=256,
            n_routed_experts=16,
            zero_expert_num=8,
            moe_topk=4,
            routed_scaling_factor=4.0,
            rope_parameters=_ROPE,
            initializer_range=0.02,
        ),
        target_real_experts=3.0,
        # Measured (bench.budget, 100 steps): mu 0.01 -> 3.25 and 0.05 -> 3.20 real experts per
        # token after 50 steps (target 3); 0.3 -> 3.00 (step-to-step spread 0.07).
        bias_update_rate=0.3,
        balance_groups=1,
        balance_coef=0.01,
        z_loss_coef=1e-5,
        lr=2e-3,
        warmup_steps=30,
        max_steps=400,  # ~800k tokens, ~2 epochs of sft_data.json; ~5 min at 3k tokens/s
        batch_size=24,
        seq_len=256,  # the request slots and details need room beside a 120-character greeting
        heldout_fraction=0.05,
        log_every=20,
        eval_batches=4,
        save_every=100,
    ),
    "base": Preset(
        name="base",
        model=dict(
            **_mla(hidden=1024, heads=16, q_rank=512, kv_rank=256, nope=64, rope=32, v=64),
            num_layers=8,
            ffn_hidden_size=2816,
            expert_ffn_hidden_size=512,
            n_routed_experts=64,
            zero_expert_num=32,
            moe_topk=8,
            routed_scaling_factor=6.0,
            rope_parameters=_ROPE,
            initializer_range=0.02,
        ),
        target_real_experts=6.0,
        bias_update_rate=0.1,  # not measured on a GPU yet; small needed 0.3 to converge in ~20 steps
        balance_groups=4,
        balance_coef=0.01,
        z_loss_coef=1e-5,
        lr=6e-4,
        warmup_steps=200,
        max_steps=5000,
        batch_size=64,
        seq_len=256,
        heldout_fraction=0.05,
        log_every=50,
        eval_batches=16,
        save_every=500,
    ),
}


class PresetError(KeyError):
    def __str__(self) -> str:
        return self.args[0]


def get_preset(name: str, **overrides) -> Preset:
    """The named preset, with optional field overrides (e.g. max_steps=50)."""
    if name not in PRESETS:
        raise PresetError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]
