"""Every Triton kernel against its torch twin, run by Triton's interpreter on CPU tensors.

Triton reads TRITON_INTERPRET when a function is decorated with @triton.jit, and its own
library functions (tl.max, tl.sigmoid, ...) are decorated when triton is first imported. So
the variable must be set before anything imports triton. This file does that when it can
(``pytest tests/kernels/test_kernels.py``); in a larger run where triton is already loaded (transformers'
model code imports it), the whole file reruns in one fresh subprocess with the variable set and
this process only checks that the subprocess passed.
Shapes are tiny because the interpreter runs every program in numpy.

On a GPU host, ``ZHUFU_KERNEL_DEVICE=cuda pytest tests/kernels/test_kernels.py`` runs the same tests as
compiled kernels on CUDA tensors instead (bench/gpu.sh does).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ON_GPU = os.environ.get("ZHUFU_KERNEL_DEVICE") == "cuda"
DEVICE = "cuda" if ON_GPU else "cpu"
IN_PROCESS = ON_GPU or os.environ.get("TRITON_INTERPRET") == "1" or "triton" not in sys.modules
if IN_PROCESS and not ON_GPU:
    os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

pytest.importorskip("triton")

from kernels.moe import align_by_expert, moe_forward_reference, moe_forward_torch  # noqa: E402
from kernels.router import router_topk_torch  # noqa: E402

if IN_PROCESS:
    from kernels import moe_triton, router_triton  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(IN_PROCESS, reason="already running in the interpreter")
def test_kernels_in_fresh_interpreter_process():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(Path(__file__))],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout


@pytest.fixture(autouse=True)
def one_thread(request):
    if not IN_PROCESS and request.node.name != "test_kernels_in_fresh_interpreter_process":
        pytest.skip("triton was imported without the interpreter; the subprocess test runs this")
    # 2 shared cores: a second OpenMP thread spin-waits against the other processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.skipif(ON_GPU, reason="compiled kernels on the GPU")
def test_kernels_really_run_in_the_interpreter():
    from triton.runtime.interpreter import InterpretedFunction

    assert isinstance(moe_triton._gate_up_act_kernel, InterpretedFunction)
    assert isinstance(router_triton._router_topk_kernel, InterpretedFunction)


def make_moe_case(T, H, I, n_real, n_zero, K, seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(T, H, generator=g)
    gate_up = torch.randn(n_real + n_zero, 2 * I, H, generator=g) * H ** -0.5
    down = torch.randn(n_real, H, I, generator=g) * I ** -0.5
    index = torch.rand(T, n_real + n_zero, generator=g).topk(K, dim=1).indices
    weights = torch.rand(T, K, generator=g) * 2
    # the last real expert gets no token; token 0 (and 3) picks zero experts only when it can
    index[index == n_real - 1] = n_real if n_zero else 0
    if n_zero >= K:
        index[0] = torch.arange(n_real, n_real + K)
        if T > 3:
            index[3] = torch.arange(n_real + n_zero - K, n_real + n_zero)
    return tuple(t.to(DEVICE) for t in (hidden.to(dtype), gate_up.to(dtype), down.to(dtype), index, weights))


MOE_CASES = [
    # T, H, I, n_real, n_zero, K, act
    (1, 16, 16, 4, 2, 2, "silu"),  # decode: a single token routed only to zero experts
    (21, 40, 24, 6, 3, 3, "silu"),  # ragged: T, H and I not multiples of any block
    (37, 32, 48, 8, 4, 4, "gelu"),
    (19, 24, 16, 5, 0, 2, "gelu_pytorch_tanh"),  # no zero experts
    (9, 16, 16, 3, 3, 2, "relu"),
]


@pytest.mark.parametrize("T,H,I,n_real,n_zero,K,act", MOE_CASES)
def test_fused_moe_fp32_matches_torch(T, H, I, n_real, n_zero, K, act):
    hidden, gate_up, down, index, weights = make_moe_case(T, H, I, n_real, n_zero, K, seed=T)
    got = moe_triton.moe_forward_triton(hidden, gate_up, down, index, weights, n_real, act, block_n=16, block_k=16)
    want = moe_forward_torch(hidden, gate_up, down, index, weights, n_real, act)
    assert got.dtype == hidden.dtype and got.shape == hidden.shape
    assert (got - want).abs().max().item() < 1e-5
    if n_zero >= K:
        # a token routed only to identity experts gets exactly (sum of its weights) * x
        assert torch.allclose(got[0], hidden[0] * weights[0].sum(), atol=1e-6)


@pytest.mark.parametrize("block_m", [16, 32])
def test_fused_moe_bf16_matches_torch(block_m):
    T, H, I, n_real, n_zero, K = 23, 32, 32, 6, 3, 3
    hidden, gate_up, down, index, weights = make_moe_case(T, H, I, n_real, n_zero, K, seed=5)
    exact = moe_forward_reference(hidden, gate_up, down, index, weights, n_real).double()
    args = (hidden.bfloat16(), gate_up.bfloat16(), down.bfloat16(), index, weights, n_real)
    got = moe_triton.moe_forward_triton(*args, block_m=block_m, block_n=16, block_k=16)
    torch_bf16 = moe_forward_torch(*args)
    assert got.dtype == torch.bfloat16
    scale = exact.abs().max().item()
    # both bf16 paths round the same inputs; each stays within a few bf16 ulps of the exact result
    assert (got.double() - exact).abs().max().item() < 2e-2 * scale
    assert (got.double() - torch_bf16.double()).abs().max().item() < 2e-2 * scale


def test_fused_moe_all_tokens_on_zero_experts():
    T, H, I, n_real, n_zero, K = 5, 16, 16, 4, 3, 2
    hidden, gate_up, down, _, weights = make_moe_case(T, H, I, n_real, n_zero, K, seed=2)
    index = torch.tensor([[4, 5], [6, 4], [5, 6], [4, 6], [6, 5]], device=DEVICE)
    got = moe_triton.moe_forward_triton(hidden, gate_up, down, index, weights, n_real)
    assert torch.allclose(got, hidden * weights.sum(1, keepdim=True), atol=1e-6)


@pytest.mark.parametrize("block_m", [4, 16])
def test_align_by_expert_blocks(block_m):
    index = torch.tensor([[0, 5], [2, 0], [6, 5], [2, 2], [0, 1]], device=DEVICE)  # 5 real experts (0..4), zero 5, 6
    sorted_slots, block_expert = align_by_expert(index, num_real_experts=5, block_m=block_m)
    num_slots = index.numel()
    flat = index.reshape(-1)
    # every real slot appears exactly once, no zero-expert slot appears
    real = sorted(int(s) for s in sorted_slots if s < num_slots)
    assert real == [i for i in range(num_slots) if flat[i] < 5]
    # each block belongs to one expert and only holds that expert's slots
    blocks = sorted_slots.view(-1, block_m)
    for b, expert in enumerate(block_expert.tolist()):
        members = [int(s) for s in blocks[b] if s < num_slots]
        assert members and all(int(flat[s]) == expert for s in members)
    # idle experts (3, 4) and zero experts get no block; busy ones get ceil(count / block_m)
    counts = torch.bincount(flat[flat < 5], minlength=5)
    expected_blocks = [(-(-int(c) // block_m)) for c in counts]
    assert torch.bincount(block_expert.long(), minlength=5).tolist() == expected_blocks


ROUTER_CASES = [(1, 6, 2), (37, 24, 4), (50, 12, 3), (16, 33, 5)]


@pytest.mark.parametrize("T,E,K", ROUTER_CASES)
def test_router_topk_matches_torch(T, E, K):
    g = torch.Generator().manual_seed(T * E)
    logits = (torch.randn(T, E, generator=g) * 2).to(DEVICE)
    bias = (torch.randn(E, generator=g) * 0.1).to(DEVICE)
    weights, index = router_triton.router_topk_triton(logits, bias, K, 2.5)
    want_w, want_i = router_topk_torch(logits, bias, K, 2.5)
    assert torch.equal(index, want_i)
    assert torch.allclose(weights, want_w, atol=1e-6, rtol=1e-5)


def test_router_bias_picks_but_does_not_weigh():
    # a large bias on expert 5 makes every token pick it, with its UNBIASED score as weight
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 8, generator=g).to(DEVICE)
    bias = torch.zeros(8, device=DEVICE)
    bias[5] = 10.0
    weights, index = router_triton.router_topk_triton(logits, bias, 2, 1.0)
    assert (index[:, 0] == 5).all()
    assert torch.allclose(weights[:, 0], logits.softmax(-1)[:, 5], atol=1e-6)


def test_router_bf16_logits():
    g = torch.Generator().manual_seed(1)
    logits = (torch.randn(20, 12, generator=g) * 3).bfloat16().to(DEVICE)
    bias = (torch.randn(12, generator=g) * 0.05).to(DEVICE)
    weights, index = router_triton.router_topk_triton(logits, bias, 3, 2.0)
    want_w, want_i = router_topk_torch(logits, bias, 3, 2.0)
    assert torch.equal(index, want_i)
    assert torch.allclose(weights, want_w, atol=1e-5)
