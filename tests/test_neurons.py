"""Neuron dynamics: modules equal their step kernels, resets behave as documented."""

import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.neurons import (
    ALIFState,
    CubaLIFState,
    LIFState,
    LIState,
    RLIFState,
    alif_step,
    cuba_step,
    heaviside,
    li_step,
    lif_step,
    rlif_step,
)

T, B, N = 12, 3, 5


def _run_steps(step, x, state, *args):
    outs = []
    for x_t in x.unbind(0):
        o, state = step(x_t, state, *args)
        outs.append(o)
    return torch.stack(outs), state


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [False, True])
def test_lif_module_equals_step_kernel(reset, delay):
    x = torch.rand(T, B, N) * 1.5
    lif = LIF(beta=0.8, threshold=0.7, reset=reset, reset_delay=delay)
    s, st = lif(x)
    s2, st2 = _run_steps(lif_step, x, LIFState(torch.zeros(B, N)), lif.parameters_tuple)
    assert torch.equal(s, s2) and torch.equal(st.v, st2.v)


def test_lif_reset_semantics_by_hand():
    x = torch.tensor([1.5, 0.0, 0.0]).reshape(3, 1, 1)
    s, st = LIF(beta=1.0, threshold=1.0, reset="subtract")(x)
    assert s.flatten().tolist() == [1.0, 0.0, 0.0] and st.v.item() == pytest.approx(0.5)
    s, st = LIF(beta=1.0, threshold=1.0, reset="zero")(x)
    assert s.flatten().tolist() == [1.0, 0.0, 0.0] and st.v.item() == 0.0
    # delayed reset: the membrane stays above threshold one more step (snntorch Leaky)
    s, st = LIF(beta=1.0, threshold=1.0, reset="subtract", reset_delay=True)(x)
    assert s.flatten().tolist() == [1.0, 0.0, 0.0] and st.v.item() == pytest.approx(0.5)
    s, _ = LIF(beta=1.0, threshold=1.0, reset="none")(x)
    assert s.flatten().tolist() == [1.0, 1.0, 1.0]


def test_tau_dt_and_per_neuron_parameters():
    lif = LIF(tau=10e-3, dt=1e-3, shape=(N,), learn_beta=True, learn_threshold=True)
    assert lif.beta.shape == (N,) and isinstance(lif.beta, nn.Parameter)
    assert torch.allclose(lif.beta, torch.full((N,), 0.904837418))
    s, _ = lif(torch.rand(T, B, N))
    assert s.shape == (T, B, N)
    with pytest.raises(ValueError, match="per-neuron beta"):
        lif(torch.rand(T, B, N + 1))


def test_other_neurons_equal_their_kernels():
    x = torch.rand(T, B, N) * 2
    m = CubaLIF(alpha=0.7, beta=0.8)
    s, st = m(x)
    zeros = torch.zeros(B, N)
    s2, st2 = _run_steps(cuba_step, x, CubaLIFState(zeros, zeros), m.parameters_tuple)
    assert torch.equal(s, s2) and torch.equal(st.v, st2.v)
    m = ALIF(beta=0.9, kappa=0.4)
    s, _ = m(x)
    s2, _ = _run_steps(alif_step, x, ALIFState(zeros, zeros), m.parameters_tuple)
    assert torch.equal(s, s2)
    m = RLIF(N)
    s, _ = m(x)
    s2, _ = _run_steps(
        rlif_step, x, RLIFState(zeros, zeros), m.parameters_tuple, m.recurrent_weight
    )
    assert torch.equal(s, s2)
    m = LI(beta=0.5)
    u, _ = m(x)
    u2, _ = _run_steps(li_step, x, LIState(zeros), m.parameters_tuple)
    assert torch.allclose(u, u2)
    s, _ = IF()(x)
    assert s.shape == x.shape


def test_alif_threshold_adapts():
    x = torch.full((20, 1, 1), 0.6)
    s_lif, _ = LIF(beta=1.0, threshold=1.0)(x)
    s_alif, _ = ALIF(beta=1.0, threshold=1.0, rho=0.9, kappa=2.0)(x)
    assert s_alif.sum() < s_lif.sum()


def test_chunked_state_equals_whole_sequence():
    net = Sequential(
        nn.Linear(N, 4), LIF(beta=0.9), nn.Linear(4, 3), CubaLIF(), nn.Linear(3, 2), LI()
    )
    x = torch.rand(T, B, N)
    out, _ = net(x)
    a, st = net(x[:5])
    b, _ = net(x[5:], st)
    assert torch.allclose(out, torch.cat([a, b]))


def test_heaviside_has_zero_derivative():
    v = torch.randn(100, requires_grad=True)
    heaviside(v).sum().backward()
    assert torch.count_nonzero(v.grad) == 0


def test_bad_input_messages():
    with pytest.raises(ValueError, match="time-first"):
        LIF()(torch.rand(5))
    with pytest.raises(TypeError, match="floating-point"):
        LIF()(torch.ones(3, 2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="reset must be one of"):
        LIF(reset="soft")
    with pytest.raises(ValueError, match="tau and dt"):
        LIF(tau=0.01)
    with pytest.raises(ValueError, match=r"RLIF\(4\) expects input"):
        RLIF(4)(torch.rand(3, 2, 5))
    net = Sequential(nn.Linear(10, 4), LIF())
    with pytest.raises(ValueError, match="time-first"):
        net(torch.rand(2, 10))
    with pytest.raises(ValueError, match=r"layer 0 \(Linear\)"):
        net(torch.rand(5, 2, 9))
