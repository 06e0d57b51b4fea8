"""The interop LFP Functions: T=1 chaining == whole sequence, and == spikelfp's own rules.

These need neither snntorch nor norse: the Functions are plain torch.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from spikelfp import LIF, RLIF, CubaLIF, Sequential
from spikelfp.interop._functions import NorseLFP, SnnLeakyLFP, SnnSynapticLFP
from spikelfp.lfp import default_composite
from spikelfp.lfp.neuron_rules import _LIFLFP, _CubaLFP

T, B, N = 12, 3, 5
TOL = 1e-12
f64 = torch.float64


def _close(a, b, tol=TOL):
    if a is None or b is None:
        assert a is None and b is None
        return
    scale = max(b.abs().max().item(), 1e-300)
    assert (a - b).abs().max().item() <= tol * scale, ((a - b).abs().max().item(), scale)


def _leaves(*ts):
    return [t.detach().clone().requires_grad_(True) for t in ts]


def _grads(outs, rewards, leaves):
    torch.autograd.backward(outs, rewards)
    return [x.grad for x in leaves]


def _leaky_inputs(seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(T, B, N, dtype=f64, generator=g) * 1.3
    v0 = torch.randn(B, N, dtype=f64, generator=g) * 0.5
    beta = torch.rand(N, dtype=f64, generator=g) * 0.5 + 0.4
    theta = torch.rand(N, dtype=f64, generator=g) * 0.5 + 0.6
    gain = torch.tensor(0.7, dtype=f64)
    r = torch.randn(T, B, N, dtype=f64, generator=g)
    r_last = torch.randn(B, N, dtype=f64, generator=g)
    return z, v0, beta, theta, gain, r, r_last


@pytest.mark.parametrize(
    "reset,delay,zero_prev,rec",
    [
        (r, d, zp, rec)
        for r, d, zp, rec in itertools.product(
            ["subtract", "zero", "none"], [True, False], [False, True], [False, True]
        )
        if not (zp and (r != "zero" or rec))
    ],
)
def test_leaky_chained_steps_equal_sequence(reset, delay, zero_prev, rec):
    z, v0, beta, theta, gain, r, r_last = _leaky_inputs(1)
    zr = torch.randn(T, B, N, dtype=f64) * 0.3 if rec else None

    def leaves():
        ls = _leaves(z, v0, beta, theta, gain)
        return ls + (_leaves(zr) if rec else [None])

    # whole sequence
    a = leaves()
    za, va, ba, ta, ga, ra = a
    out, v, _ = SnnLeakyLFP.apply(za, ra, va, ba, ta, ga, reset, delay, zero_prev, 1e-6)
    grads_seq = _grads([out, v], [r, r_last], [x for x in a if x is not None])
    # one call per step, state passed on
    b = leaves()
    zb, vb, bb, tb, gb, rb = b
    state, outs = vb, []
    for t in range(T):
        o, state, _ = SnnLeakyLFP.apply(
            zb[t : t + 1],
            rb[t : t + 1] if rec else None,
            state,
            bb,
            tb,
            gb,
            reset,
            delay,
            zero_prev,
            1e-6,
        )
        outs.append(o[0])
    _close(torch.stack(outs).detach(), out.detach(), 0)
    _close(state.detach(), v.detach(), 0)
    grads_step = _grads([torch.stack(outs), state], [r, r_last], [x for x in b if x is not None])
    for gs, gt in zip(grads_seq, grads_step, strict=True):
        _close(gt, gs)


@pytest.mark.parametrize(
    "reset,delay", list(itertools.product(["subtract", "zero", "none"], [True, False]))
)
def test_synaptic_chained_steps_equal_sequence(reset, delay):
    z, v0, beta, theta, gain, r, r_last = _leaky_inputs(2)
    i0 = torch.randn(B, N, dtype=f64) * 0.3
    alpha = torch.rand(N, dtype=f64) * 0.5 + 0.3
    i_last = torch.randn(B, N, dtype=f64)
    a = _leaves(z, i0, v0, alpha, beta, theta, gain)
    out, i, v, _ = SnnSynapticLFP.apply(*a, reset, delay, 1e-6)
    g_seq = _grads([out, i, v], [r, i_last, r_last], a)
    b = _leaves(z, i0, v0, alpha, beta, theta, gain)
    si, sv, outs = b[1], b[2], []
    for t in range(T):
        o, si, sv, _ = SnnSynapticLFP.apply(b[0][t : t + 1], si, sv, *b[3:], reset, delay, 1e-6)
        outs.append(o[0])
    g_step = _grads([torch.stack(outs), si, sv], [r, i_last, r_last], b)
    _close(torch.stack(outs).detach(), out.detach(), 0)
    for gs, gt in zip(g_seq, g_step, strict=True):
        _close(gt, gs)


@pytest.mark.parametrize(
    "kind,reset",
    [("lif", "value"), ("box", "value"), ("box", "subtract"), ("li", "value"), ("libox", "value")],
)
def test_norse_chained_steps_equal_sequence(kind, reset):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(T, B, N, dtype=f64, generator=g) * 40
    v0 = torch.tensor(-0.2, dtype=f64)  # norse cells start from a scalar v_leak
    i0 = torch.randn(B, N, dtype=f64, generator=g)
    params = (
        torch.tensor(200.0, dtype=f64),
        torch.tensor(100.0, dtype=f64),
        torch.tensor(-0.2, dtype=f64),
        torch.tensor(0.3, dtype=f64),
        torch.tensor(-0.1, dtype=f64),
    )
    r = torch.randn(T, B, N, dtype=f64, generator=g)
    rv, ri = torch.randn(B, N, dtype=f64), torch.randn(B, N, dtype=f64)
    current = kind in ("lif", "li")
    a = _leaves(z, v0, i0)
    out, v, i = NorseLFP.apply(*a, *params, 1e-3, kind, reset, 1e-6)
    g_seq = _grads(
        [out, v] + ([i] if current else []),
        [r, rv] + ([ri] if current else []),
        a if current else a[:2],
    )
    b = _leaves(z, v0, i0)
    sv, si, outs = b[1], b[2], []
    for t in range(T):
        o, sv, si2 = NorseLFP.apply(b[0][t : t + 1], sv, si, *params, 1e-3, kind, reset, 1e-6)
        si = si2 if current else si
        outs.append(o[0])
    g_step = _grads(
        [torch.stack(outs), sv] + ([si] if current else []),
        [r, rv] + ([ri] if current else []),
        b if current else b[:2],
    )
    _close(torch.stack(outs).detach(), out.detach(), 0)
    for gs, gt in zip(g_seq, g_step, strict=True):
        _close(gt, gs)


# ---------------------------------------------------------------------------------------------
# Equal to spikelfp's own rules on the equivalent spikelfp neuron


def _spikelfp_lif(z, v0, beta, theta, reset, delay, r, r_last):
    a = _leaves(z, v0, beta, theta)
    s, v = _LIFLFP.apply(a[0], a[1], a[2], a[3], reset, delay, 1e-6, False)
    return s.detach(), _grads([s, v], [r, r_last], a)


@pytest.mark.parametrize(
    "snn_reset,snn_delay,zero_prev,lfp_reset,lfp_delay",
    [
        ("subtract", True, False, "subtract", True),  # lfprop's model
        ("none", True, False, "none", False),
        ("none", False, False, "none", True),
        ("zero", True, True, "zero", False),  # snntorch Leaky zero == spikelfp immediate zero
        ("zero", False, True, "zero", False),
        ("subtract", False, False, "subtract", False),  # equal while no membrane stays above θ
        ("zero", True, False, "zero", True),  # RLeaky/Synaptic zero == spikelfp delayed zero
    ],
)
def test_leaky_rule_equals_spikelfp_rule(snn_reset, snn_delay, zero_prev, lfp_reset, lfp_delay):
    z, _, beta, theta, _, r, r_last = _leaky_inputs(4)
    z = z.clamp(-1.0, 0.6)  # one step never lifts a membrane past 2θ (snntorch quirk, below)
    v0 = torch.zeros(B, N, dtype=f64)
    gain = torch.tensor(1.0, dtype=f64)
    a = _leaves(z, v0, beta, theta)
    s, v, _ = SnnLeakyLFP.apply(
        a[0], None, a[1], a[2], a[3], gain, snn_reset, snn_delay, zero_prev, 1e-6
    )
    # snntorch's zero-reset Leaky stores the membrane before its reset; its reward on the final
    # state therefore differs from spikelfp's (U = 0 where it spiked): reward the spikes only.
    last = torch.zeros_like(r_last) if zero_prev else r_last
    g_snn = _grads([s, v], [r, last], a)
    s_ref, g_ref = _spikelfp_lif(z, v0, beta, theta, lfp_reset, lfp_delay, r, last)
    assert s.sum() > 0
    _close(s.detach(), s_ref, 0)
    for x, y in zip(g_snn, g_ref, strict=True):
        _close(x, y)


@pytest.mark.parametrize(
    "reset,delay",
    [("subtract", True), ("zero", True), ("none", True), ("zero", False), ("none", False)],
)
def test_synaptic_rule_equals_spikelfp_cuba_rule(reset, delay):
    z, _, beta, theta, _, r, r_last = _leaky_inputs(5)
    alpha = torch.rand(N, dtype=f64) * 0.5 + 0.3
    i0 = torch.zeros(B, N, dtype=f64)
    v0 = torch.zeros(B, N, dtype=f64)
    one = torch.tensor(1.0, dtype=f64)
    a = _leaves(z, i0, v0, alpha, beta, theta)
    s, i, v, _ = SnnSynapticLFP.apply(*a, one, reset, delay, 1e-6)
    g_snn = _grads([s, v], [r, r_last], a)
    b = _leaves(z, i0, v0, alpha, beta, theta)
    s2, i2, v2 = _CubaLFP.apply(*b, reset, delay, 1e-6)
    g_ref = _grads([s2, v2], [r, r_last], b)
    _close(s.detach(), s2.detach(), 0)
    for x, y in zip(g_snn, g_ref, strict=True):
        _close(x, y)


def test_norse_lif_rule_is_spikelfp_cuba_rule_on_a_scaled_membrane():
    """v_leak = v_reset = 0: norse's LIF is CubaLIF with U = v / a_m, θ = v_th / a_m."""
    g = torch.Generator().manual_seed(6)
    z = torch.randn(T, B, N, dtype=f64, generator=g) * 3 + 1
    dt, tsi, tmi = 1e-3, torch.tensor(250.0, dtype=f64), torch.tensor(125.0, dtype=f64)
    a_m, alpha = dt * tmi, 1 + -dt * tsi
    v_th = torch.tensor(0.15, dtype=f64)
    zero = torch.zeros((), dtype=f64)
    r = torch.randn(T, B, N, dtype=f64, generator=g)
    eps = 1e-13  # the two rules add ε to denominators of different scale; make it negligible
    a = _leaves(z)
    out, v, i = NorseLFP.apply(
        a[0],
        zero,
        torch.zeros(B, N, dtype=f64),
        tsi,
        tmi,
        zero,
        v_th,
        zero,
        dt,
        "lif",
        "value",
        eps,
    )
    (gz,) = _grads([out], [r], a)
    b = _leaves(z)
    s2, _, _ = _CubaLFP.apply(
        b[0],
        torch.zeros(B, N, dtype=f64),
        torch.zeros(B, N, dtype=f64),
        alpha,
        1 - a_m,
        v_th / a_m,
        "zero",
        False,
        eps,
    )
    (gz2,) = _grads([s2], [r], b)
    assert out.sum() > 0
    _close(out.detach(), s2.detach(), 0)
    _close(gz, gz2, 1e-9)


def test_rleaky_rule_with_recurrent_synapse_equals_spikelfp_rlif():
    """RLeaky's update through SnnLeakyLFP + the ε-rule on its recurrent Linear (bias 0) gives
    spikelfp's RLIF rule: same spikes, same feedback for input and recurrent weights."""
    torch.manual_seed(7)
    comp = default_composite()
    rec = nn.Linear(N, N).double()
    with torch.no_grad():
        rec.bias.zero_()
        rec.weight.mul_(2)
    rec.bias.requires_grad_(False)
    fc = nn.Linear(4, N).double()
    x = (torch.rand(T, B, 4, dtype=f64) < 0.5).to(f64)
    r = torch.randn(T, B, N, dtype=f64)
    beta, theta, one = (torch.tensor(v, dtype=f64) for v in (0.8, 0.6, 1.0))
    with comp.context(nn.ModuleList([rec, fc])):
        z = fc(x)
        s, v, outs = torch.zeros(B, N, dtype=f64), torch.zeros(B, N, dtype=f64), []
        for t in range(T):
            o, v, _ = SnnLeakyLFP.apply(
                z[t : t + 1],
                rec(s).unsqueeze(0),
                v,
                beta,
                theta,
                one,
                "subtract",
                True,
                False,
                1e-6,
            )
            s = o[0]
            outs.append(s)
        out = torch.stack(outs)
        out.backward(r)
    ref = Sequential(nn.Linear(4, N), RLIF(N, reset="subtract", reset_delay=True)).double()
    ref[1].beta.fill_(beta)  # set in float64: RLIF(beta=0.8) would hold float32's 0.8
    ref[1].threshold.fill_(theta)
    with torch.no_grad():
        ref[0].weight.copy_(fc.weight)
        ref[0].bias.copy_(fc.bias)
        ref[1].recurrent_weight.copy_(rec.weight)
    with comp.context(ref):
        out2, _ = ref(x)
        out2.backward(r)
    assert out.sum() > 0
    _close(out.detach(), out2.detach(), 0)
    _close(fc.weight.grad, ref[0].weight.grad)
    _close(rec.weight.grad, ref[1].recurrent_weight.grad)


def test_cuba_equivalence_module_level():
    """Sanity: spikelfp's own CubaLIF module agrees with _CubaLFP (guards the reference)."""
    cuba = CubaLIF(alpha=0.7, beta=0.8, threshold=0.5).double()
    x = torch.randn(T, B, N, dtype=f64)
    s, _ = cuba(x)
    s2, _ = default_composite().rule_for(cuba).forward(cuba, x)
    assert torch.equal(s, s2.detach())
    assert LIF  # imported for the docs of the mapping


@pytest.mark.parametrize("lib", ["snntorch", "norse"])
def test_missing_library_gives_an_actionable_import_error(lib, monkeypatch):
    import importlib

    import spikelfp.interop as interop

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name.split(".")[0] == lib:
            raise ImportError(f"No module named '{lib}'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    make = {"snntorch": interop.snntorch_composite, "norse": interop.norse_composite}[lib]
    with pytest.raises(ImportError, match=rf"pip install 'spikelfp\[baselines\]'.*{lib}"):
        make()
