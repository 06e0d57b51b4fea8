"""LFP rules: conservation, exact restoration by composites, chaining over time, bad input."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.lfp import (
    NATIVE,
    AvgPoolRule,
    Composite,
    EpsilonRule,
    GammaRule,
    MaxPoolRule,
    UnsupportedModuleError,
    ZPlusRule,
    default_composite,
    lfp_step,
    rate_coded_reward,
)

torch.set_default_dtype(torch.float32)


def _reward_balance(rule, module, x, rho):
    """(reward in, reward to the input, bias share, ε absorption) for one synapse rule."""
    x = x.clone().requires_grad_(True)
    z = rule.forward(module, x)
    z.backward(rho)
    w = module.weight
    w2 = {"epsilon": w, "zplus": w.clamp(min=0), "gamma": w + rule.gamma * w.clamp(min=0)}[
        rule.mode
    ]
    b = module.bias
    b2 = {"epsilon": b, "zplus": b.clamp(min=0), "gamma": b + rule.gamma * b.clamp(min=0)}[
        rule.mode
    ]
    if isinstance(module, nn.Linear):
        zmod = nn.functional.linear(x, w2, b2)
        bshape = (1, -1)
    else:
        zmod = nn.functional.conv2d(x, w2, b2, module.stride, module.padding)
        bshape = (1, -1, 1, 1)
    sign = torch.where(zmod >= 0, 1.0, -1.0).to(zmod.dtype)
    n = rho / (zmod + rule.epsilon * sign)
    bias_share = (b2.reshape(bshape) * n).sum()
    absorbed = (rule.epsilon * sign * n).sum()
    return rho.sum(), x.grad.sum(), bias_share, absorbed


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([1e-6, 1e-2, 0.5]),
    rule=st.sampled_from([EpsilonRule, ZPlusRule, GammaRule]),
)
def test_synapse_rules_conserve_reward_linear(seed, eps, rule):
    g = torch.Generator().manual_seed(seed)
    lin = nn.Linear(7, 5).double()
    x = (torch.rand(6, 7, generator=g, dtype=torch.float64) < 0.5).double()
    rho = torch.randn(6, 5, generator=g, dtype=torch.float64)
    total, to_input, bias, absorbed = _reward_balance(rule(epsilon=eps), lin, x, rho)
    assert torch.allclose(total, to_input + bias + absorbed, rtol=1e-9, atol=1e-9)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    eps=st.sampled_from([1e-6, 0.1]),
    rule=st.sampled_from([EpsilonRule, ZPlusRule, GammaRule]),
)
def test_synapse_rules_conserve_reward_conv(seed, eps, rule):
    g = torch.Generator().manual_seed(seed)
    conv = nn.Conv2d(2, 3, 3, padding=1, stride=2).double()
    x = (torch.rand(4, 2, 7, 7, generator=g, dtype=torch.float64) < 0.3).double()
    rho = torch.randn(4, 3, 4, 4, generator=g, dtype=torch.float64)
    total, to_input, bias, absorbed = _reward_balance(rule(epsilon=eps), conv, x, rho)
    assert torch.allclose(total, to_input + bias + absorbed, rtol=1e-9, atol=1e-9)


def test_synapse_weight_feedback_formula():
    lin = nn.Linear(4, 3).double()
    x = torch.rand(5, 4, dtype=torch.float64)
    rho = torch.randn(5, 3, dtype=torch.float64)
    z = EpsilonRule(0.0).forward(lin, x)
    z.backward(rho)
    n = rho / nn.functional.linear(x, lin.weight, lin.bias)
    assert torch.allclose(-lin.weight.grad, lin.weight.abs() * (n.t() @ x))
    assert torch.allclose(-lin.bias.grad, lin.bias.abs() * n.sum(0))


@pytest.mark.parametrize("mode", [EpsilonRule, ZPlusRule, GammaRule])
@pytest.mark.parametrize("rows", [5, 700, 3000])
def test_linear_rule_over_row_chunks_equals_one_matmul(mode, rows, monkeypatch):
    """The chunked backward (several chunks at 3000 rows) equals the unchunked formulas."""
    from spikelfp._accel import chunking

    monkeypatch.setattr(chunking, "BUDGET", chunking.ChunkBytes(rows=8 * 256 * 4))  # 256 rows
    g = torch.Generator().manual_seed(rows)
    lin = nn.Linear(9, 4).double()
    rule = mode(epsilon=0.01)
    x = (torch.rand(rows, 3, 9, generator=g, dtype=torch.float64) < 0.4).double()
    x.requires_grad_(True)
    rho = torch.randn(rows, 3, 4, generator=g, dtype=torch.float64)
    rule.forward(lin, x).backward(rho)
    w2 = {"epsilon": lin.weight, "zplus": lin.weight.clamp(min=0)}.get(rule.mode)
    b2 = {"epsilon": lin.bias, "zplus": lin.bias.clamp(min=0)}.get(rule.mode)
    if w2 is None:
        w2 = lin.weight + rule.gamma * lin.weight.clamp(min=0)
        b2 = lin.bias + rule.gamma * lin.bias.clamp(min=0)
    zmod = nn.functional.linear(x.detach(), w2, b2)
    n = rho / (zmod + rule.epsilon * torch.where(zmod >= 0, 1.0, -1.0).double())
    xd = x.detach().reshape(-1, 9)
    n2 = n.reshape(-1, 4)
    assert torch.allclose(x.grad, x.detach() * (n @ w2), rtol=1e-12, atol=1e-12)
    assert torch.allclose(-lin.weight.grad, w2.detach().abs() * (n2.t() @ xd), rtol=1e-12)
    assert torch.allclose(-lin.bias.grad, b2.detach().abs() * n2.sum(0), rtol=1e-12)


@pytest.mark.parametrize(
    "pool, shape",
    [
        (nn.MaxPool1d(3, stride=2, padding=1), (70, 3, 11)),
        (nn.MaxPool2d(2), (70, 4, 6, 6)),
        (nn.MaxPool2d(3, stride=2, padding=1, dilation=1, ceil_mode=True), (9, 2, 7, 7)),
        (nn.MaxPool2d(2), (3, 6, 6)),  # unbatched
        (nn.MaxPool3d(2), (20, 2, 4, 4, 4)),
    ],
)
def test_maxpool_rule_equals_native_gradient(pool, shape, monkeypatch):
    """Reward goes exactly where max-pooling's own gradient sends it (ties included)."""
    from spikelfp._accel import chunking

    monkeypatch.setattr(chunking, "BUDGET", chunking.ChunkBytes(conv=600))  # several chunks
    g = torch.Generator().manual_seed(len(shape))
    spikes = (torch.rand(shape, generator=g) < 0.3).double()  # binary: many ties
    x1 = spikes.clone().requires_grad_(True)
    x2 = spikes.clone().requires_grad_(True)
    y1 = pool(x1)
    y2 = MaxPoolRule().forward(pool, x2)
    assert torch.equal(y1, y2)
    rho = torch.randn(y1.shape, generator=g, dtype=torch.float64)
    y1.backward(rho)
    y2.backward(rho)
    assert torch.equal(x1.grad, x2.grad)
    assert torch.allclose(x2.grad.sum(), rho.sum())  # winner takes all: reward conserved


def test_maxpool_rule_refuses_other_modules_and_bad_shapes():
    with pytest.raises(TypeError, match="MaxPoolRule handles MaxPool1d/2d/3d"):
        MaxPoolRule().forward(nn.AvgPool2d(2), torch.rand(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"expects a 3-D or 4-D input"):
        MaxPoolRule().forward(nn.MaxPool2d(2), torch.rand(4, 4))


def test_maxpool_rule_keeps_neither_input_nor_int64_indices():
    x = torch.rand(4, 2, 8, 8, requires_grad=True)
    y = MaxPoolRule().forward(nn.MaxPool2d(2), x)
    offsets = y.grad_fn.saved_tensors[0]
    assert offsets.dtype == torch.uint8 and offsets.shape == y.shape
    assert not any(t.is_floating_point() for t in y.grad_fn.saved_tensors)


def test_avgpool_rule_conserves():
    x = torch.rand(3, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    pool = nn.AvgPool2d(2)
    y = AvgPoolRule().forward(pool, x)
    rho = torch.randn_like(y)
    y.backward(rho)
    assert torch.allclose(x.grad.sum(), rho.sum())


def _nets():
    return [
        Sequential(nn.Linear(6, 8), LIF(beta=0.9, threshold=0.3), nn.Linear(8, 3), LI()),
        Sequential(
            nn.Conv2d(2, 4, 3, padding=1),
            IF(threshold=0.5),
            nn.AvgPool2d(2),
            nn.Dropout(0.2),
            nn.Flatten(),
            nn.Linear(16, 3),
            CubaLIF(threshold=0.2),
        ),
        Sequential(
            nn.Linear(6, 8),
            nn.BatchNorm1d(8),
            RLIF(8, threshold=0.5),
            nn.Linear(8, 3),
            ALIF(threshold=0.3, learn_threshold=True, learn_kappa=True),
        ),
    ]


def _inputs(net):
    if isinstance(net[0], nn.Conv2d):
        return (torch.rand(5, 4, 2, 4, 4) < 0.4).float()
    return (torch.rand(5, 4, 6) < 0.4).float()


@pytest.mark.parametrize("net", _nets(), ids=["lif-li", "conv-if-cuba", "bn-rlif-alif"])
def test_composite_leaves_model_bit_identical(net):
    before_state = copy.deepcopy(net.state_dict())
    before_dicts = [dict(vars(m)) for m in net.modules()]
    net.eval()
    with default_composite().context(net):
        out, _ = net(_inputs(net))
        assert any("forward" in vars(m) for m in net.modules())
    out.backward(torch.ones_like(out))
    for k, v in net.state_dict().items():
        assert torch.equal(v, before_state[k]), k
    for m, d in zip(net.modules(), before_dicts, strict=True):
        assert set(vars(m)) == set(d)
        assert "forward" not in vars(m)


def test_composite_restores_after_exception():
    net = _nets()[0]
    with pytest.raises(RuntimeError, match="boom"):
        with default_composite().context(net):
            raise RuntimeError("boom")
    assert all("forward" not in vars(m) for m in net.modules())


def test_unsupported_module_is_named_before_any_step():
    class Weird(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.w

    net = Sequential(nn.Linear(6, 3), Weird(), LIF())
    w0 = net[0].weight.detach().clone()
    with pytest.raises(UnsupportedModuleError, match=r"1 \(Weird\).*Supported module types"):
        lfp_step(
            net,
            torch.rand(4, 2, 6),
            torch.zeros(2, dtype=torch.long),
            rate_coded_reward,
            torch.optim.SGD(net.parameters(), lr=1.0),
        )
    assert torch.equal(net[0].weight, w0)
    comp = default_composite().with_rules({Weird: NATIVE})
    lfp_step(
        net,
        torch.rand(4, 2, 6),
        torch.zeros(2, dtype=torch.long),
        rate_coded_reward,
        composite=comp,
    )


def test_composite_rejects_non_type_keys():
    with pytest.raises(TypeError, match="module types"):
        Composite({"Linear": EpsilonRule()})


def _neuron_rule_input(neuron, shape):
    z = (torch.randn(*shape, dtype=torch.float64) * 0.8 + 0.3).requires_grad_(True)
    return z


@pytest.mark.parametrize(
    "make",
    [
        lambda: LIF(beta=0.8, threshold=0.5, reset="zero"),
        lambda: LIF(beta=0.8, threshold=0.5, reset="subtract", reset_delay=True),
        lambda: IF(threshold=0.7),
        lambda: LI(beta=0.7),
        lambda: CubaLIF(alpha=0.6, beta=0.8, threshold=0.4),
        lambda: ALIF(beta=0.9, threshold=0.4, kappa=0.5),
        lambda: RLIF(4, beta=0.9, threshold=0.5),
    ],
    ids=["lif-zero", "lif-sub-delay", "if", "li", "cuba", "alif", "rlif"],
)
def test_neuron_rule_chained_over_time_equals_whole_sequence(make):
    """Feeding a recording in chunks (state threaded through autograd) gives the same
    reward decomposition as the whole sequence at once."""
    torch.set_default_dtype(torch.float64)
    try:
        neuron = make()
    finally:
        torch.set_default_dtype(torch.float32)
    rule = default_composite().rule_for(neuron)
    z = _neuron_rule_input(neuron, (9, 3, 4))
    r = torch.randn(9, 3, 4, dtype=torch.float64)
    out, _ = rule.forward(neuron, z)
    out.backward(r)
    whole = z.grad.clone()
    z.grad = None
    a, st_ = rule.forward(neuron, z[:4])
    b, _ = rule.forward(neuron, z[4:], st_)
    torch.cat([a, b]).backward(r)
    assert torch.equal(torch.cat([a, b]).detach(), out.detach())
    assert torch.allclose(z.grad, whole, rtol=1e-12, atol=1e-14)


def test_lif_rule_matches_independent_formula_for_zero_reset():
    """Reset-to-zero, immediate reset: the rule of docs/lfp_rules.md written out by hand."""
    torch.manual_seed(3)
    beta, theta, eps = 0.8, 0.6, 1e-6
    z = torch.randn(7, 2, 3, dtype=torch.float64).requires_grad_(True)
    r = torch.randn(7, 2, 3, dtype=torch.float64)
    torch.set_default_dtype(torch.float64)
    lif = LIF(beta=beta, threshold=theta, reset="zero", learn_beta=True, learn_threshold=True)
    torch.set_default_dtype(torch.float32)
    s, _ = default_composite().rule_for(lif).forward(lif, z)
    s.backward(r)
    u = torch.zeros(2, 3, dtype=torch.float64)
    ups, vs = [], []
    for t in range(7):
        v = beta * u + z[t].detach()
        ups.append(u)
        vs.append(v)
        u = v * (v <= theta)
    q = torch.zeros(2, 3, dtype=torch.float64)
    ns = [None] * 7
    for t in range(6, -1, -1):
        d = ups[t].abs() + (vs[t] - ups[t]).abs() + eps
        ns[t] = (r[t] + q) / d
        q = beta * ups[t] * ns[t]
    n = torch.stack(ns)
    assert torch.allclose(z.grad, n * z.detach(), rtol=1e-12)
    assert torch.allclose(-lif.beta.grad, beta * (torch.stack(ups) * n).sum(), rtol=1e-12)
    assert torch.allclose(-lif.threshold.grad, -theta * n.sum(), rtol=1e-12)


def test_reward_validation():
    net = _nets()[0]
    x = torch.rand(5, 4, 6)
    y = torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="non-finite"):
        lfp_step(net, x, y, lambda o, t: torch.full_like(o, float("nan")))
    with pytest.raises(ValueError, match=r"reward has shape \(5, 4\)"):
        lfp_step(net, x, y, lambda o, t: o.sum(-1))
    with pytest.raises(TypeError, match="floating point"):
        lfp_step(net, x.long(), y, rate_coded_reward)
    for bad in (float("nan"), float("inf"), -float("inf")):
        xb = x.clone()
        xb[2, 1, 3] = bad
        with pytest.raises(ValueError, match="x contains NaN or inf"):
            lfp_step(net, xb, y, rate_coded_reward)
    with pytest.raises(ValueError, match="labels must lie in"):
        rate_coded_reward(torch.zeros(5, 4, 3), torch.tensor([0, 1, 2, 3]))


@pytest.mark.parametrize("momentum", [0.1, None])
def test_batchnorm_rule_updates_running_stats_like_torch(momentum):
    bn = nn.BatchNorm1d(5, momentum=momentum)
    ref = copy.deepcopy(bn)
    x = torch.randn(8, 5)
    for _ in range(3):
        y = default_composite().rule_for(bn).forward(bn, x)
        y_ref = ref(x)
    assert torch.allclose(y, y_ref, atol=1e-5)
    assert torch.allclose(bn.running_mean, ref.running_mean)
    assert torch.allclose(bn.running_var, ref.running_var)
    assert bn.num_batches_tracked == ref.num_batches_tracked


def test_patched_forward_keeps_the_module_signature():
    import inspect

    net = _nets()[0]
    before = inspect.signature(net[1].forward)
    with default_composite().context(net):
        assert inspect.signature(net[1].forward) == before
