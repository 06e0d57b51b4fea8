"""One source of neuron dynamics: every path through a neuron runs its kernel, bit for bit.

For every neuron (LIF with each reset, immediate and delayed, IF, CubaLIF, ALIF, RLIF, LI) the
module forward (autograd, in place, native), the LFP rule's forward (native, eager in place,
general) and the BPTT baseline's forward must give the same bits, in float64 and float32; the
kernels' decay and saturation hooks must reproduce the integer neuron of ``hw_export``; and a
shape mistake inside a composite must give the module's own message.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp import _native as native
from spikelfp.lfp import default_composite
from spikelfp.neurons import (
    CubaLIFParameters,
    CubaLIFState,
    LIFParameters,
    StepBuffers,
    cuba_update,
    lif_update,
    threshold_spike,
)
from spikelfp.training.bptt import FastSigmoid, surrogate

T, B, N = 12, 3, 6
DTYPES = (torch.float64, torch.float32)


def _per_neuron(module: nn.Module, names: tuple[str, ...], low: float, high: float) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in names:
            t = getattr(module, name)
            t.copy_(low + (high - low) * torch.rand(t.shape, generator=g))


def _lif(reset, delay, per_neuron=False):
    def make():
        m = LIF(beta=0.85, threshold=0.6, reset=reset, reset_delay=delay,
                shape=(N,) if per_neuron else None)  # fmt: skip
        if per_neuron:
            _per_neuron(m, ("beta",), 0.6, 1.0)
            _per_neuron(m, ("threshold",), 0.4, 0.9)
        return m

    return make


NEURONS = {
    **{
        f"lif-{reset}-{'delayed' if delay else 'immediate'}": _lif(reset, delay)
        for reset in ("zero", "subtract", "none")
        for delay in (False, True)
    },
    "lif-per-neuron-subtract-delayed": _lif("subtract", True, per_neuron=True),
    "lif-per-neuron-zero": _lif("zero", False, per_neuron=True),
    "if": lambda: IF(threshold=0.7, reset="subtract"),
    "cuba-zero": lambda: CubaLIF(alpha=0.7, beta=0.85, threshold=0.6),
    "cuba-subtract-delayed": lambda: CubaLIF(
        alpha=0.6, beta=0.9, threshold=0.6, reset="subtract", reset_delay=True, shape=(N,)
    ),
    "alif-zero": lambda: ALIF(beta=0.9, threshold=0.5, rho=0.8, kappa=0.4),
    "alif-subtract": lambda: ALIF(beta=0.9, threshold=0.5, rho=0.8, kappa=0.4, reset="subtract"),
    "rlif-zero": lambda: RLIF(N, beta=0.85, threshold=0.6),
    "rlif-subtract-delayed": lambda: RLIF(
        N, beta=0.9, threshold=0.6, reset="subtract", reset_delay=True, per_neuron=True
    ),
    "li": lambda: LI(beta=0.8, shape=(N,)),
}


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bits (so that even the sign of a zero must agree)."""
    t = t.detach().contiguous()
    return t.view(torch.int64 if t.dtype == torch.float64 else torch.int32)


def _flat(out, state) -> list[torch.Tensor]:
    return [out, *state]


def _inputs(dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(T, B, N, generator=g) * 0.6 + 0.35).to(dtype)
    # the same values, not contiguous (the rules' general path, the module's eager in-place path)
    x_strided = x.transpose(0, 1).contiguous().transpose(0, 1)
    assert torch.equal(x, x_strided) and not x_strided.is_contiguous()
    return x, x_strided


def _paths(module: nn.Module, x: torch.Tensor, x_strided: torch.Tensor, state=None) -> dict:
    """Output and final state of every way of running ``module`` forward."""
    paths = {}
    xg = x.clone().requires_grad_(True)
    paths["module autograd"] = module(xg, state)
    with torch.no_grad():
        paths["module no-grad (native)"] = module(x, state)
        with native.disabled():
            paths["module no-grad (eager in place)"] = module(x, state)
        paths["module no-grad (strided)"] = module(x_strided, state)
    comp = default_composite()
    with comp.context(module):
        paths["rule (native)"] = module(xg, state)
        with native.disabled():
            paths["rule (eager in place)"] = module(xg, state)
        paths["rule (general, strided)"] = module(x_strided.clone().requires_grad_(True), state)
    with surrogate(module):
        paths["bptt"] = module(xg, state)
    return paths


@pytest.mark.parametrize("dtype", DTYPES, ids=("float64", "float32"))
@pytest.mark.parametrize("name", sorted(NEURONS))
def test_module_rule_and_bptt_forwards_are_bit_identical(name, dtype):
    module = NEURONS[name]().to(dtype)
    x, x_strided = _inputs(dtype)
    paths = _paths(module, x, x_strided)
    ref_name, (ref_out, ref_state) = next(iter(paths.items()))
    if not isinstance(module, LI):  # the comparison means something: some spikes, not all
        rate = ref_out.float().mean().item()
        assert 0.05 < rate < 0.95, f"{name}: firing rate {rate}"
    for path, (out, state) in paths.items():
        assert type(state) is type(ref_state), path
        for a, b in zip(_flat(out, state), _flat(ref_out, ref_state), strict=True):
            assert a.dtype == dtype and a.shape == b.shape, path
            assert torch.equal(_bits(a), _bits(b)), f"{name}: {path} != {ref_name}"
    # ... and from a given (non-zero) state, as when a sequence is fed in chunks
    with torch.no_grad():
        _, mid = module(x[: T // 2])
    paths = _paths(module, x[T // 2 :], x_strided[T // 2 :], mid)
    ref_out, ref_state = paths["module autograd"]
    for path, (out, state) in paths.items():
        for a, b in zip(_flat(out, state), _flat(ref_out, ref_state), strict=True):
            assert torch.equal(_bits(a), _bits(b)), f"{name} (from a state): {path}"


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
@pytest.mark.parametrize("delay", [False, True])
def test_lif_kernel_equals_the_documented_equations(reset, delay):
    """The kernel against the equations of the LIF docstring, written out independently."""
    x, _ = _inputs(torch.float64)
    module = LIF(beta=0.85, threshold=0.6, reset=reset, reset_delay=delay).double()
    out, state = module(x)
    beta, theta = module.beta.item(), module.threshold.item()
    u = torch.zeros(B, N, dtype=torch.float64)
    spikes = []
    for z in x:
        v = beta * u + z
        r = (u > theta).double() if delay else (v > theta).double()
        u_new = {"zero": v * (1 - r), "subtract": v - theta * r, "none": v}[reset]
        spikes.append((u_new > theta).double() if delay else r)
        u = u_new
    assert torch.equal(out, torch.stack(spikes))
    assert torch.equal(state.v, u)


def test_in_place_buffers_give_the_pure_kernels_bits():
    """``StepBuffers`` (the fast paths) and the pure call agree; the spikes land in ``out.s``."""
    x, _ = _inputs(torch.float32)
    for reset in ("zero", "subtract", "none"):
        for delay in (False, True):
            p = LIFParameters(torch.tensor(0.9), torch.tensor(0.6), reset, delay)
            v = torch.zeros(B, N)
            bufs = StepBuffers(torch.empty(B, N), torch.empty(B, N), torch.empty(B, N))
            w = torch.zeros(B, N)
            for z in x:
                s, v, v_pre = lif_update(z, v, p)
                s2, w2, _ = lif_update(z, w, p, out=bufs)
                assert s2 is bufs.s and w2 is bufs.v
                assert torch.equal(_bits(s), _bits(s2)) and torch.equal(_bits(v), _bits(w2))
                w = w2.clone()


def test_bptt_spike_function_changes_only_the_gradient():
    x, _ = _inputs(torch.float64)
    module = LIF(beta=0.9, threshold=0.6, learn_threshold=True).double()
    xg = x.clone().requires_grad_(True)
    out, _ = module(xg)
    assert out.grad_fn is not None  # heaviside: a graph, with a derivative of exactly zero
    out.sum().backward()
    assert torch.count_nonzero(xg.grad) == 0
    xg.grad = None
    with surrogate(module, slope=5.0):
        out2, _ = module(xg)
    assert torch.equal(out, out2)
    out2.sum().backward()
    assert xg.grad.abs().sum() > 0 and module.threshold.grad.abs() > 0
    with pytest.raises(ValueError, match="slope must be positive"):
        FastSigmoid(slope=0.0)
    v = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)
    assert torch.equal(threshold_spike(v, torch.tensor(1.0)), FastSigmoid()(v, torch.tensor(1.0)))


def test_hooks_reproduce_the_integer_neuron():
    """The decay and saturation hooks give :class:`QuantizedNeuron`'s integer dynamics."""
    pytest.importorskip("numpy")
    from spikelfp.hw_export._decay import decay_torch
    from spikelfp.hw_export.quantize import QuantizedNeuron

    g = torch.Generator().manual_seed(3)
    x = torch.randint(-40, 90, (20, 2, 5), generator=g).double()
    sat = lambda v: v.clamp(-128, 127)  # noqa: E731 - 8-bit state
    for mode, param in (("shift", 2.0), ("mult", 3500.0)):
        dec = lambda v, b, mode=mode: decay_torch(v, mode, b, 12, "floor")  # noqa: E731
        for reset in ("zero", "subtract", "none"):
            for delay in (False, True):
                q = QuantizedNeuron("LIF", threshold=60.0, decay_mode=mode, v_decay=param,
                                    reset=reset, reset_delay=delay, state_bits=8)  # fmt: skip
                ref, ref_state = q(x)
                p = LIFParameters(q.v_decay, q.threshold, reset, delay)
                v, out = torch.zeros(2, 5, dtype=torch.float64), []
                for z in x:
                    s, v, _ = lif_update(z, v, p, decay=dec, saturate=sat)
                    out.append(s)
                assert 0 < ref.mean() < 1
                assert torch.equal(torch.stack(out), ref), (mode, reset, delay)
                assert torch.equal(v, ref_state.v), (mode, reset, delay)
        q = QuantizedNeuron("CubaLIF", threshold=60.0, decay_mode=mode, v_decay=param,
                            i_decay=param, reset="subtract", state_bits=8)  # fmt: skip
        ref, ref_state = q(x)
        p = CubaLIFParameters(q.i_decay, q.v_decay, q.threshold, "subtract")
        state, out = CubaLIFState(*torch.zeros(2, 2, 5, dtype=torch.float64)), []
        for z in x:
            s, state, _ = cuba_update(z, state, p, decay=dec, saturate=sat)
            out.append(s)
        assert torch.equal(torch.stack(out), ref) and torch.equal(state.v, ref_state.v)


@pytest.mark.parametrize(
    "make",
    [
        lambda: LIF(shape=(4,)),
        lambda: IF(shape=(4,)),
        lambda: CubaLIF(shape=(4,)),
        lambda: ALIF(shape=(4,)),
        lambda: LI(shape=(4,)),
    ],
    ids=["LIF", "IF", "CubaLIF", "ALIF", "LI"],
)
def test_shape_error_is_the_modules_own_message_everywhere(make):
    neuron = make()
    name = type(neuron).__name__
    net = Sequential(nn.Linear(5, 3), neuron)
    x = torch.rand(4, 2, 5)
    expected = rf"^{name}: per-neuron \w+ has shape \(4,\) but the input's features"
    messages = []
    for how in ("module", "composite", "bptt"):
        with pytest.raises(ValueError, match=expected) as err:
            if how == "module":
                net(x)
            elif how == "composite":
                with default_composite().context(net):
                    net(x)
            else:
                with surrogate(net):
                    net(x)
        messages.append(str(err.value))
    assert len(set(messages)) == 1 and "\n" not in messages[0]
    assert "broadcast" not in messages[0] and "size of tensor" not in messages[0]


def test_rlif_size_error_inside_a_composite():
    net = Sequential(nn.Linear(5, 3), RLIF(4))
    with default_composite().context(net), pytest.raises(ValueError, match=r"^RLIF\(4\) expects"):
        net(torch.rand(4, 2, 5))
