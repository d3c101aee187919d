"""Routing controls: bias update (formula, sign, convergence to the budget), stats and losses."""
import math

import pytest
import torch
from transformers import LongcatFlashForCausalLM
from transformers.models.longcat_flash.modeling_longcat_flash import LongcatFlashTopkRouter

from generation.moe import enable_fast_moe
from tests.generation.test_moe_parity import tiny_config
from training.routing import RoutingRecorder, balance_loss, find_routers, hidden_z_loss, update_router_bias


# 2 shared cores: a second OpenMP thread spin-waits against the other processes (conftest.one_thread)
pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(experts=4, zero=2, topk=2, layers=1, seed=0, router_std=None):
    torch.manual_seed(seed)
    cfg = tiny_config(hidden=32, heads=2, experts=experts, zero=zero, topk=topk, inter=16, layers=layers, act="silu")
    model = LongcatFlashForCausalLM(cfg).eval()
    if router_std is not None:
        with torch.no_grad():
            for router in find_routers(model):
                router.classifier.weight.normal_(0.0, router_std)
    return model


def hand_recorder(indices, logits=None, **model_kwargs):
    """A recorder over a tiny model holding a hand-made routing for layer 0."""
    model = small_model(**model_kwargs)
    rec = RoutingRecorder(model)
    indices = torch.tensor(indices)
    n_total = rec.num_total(0)
    if logits is None:
        logits = torch.zeros(indices.shape[0], n_total)
    rec.record(0, logits, indices)
    return model, rec


# 4 real experts (0..3), 2 zero experts (4, 5), K = 2, three tokens
HAND_ROUTING = [[0, 4], [0, 1], [5, 4]]


def test_bias_update_matches_hand_computation():
    model, rec = hand_recorder(HAND_ROUTING)
    router = find_routers(model)[0]
    with torch.no_grad():
        router.e_score_correction_bias[4:] = torch.tensor([0.25, -0.5])
    measured = update_router_bias(model, rec, mu=0.1, target_real_experts=1.5)
    # T_i = [2, 1, 0, 0], T_all = 3, K = 2, N = 4: target K_e/K/N = 0.1875, T_i/(K T_all) = [1/3, 1/6, 0, 0]
    expected = torch.tensor([0.1 * (0.1875 - 1 / 3), 0.1 * (0.1875 - 1 / 6), 0.01875, 0.01875])
    assert torch.allclose(router.e_score_correction_bias[:4], expected, atol=1e-7)
    # zero-expert entries are never touched
    assert router.e_score_correction_bias[4:].tolist() == [0.25, -0.5]
    assert measured == pytest.approx(1.0)  # (1 + 2 + 0) real picks / 3 tokens


def test_bias_update_sign_follows_budget():
    # every pick a real expert, budget 1 of 2: real biases must all go down
    model, rec = hand_recorder([[0, 1], [2, 3], [0, 2]])
    update_router_bias(model, rec, mu=0.5, target_real_experts=1.0)
    bias = find_routers(model)[0].e_score_correction_bias
    assert (bias[:4] < 0).all() and (bias[4:] == 0).all()
    # no real pick at all, budget 1.5: every real bias goes up
    model, rec = hand_recorder([[4, 5], [5, 4]])
    update_router_bias(model, rec, mu=0.5, target_real_experts=1.5)
    bias = find_routers(model)[0].e_score_correction_bias
    assert (bias[:4] > 0).all() and (bias[4:] == 0).all()


def test_stats_on_hand_routing():
    model, rec = hand_recorder(HAND_ROUTING)
    stats = rec.stats()
    assert stats["real_experts_per_token_mean"] == pytest.approx(1.0)
    assert stats["real_experts_per_token_std"] == pytest.approx(math.sqrt(2 / 3))
    assert stats["expert_load"] == [pytest.approx([2 / 3, 1 / 3, 0.0, 0.0])]
    assert stats["zero_expert_share"] == pytest.approx(0.5)
    assert stats["router_entropy"] == pytest.approx(math.log(6), rel=1e-6)  # zero logits: uniform
    # a token mask drops the last (zero-only) token
    masked = rec.stats(token_mask=torch.tensor([1, 1, 0]))
    assert masked["real_experts_per_token_mean"] == pytest.approx(1.5)
    assert masked["zero_expert_share"] == pytest.approx(0.25)


def test_recorder_hooks_every_router_and_detaches():
    model = small_model(layers=2)
    ids = torch.randint(3, 61, (2, 7))
    with RoutingRecorder(model) as rec, torch.no_grad():
        model(ids)
    assert rec.num_layers == 2
    assert all(rec.indices(layer).shape == (14, 2) for layer in range(2))
    assert rec.logits(0).shape == (14, 6)
    model(ids)  # detached: nothing more recorded
    assert rec.indices(0).shape[0] == 14
    rec.clear()
    assert not rec.has_data()


@pytest.mark.parametrize("target", [2.5, 3.0])
def test_bias_control_converges_to_budget(target):
    """16 real + 8 zero experts, top-4: repeated bias updates on fixed data reach K_e within 5%."""
    model = enable_fast_moe(small_model(experts=16, zero=8, topk=4, layers=2, seed=1, router_std=0.3))
    with torch.no_grad():
        for router in find_routers(model):
            router.e_score_correction_bias[:16] = -0.1  # start far below the budget
    ids = torch.randint(3, 61, (8, 48), generator=torch.Generator().manual_seed(0))
    history = []
    with RoutingRecorder(model) as rec:
        for _ in range(40):
            with torch.no_grad():
                model(ids)
            history.append(update_router_bias(model, rec, mu=1.0, target_real_experts=target))
            rec.clear()
    assert history[0] < 0.8 * target  # it had to move
    for value in history[-5:]:
        assert abs(value - target) <= 0.05 * target, history
    for router in find_routers(model):
        assert (router.e_score_correction_bias[16:] == 0).all()


def test_balance_loss_value_and_gradient():
    # uniform scores and a routing exactly on the size-proportional shares: every f_j = 1
    logits = torch.zeros(3, 6, requires_grad=True)
    model, rec = hand_recorder([[0, 4], [2, 5], [1, 3]], logits=logits)
    loss = balance_loss(rec, groups=2, coef=0.01)
    assert loss.item() == pytest.approx(0.01)  # sum_j f_j P_j = sum_j P_j = 1
    # all picks in real group 0: the gradient pushes probability away from group 0
    logits = torch.randn(3, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    model, rec = hand_recorder([[0, 1], [1, 0], [0, 1]], logits=logits)
    loss = balance_loss(rec, groups=2, coef=1.0)
    assert torch.isfinite(loss)
    (grad,) = torch.autograd.grad(loss, logits)
    p = logits.softmax(-1)
    p_next = (logits - 0.5 * grad).softmax(-1)
    assert p_next[:, :2].sum() < p[:, :2].sum()


def test_balance_loss_budget_shares_keep_zero_group_on_target():
    # with K_e = 1 of K = 2 and one real + one zero pick per token, the zero group is exactly on target
    logits = torch.zeros(2, 6, requires_grad=True)
    model, rec = hand_recorder([[0, 4], [2, 5]], logits=logits)
    loss = balance_loss(rec, groups=2, coef=1.0, target_real_experts=1.0)
    # f = [1, 1, 1] (shares 1/4, 1/4, 1/2); P = [1/3, 1/3, 1/3]
    assert loss.item() == pytest.approx(1.0)


def test_balance_loss_through_a_real_forward_has_router_gradients():
    model = small_model(layers=2, router_std=0.3).train()
    ids = torch.randint(3, 61, (2, 9))
    with RoutingRecorder(model) as rec:
        model(ids)
        loss = balance_loss(rec, groups=2, coef=0.01)
    loss.backward()
    for router in find_routers(model):
        assert router.classifier.weight.grad is not None
        assert router.classifier.weight.grad.abs().sum() > 0


def test_hidden_z_loss_value_and_gradient():
    h = torch.zeros(2, 3, 4)
    assert hidden_z_loss(h, coef=0.5).item() == pytest.approx(0.5 * math.log(4) ** 2)
    h = torch.randn(2, 3, 4, requires_grad=True)
    loss = hidden_z_loss(h, coef=1e-3)
    loss.backward()
    assert torch.isfinite(loss) and h.grad.abs().sum() > 0
    # a massive activation is penalised more
    spiky = h.detach().clone()
    spiky[0, 0, 0] = 50.0
    assert hidden_z_loss(spiky, 1e-3) > hidden_z_loss(h.detach(), 1e-3)
    # masked positions do not count
    mask = torch.tensor([[1, 1, 1], [0, 0, 0]])
    assert hidden_z_loss(spiky, 1.0, token_mask=mask) == pytest.approx(
        hidden_z_loss(spiky[0], 1.0).item(), rel=1e-6
    )


def test_router_bias_indexing_matches_transformers():
    """Our reading of the router: a positive bias on a zero expert makes it picked (index >= N)."""
    model = small_model()
    router = find_routers(model)[0]
    assert isinstance(router, LongcatFlashTopkRouter)
    with torch.no_grad():
        router.e_score_correction_bias[5] = 10.0
        _, _, idx = router(torch.randn(5, 32))
    assert (idx == 5).any(dim=1).all()
    assert router.num_experts == 4 and router.n_routed_experts == 6
