"""The fast MoE path computes what transformers' LongcatFlashExperts loop computes: outputs and gradients."""
import copy

import pytest
import torch
from transformers import LongcatFlashConfig, LongcatFlashForCausalLM
from transformers.models.longcat_flash.modeling_longcat_flash import LongcatFlashExperts, LongcatFlashTopkRouter

from generation.moe import disable_fast_moe, enable_fast_moe, fast_moe_enabled
from kernels.moe import moe_forward, moe_forward_reference, moe_forward_torch

VOCAB = 61


# 2 shared cores: a second OpenMP thread spin-waits against the other processes (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


CONFIGS = {
    # hidden 32, 4 real + 2 zero experts, top-2: zero-only tokens are possible
    "h32_e4z2_k2": dict(hidden=32, heads=2, experts=4, zero=2, topk=2, inter=16, layers=2, act="silu"),
    # hidden 64, 8 real + 4 zero, top-3, another activation
    "h64_e8z4_k3": dict(hidden=64, heads=4, experts=8, zero=4, topk=3, inter=24, layers=1, act="gelu"),
    # hidden 48, 6 real + 2 zero, top-4 > zero count: every token gets >= 2 real experts
    "h48_e6z2_k4": dict(hidden=48, heads=2, experts=6, zero=2, topk=4, inter=8, layers=2, act="silu"),
}


def tiny_config(hidden, heads, experts, zero, topk, inter, layers, act) -> LongcatFlashConfig:
    return LongcatFlashConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        q_lora_rank=16,
        kv_lora_rank=16,
        qk_nope_head_dim=8,
        qk_rope_head_dim=8,
        qk_head_dim=16,
        head_dim=8,
        v_head_dim=8,
        num_layers=layers,
        ffn_hidden_size=2 * hidden,
        expert_ffn_hidden_size=inter,
        n_routed_experts=experts,
        zero_expert_num=zero,
        moe_topk=topk,
        routed_scaling_factor=2.0,
        hidden_act=act,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def build_model(spec: dict, seed: int) -> LongcatFlashForCausalLM:
    """A tiny model whose experts and routers matter: weights far larger than the 0.02 init."""
    torch.manual_seed(seed)
    model = LongcatFlashForCausalLM(tiny_config(**spec)).float()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LongcatFlashExperts):
                module.gate_up_proj.normal_(0.0, spec["hidden"] ** -0.5)
                module.down_proj.normal_(0.0, spec["inter"] ** -0.5)
            if isinstance(module, LongcatFlashTopkRouter):
                module.classifier.weight.normal_(0.0, 1.0)
    return model


def capture_routing(model, input_ids):
    """Per router: (scores [T, E], topk indices [T, K]) from a stock forward."""
    seen = []
    hooks = [
        r.register_forward_hook(lambda m, i, o: seen.append((o[0].softmax(-1), o[2])))
        for r in model.modules()
        if isinstance(r, LongcatFlashTopkRouter)
    ]
    with torch.no_grad():
        model(input_ids)
    for h in hooks:
        h.remove()
    return seen


def force_edge_routing(model, input_ids, n_real: int, topk: int, n_zero: int):
    """Bias routers so real expert 0 never gets a token and, where possible, ~half the tokens pick
    only zero experts (bias on the zero experts = the median margin of layer 0's tokens)."""
    routers = [m for m in model.modules() if isinstance(m, LongcatFlashTopkRouter)]
    with torch.no_grad():
        for r in routers:
            r.e_score_correction_bias[0] = -10.0
        if n_zero >= topk:
            scores, _ = capture_routing(model, input_ids)[0]
            best_real = scores[:, 1:n_real].max(dim=1).values
            kth_zero = scores[:, n_real:].topk(topk, dim=1).values[:, -1]
            margin = (best_real - kth_zero).median()
            for r in routers:
                r.e_score_correction_bias[n_real:] = margin


def loss_of(model, input_ids):
    logits = model(input_ids).logits
    return logits, torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), input_ids.reshape(-1))


def compare_models(stock, fast, input_ids, out_tol=1e-5, grad_tol=1e-4):
    ref_logits, ref_loss = loss_of(stock, input_ids)
    ref_loss.backward()
    logits, loss = loss_of(fast, input_ids)
    loss.backward()
    assert (logits - ref_logits).abs().max().item() <= out_tol
    stock_params = dict(stock.named_parameters())
    compared = 0
    for name, param in fast.named_parameters():
        ref = stock_params[name]
        if ref.grad is None:
            assert param.grad is None or param.grad.abs().max() == 0, name
            continue
        assert param.grad is not None, name
        err = (param.grad - ref.grad).abs().max().item()
        assert err <= grad_tol, f"{name}: grad differs by {err}"
        compared += 1
    return compared


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_parity_random_routing(name):
    spec = CONFIGS[name]
    stock = build_model(spec, seed=0)
    fast = enable_fast_moe(copy.deepcopy(stock))
    input_ids = torch.randint(3, VOCAB, (2, 11), generator=torch.Generator().manual_seed(1))
    n_grads = compare_models(stock, fast, input_ids)
    # the expert weights themselves must have been compared, not just the dense parts
    assert n_grads > 0
    for module in fast.modules():
        if isinstance(module, LongcatFlashExperts):
            assert module.gate_up_proj.grad.abs().sum() > 0


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_model_parity_zero_only_tokens_and_idle_experts(name):
    spec = CONFIGS[name]
    stock = build_model(spec, seed=3)
    input_ids = torch.randint(3, VOCAB, (2, 13), generator=torch.Generator().manual_seed(4))
    force_edge_routing(stock, input_ids, spec["experts"], spec["topk"], spec["zero"])
    routing = capture_routing(stock, input_ids)
    picks = routing[0][1]
    # the edge cases this test exists for really occur
    assert not (picks == 0).any(), "real expert 0 should receive no token"
    if spec["zero"] >= spec["topk"]:
        zero_only = (picks >= spec["experts"]).all(dim=1)
        assert zero_only.any() and not zero_only.all()
    fast = enable_fast_moe(copy.deepcopy(stock))
    compare_models(stock, fast, input_ids)


def test_enable_is_idempotent_and_keeps_state_dict():
    stock = build_model(CONFIGS["h32_e4z2_k2"], seed=5)
    keys = list(stock.state_dict())
    fast = enable_fast_moe(copy.deepcopy(stock))
    assert fast_moe_enabled(fast) and not fast_moe_enabled(stock)
    enable_fast_moe(fast)
    assert list(fast.state_dict()) == keys
    # a fast model's checkpoint loads into a stock model with nothing missing or extra
    fresh = build_model(CONFIGS["h32_e4z2_k2"], seed=6)
    result = fresh.load_state_dict(fast.state_dict())
    assert not result.missing_keys and not result.unexpected_keys
    disable_fast_moe(fast)
    assert not fast_moe_enabled(fast)
    assert all(type(m) is LongcatFlashExperts for m in fast.modules() if isinstance(m, LongcatFlashExperts))
    assert all(type(m) is LongcatFlashTopkRouter for m in fast.modules() if isinstance(m, LongcatFlashTopkRouter))


def random_routing(T, K, n_real, n_zero, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(T, n_real + n_zero, generator=g)
    index = scores.topk(K, dim=1).indices
    weights = torch.rand(T, K, generator=g, dtype=torch.float32)
    return index, weights


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("T,H,I,n_real,n_zero,K", [(1, 16, 8, 4, 2, 2), (37, 32, 16, 6, 3, 3), (64, 24, 12, 8, 0, 2)])
def test_kernel_matches_naive_loop(grouped, T, H, I, n_real, n_zero, K):
    g = torch.Generator().manual_seed(T + H)
    hidden = torch.randn(T, H, generator=g, requires_grad=True)
    gate_up = torch.randn(n_real + n_zero, 2 * I, H, generator=g).mul_(H ** -0.5).requires_grad_()
    down = torch.randn(n_real, H, I, generator=g).mul_(I ** -0.5).requires_grad_()
    index, weights = random_routing(T, K, n_real, n_zero, seed=T)
    # force ragged groups: the last real expert gets no token, token 0 goes to zero experts only
    index[index == n_real - 1] = 0 if n_zero == 0 else n_real
    if n_zero >= K:
        index[0] = torch.arange(n_real, n_real + K)
    weights.requires_grad_()
    out = moe_forward_torch(hidden, gate_up, down, index, weights, n_real, use_grouped_mm=grouped)
    ref = moe_forward_reference(hidden, gate_up, down, index, weights, n_real)
    assert out.shape == hidden.shape
    assert (out - ref).abs().max().item() < 1e-5
    probe = torch.randn(T, H, generator=g)
    inputs = (hidden, gate_up, down, weights)
    # an input a path never touched (no real slot at all) counts as a zero gradient
    grads = torch.autograd.grad((out * probe).sum(), inputs, allow_unused=True, materialize_grads=True)
    ref_grads = torch.autograd.grad((ref * probe).sum(), inputs, allow_unused=True, materialize_grads=True)
    for got, want in zip(grads, ref_grads):
        assert (got - want).abs().max().item() < 1e-4
    # the identity slots of token 0 contribute exactly weight * x
    if n_zero >= K:
        assert torch.allclose(out[0], hidden[0] * weights[0].sum(), atol=1e-6)


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="this torch has no _grouped_mm")
def test_grouped_mm_probe_works_under_no_grad(monkeypatch):
    import kernels.moe as km

    # the first call often comes from generation under no_grad; the probe must still see autograd
    monkeypatch.setattr(km, "_GROUPED_MM_OK", {})
    with torch.no_grad():
        assert km._probe_grouped_mm(torch.device("cpu"), torch.float32)


def test_dispatcher_uses_torch_on_cpu():
    hidden = torch.randn(5, 16)
    gate_up = torch.randn(6, 16, 16)
    down = torch.randn(4, 16, 8)
    index, weights = random_routing(5, 2, 4, 2, seed=9)
    expected = moe_forward_torch(hidden, gate_up, down, index, weights, 4)
    assert torch.equal(moe_forward(hidden, gate_up, down, index, weights, 4), expected)
