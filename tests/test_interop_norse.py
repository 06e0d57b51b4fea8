"""LFP on unmodified norse models, and the spikelfp <-> norse converters."""

from __future__ import annotations

import pytest
import torch
from torch import nn

nt = pytest.importorskip("norse.torch", reason="norse is not installed (pip install norse)")

from norse.torch.functional.leaky_integrator import LIParameters  # noqa: E402
from norse.torch.functional.lif import LIFParameters  # noqa: E402
from norse.torch.functional.lif_box import LIFBoxParameters  # noqa: E402
from norse.torch.functional.reset import reset_subtract  # noqa: E402

from spikelfp import LI, LIF, CubaLIF, Sequential  # noqa: E402
from spikelfp.interop import (  # noqa: E402
    StepLoop,
    from_norse,
    norse_composite,
    norse_forward,
    to_norse,
)
from spikelfp.lfp import UnsupportedModuleError, lfp_step, rate_coded_reward  # noqa: E402

f64 = torch.float64
T, B = 30, 4


def _t(v, dtype=torch.float32):
    return torch.tensor(v, dtype=dtype)


def _cells():
    return {
        "LIFCell-leak-reset": lambda: nt.LIFCell(
            LIFParameters(v_leak=_t(-0.1), v_reset=_t(-0.3), v_th=_t(0.2))
        ),
        "LIFCell-default": lambda: nt.LIFCell(),
        "LIFBoxCell": lambda: nt.LIFBoxCell(LIFBoxParameters(v_th=_t(0.3))),
        "LIFBoxCell-subtract": lambda: nt.LIFBoxCell(
            LIFBoxParameters(v_th=_t(0.3), reset_method=reset_subtract)
        ),
        "LICell": lambda: nt.LICell(LIParameters(v_leak=_t(0.2))),
        "LIBoxCell": lambda: nt.LIBoxCell(),
        "LICell-float-params": lambda: nt.LICell(
            LIParameters(tau_syn_inv=150.0, tau_mem_inv=90.0, v_leak=_t(0.0))
        ),
        "LIFBoxCell-float-params": lambda: nt.LIFBoxCell(
            LIFBoxParameters(tau_mem_inv=90.0, v_th=0.3, v_leak=_t(0.0), v_reset=0.0)
        ),
    }


@pytest.mark.parametrize("dtype", [torch.float32, f64])
@pytest.mark.parametrize("name", list(_cells()))
def test_cell_forward_is_bit_identical_to_norse(name, dtype):
    cell = _cells()[name]()
    x = torch.randn(T, B, 6, dtype=dtype) * 30 + 10

    def run():
        state, outs, states = None, [], []
        for t in range(T):
            out, state = cell(x[t], state)
            outs.append(out)
            states.append(state)
        return torch.stack(outs), states

    ref, ref_states = run()
    with norse_composite().context(cell):
        got, got_states = run()
        got.backward(torch.ones_like(got))  # the reward reaches back through every step
    assert torch.equal(ref, got.detach())
    for a, b in zip(ref_states, got_states, strict=True):
        assert type(a) is type(b)
        assert all(torch.equal(u.detach(), v.detach()) for u, v in zip(a, b, strict=True))


@pytest.mark.parametrize("module", ["LIF", "LI", "LIF-record"])
def test_sequence_modules_forward_and_feedback_equal_per_step_cells(module):
    """norse's LIF/LI (whole sequences) are the same computation as LIFCell/LICell stepped:
    same outputs and the same LFP reward reaching the input."""
    p = (
        LIFParameters(v_th=_t(0.2, f64), v_leak=_t(0.0, f64))
        if module != "LI"
        else (LIParameters())
    )
    seq_mod = {
        "LIF": lambda: nt.LIF(p),
        "LI": lambda: nt.LI(p),
        "LIF-record": lambda: nt.LIF(p, record_states=True),
    }[module]()
    cell = nt.LIFCell(p) if module != "LI" else nt.LICell(p)
    x = torch.rand(T, B, 5, dtype=f64) * 40
    ref, _ = seq_mod(x)
    r = torch.randn_like(ref)
    comp = norse_composite()
    xa = x.clone().requires_grad_(True)
    with comp.context(seq_mod):
        out, state = seq_mod(xa)
        out.backward(r)
    assert torch.equal(out.detach(), ref)
    if module == "LIF-record":
        assert state.v.shape == (T, B, 5)
    xb = x.clone().requires_grad_(True)
    with comp.context(cell):
        out2, _ = norse_forward(cell, xb)
        out2.backward(r)
    assert torch.equal(out2.detach(), ref)
    assert xa.grad.abs().sum() > 0
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-12, atol=0)


def _pair(kind):
    torch.manual_seed(4)
    neuron = {
        "box": LIF(beta=0.8, threshold=0.4),
        "box-subtract": LIF(beta=0.8, threshold=0.4, reset="subtract"),
        "lif": CubaLIF(alpha=0.6, beta=0.8, threshold=0.4),
    }[kind]
    seq = Sequential(
        nn.Linear(10, 16),
        neuron,
        nn.Linear(16, 4),
        LIF(beta=0.85, threshold=0.3),
        nn.Linear(4, 3),
        LI(beta=0.9),
    ).double()
    return seq, to_norse(seq)


@pytest.mark.parametrize("kind", ["lif", "box", "box-subtract"])
def test_per_step_norse_lfp_equals_spikelfp_lfp_on_the_converted_network(kind):
    """LFP through the unmodified norse cells == LFP on spikelfp's own network: the membranes
    differ by the factor a = dt·τ_mem⁻¹, which the rule does not see (up to where ε enters)."""
    seq, net = _pair(kind)
    x = (torch.rand(T, B, 10, dtype=f64) < 0.5).to(f64)
    y = torch.tensor([0, 1, 2, 1])
    eps = 1e-13
    from spikelfp.lfp import default_composite

    def readout_reward(out, _):
        return torch.ones_like(out) / out.shape[0]

    res = lfp_step(seq, x, y, readout_reward, composite=default_composite(neuron_epsilon=eps))
    res2 = lfp_step(
        StepLoop(net), x, y, readout_reward, composite=norse_composite(neuron_epsilon=eps)
    )
    # the norse readout is a = dt·τ_mem⁻¹ = 1 - β times spikelfp's LI membrane
    a = 1 - seq[-1].beta.item()
    assert torch.allclose(res2.output, a * res.output, rtol=1e-9, atol=1e-12)
    for (n1, p1), (n2, p2) in zip(seq.named_parameters(), net.named_parameters(), strict=True):
        assert n1 == n2 and p1.grad is not None
        assert p1.grad.abs().sum() > 0, n1
        # the same reward on a readout a times larger is the same share of it: equal feedback
        err = (p1.grad - p2.grad).abs().max() / p1.grad.abs().max()
        assert err < 1e-8, (n1, float(err))


def test_rule_is_invariant_to_where_the_voltage_scale_puts_zero():
    """Shifting v_leak, v_th and v_reset by the same constant changes neither the spikes nor the
    LFP feedback: the rule works relative to the resting potential."""
    torch.manual_seed(5)
    fc = nn.Linear(8, 6).double()
    x = (torch.rand(T, B, 8, dtype=f64) < 0.5).to(f64)
    r = torch.randn(T, B, 6, dtype=f64)
    grads, outs = [], []
    for c in (0.0, -65.0):
        cell = nt.LIFCell(
            LIFParameters(v_leak=_t(c, f64), v_th=_t(c + 0.1, f64), v_reset=_t(c, f64))
        )
        fc.zero_grad()
        with norse_composite().context(nn.Sequential(fc, cell)):
            # built inside the context: SequentialState must still see the cell's `state`
            out, _ = norse_forward(nt.SequentialState(fc, cell), x)
            out.backward(r)
        outs.append(out.detach())
        grads.append(fc.weight.grad.clone())
    assert outs[0].sum() > 0 and torch.equal(outs[0], outs[1])
    assert torch.allclose(grads[0], grads[1], rtol=1e-6, atol=1e-12)


def test_norse_lfp_learns_a_toy_task():
    torch.manual_seed(0)
    net = nt.SequentialState(
        nn.Linear(12, 24),
        nt.LIFBoxCell(LIFBoxParameters(v_th=_t(0.05))),
        nn.Linear(24, 3),
        nt.LIFBoxCell(LIFBoxParameters(v_th=_t(0.05))),
    )
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (192,), generator=g)
    rates = torch.full((192, 12), 0.05)
    for c in range(3):
        rates[y == c, 4 * c : 4 * c + 4] = 0.7
    x = (torch.rand(16, 192, 12, generator=g) < rates).float()
    model = StepLoop(net)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    comp = norse_composite()

    def acc():
        with torch.no_grad():
            out, _ = model(x[:, 128:])
        return (out.sum(0).argmax(-1) == y[128:]).float().mean().item()

    before = acc()
    for _ in range(4):
        for i in range(0, 128, 32):
            lfp_step(
                model,
                x[:, i : i + 32],
                y[i : i + 32],
                lambda o, t: rate_coded_reward(o, t, scale=1 / o.shape[0]),
                opt,
                comp,
            )
    after = acc()
    assert after >= 0.8 and after > before + 0.2, (before, after)


def test_unsupported_norse_modules_are_listed_before_any_step():
    net = nt.SequentialState(
        nn.Linear(3, 4),
        nt.LIFRecurrentCell(4, 4),
        nt.LIFCell(LIFParameters(method="adjoint")),
        nt.LIFBoxCell(LIFBoxParameters(v_th=torch.tensor(0.3, requires_grad=True))),
        nt.LSNNCell(),
        nt.LIFCell(),
    )
    with pytest.raises(UnsupportedModuleError) as err:
        with norse_composite().context(net):
            pytest.fail("the context must not be entered")
    msg = str(err.value)
    for what in (
        "1 (LIFRecurrentCell)",
        "2 (LIFCell)",
        "adjoint",
        "3 (LIFBoxCell)",
        "v_th",
        "4 (LSNNCell)",
        "LIBoxCell",
        "Linear",
    ):
        assert what in msg, what
    assert "5 (LIFCell)" not in msg
    assert all("forward" not in vars(m) for m in net.modules())


def test_context_restores_the_cells():
    cell = nt.LIFCell()
    before = dict(vars(cell))
    with norse_composite().context(cell):
        assert "forward" in vars(cell)
    assert vars(cell) == before


# ---------------------------------------------------------------------------------------------
# Converters


@pytest.mark.parametrize("dtype", [f64, torch.float32])
@pytest.mark.parametrize("kind", ["lif", "box", "box-subtract"])
def test_converters_give_the_same_spikes(kind, dtype):
    seq, _ = _pair(kind)
    seq = seq.to(dtype)
    net = to_norse(seq)
    back = from_norse(net)
    x = (torch.rand(40, 16, 10, dtype=dtype) < 0.4).to(dtype)
    hidden_ref, _ = seq[:4](x)
    hidden, _ = norse_forward(nt.SequentialState(*list(net)[:4]), x)
    assert hidden_ref.sum() > 0
    assert torch.equal(hidden, hidden_ref)
    ref, _ = seq(x)
    out, _ = norse_forward(net, x)
    tol = 1e-9 if dtype == f64 else 1e-5
    a = 1 - seq[-1].beta.item()
    assert torch.allclose(out, a * ref, rtol=tol, atol=tol)  # LIBoxCell: a × spikelfp's LI
    out_back, _ = back(x)
    assert torch.allclose(out_back, ref, rtol=tol, atol=tol)
    assert [type(m).__name__ for m in back] == [type(m).__name__ for m in seq]


def test_from_norse_shifts_the_resting_potential_away():
    torch.manual_seed(6)
    net = nt.SequentialState(
        nn.Linear(6, 8),
        nt.LIFCell(
            LIFParameters(v_leak=_t(-65.0, f64), v_th=_t(-64.9, f64), v_reset=_t(-65.0, f64))
        ),
    )
    net = net.double()
    seq = from_norse(net)
    x = (torch.rand(30, 4, 6, dtype=f64) < 0.5).to(f64)
    ref, _ = norse_forward(net, x)
    out, _ = seq(x)
    assert ref.sum() > 0 and torch.equal(out, ref)


def test_converter_errors_are_actionable():
    with pytest.raises(ValueError, match="reset_delay"):
        to_norse(Sequential(nn.Linear(2, 2), LIF(reset="subtract", reset_delay=True)))
    with pytest.raises(ValueError, match="beta < 1"):
        to_norse(Sequential(nn.Linear(2, 2), LIF(beta=1.0)))
    with pytest.raises(ValueError, match="v_reset != v_leak"):
        from_norse(nt.SequentialState(nn.Linear(2, 2), nt.LIFCell(LIFParameters(v_reset=_t(-0.5)))))
    with pytest.raises(ValueError, match="current-based"):
        from_norse(nt.SequentialState(nn.Linear(2, 2), nt.LICell()))
    with pytest.raises(TypeError, match="SequentialState"):
        from_norse(nt.LIFCell())
