"""The native kernels (spikelfp._native) are bit-identical to the eager rules they replace."""

import contextlib
import os
import shutil
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from spikelfp import _native as native
from spikelfp._accel import divide as _divide
from spikelfp.lfp import MaxPoolRule
from spikelfp.lfp.neuron_rules import _LIFLFP

pytestmark = pytest.mark.skipif(
    not native.status().available,
    reason=f"native kernels unavailable here: {native.status().detail}",
)


@pytest.fixture
def eager():
    """``eager(True)``: run the rules without the native kernels (the reference they match)."""
    with contextlib.ExitStack() as stack:

        def use(flag: bool):
            if flag:
                stack.enter_context(native.disabled())
            else:
                stack.close()

        yield use


def _lif_run(z, v0, beta, thr, mode, learnable):
    z = z.clone().requires_grad_(True)
    v0 = v0.clone().requires_grad_(True)
    beta = beta.clone().requires_grad_(learnable)
    thr = thr.clone().requires_grad_(learnable)
    reset, delay, readout = mode
    s, v = _LIFLFP.apply(z, v0, beta, thr, reset, delay, 1e-6, readout)
    r = torch.sin(torch.arange(s.numel(), dtype=s.dtype)).reshape(s.shape)
    g = torch.cos(torch.arange(v.numel(), dtype=v.dtype)).reshape(v.shape)
    torch.autograd.backward([s, v], [r, g])
    out = [s.detach(), v.detach(), z.grad, v0.grad]
    if learnable:
        out += [beta.grad, thr.grad]
    return out


MODES = [
    (reset, delay, False) for reset in ("zero", "subtract", "none") for delay in (False, True)
] + [("none", False, True)]


@pytest.mark.parametrize("mode", MODES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize(
    "steps, shape, pshape",
    [
        (13, (3, 7), ()),  # fewer neurons than a block
        (5, (2, 300), (300,)),  # a partial last block, one parameter per neuron
        (30, (8, 12, 30, 30), (12, 1, 1)),  # multi-threaded, per-channel parameters
        (1, (4, 5), (5,)),
    ],
)
@pytest.mark.parametrize("learnable", [False, True])
def test_lif_kernels_equal_eager(mode, dtype, steps, shape, pshape, learnable, eager):
    g = torch.Generator().manual_seed(steps)
    z = torch.randn(steps, *shape, generator=g, dtype=dtype) * 0.6
    v0 = torch.randn(shape, generator=g, dtype=dtype) * 0.3
    beta = torch.rand(pshape, generator=g, dtype=dtype) * 0.5 + 0.5
    thr = torch.rand(pshape, generator=g, dtype=dtype) * 0.5 + 0.3
    fast = _lif_run(z, v0, beta, thr, mode, learnable)
    eager(True)
    ref = _lif_run(z, v0, beta, thr, mode, learnable)
    if not mode[2]:
        assert 0 < fast[0].mean() < 1  # the case has spikes and silences
    for a, b in zip(fast, ref, strict=True):
        assert torch.equal(a, b)


@settings(max_examples=40, deadline=None)
@given(
    steps=st.integers(1, 12),
    neurons=st.integers(1, 600),
    mode=st.sampled_from(MODES),
    scale=st.floats(0.1, 3.0),
    seed=st.integers(0, 2**16),
)
def test_lif_kernels_equal_eager_property(steps, neurons, mode, scale, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(steps, neurons, generator=g) * scale
    v0 = torch.zeros(neurons)
    args = (z, v0, torch.tensor(0.9), torch.tensor(1.0), mode, False)
    fast = _lif_run(*args)
    with native.disabled():
        ref = _lif_run(*args)
    for a, b in zip(fast, ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("epsilon", [0.0, 1e-6, 0.25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_divide_equals_eager(epsilon, dtype, eager):
    g = torch.Generator().manual_seed(0)
    num = torch.randn(50_000, generator=g, dtype=dtype)
    den = torch.randn(50_000, generator=g, dtype=dtype)
    den[::7] = 0.0
    den[1::11] = -0.0
    den[3] = float("nan")
    num[5] = float("inf")
    fast = _divide(num, den, epsilon)
    eager(True)
    ref = _divide(num, den, epsilon)
    assert torch.equal(fast.isnan(), ref.isnan())
    assert torch.equal(fast.nan_to_num(), ref.nan_to_num())
    assert torch.equal(fast.signbit(), ref.signbit())


POOLS = [
    nn.MaxPool2d(2),
    nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True),  # overlapping, padded windows
    nn.MaxPool2d((2, 3), stride=(1, 2), dilation=(2, 1)),
    nn.MaxPool2d(3, stride=1, padding=1),  # every input in up to 9 windows
]


@pytest.mark.parametrize("pool", POOLS, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_maxpool_kernels_equal_torch_and_eager(pool, dtype, eager):
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(6, 3, 9, 11, generator=g) < 0.3).to(dtype)  # binary: many ties
    x[0, 0, 0, :4] = -float("inf")
    x[1, 1, 2, 3] = float("nan")
    x[1, 1, 2, 5] = float("nan")
    x[2, 2, 2, 2] = x[2, 2, 3, 3] = float("nan")  # two NaNs in a 2x2 window: the last wins
    x[2, 0, 4:6, 4:6] = -float("inf")  # a window of -inf only
    results = []
    for use_eager in (False, True):
        eager(use_eager)
        xr = x.clone().requires_grad_(True)
        y = MaxPoolRule().forward(pool, xr)
        rho = torch.cos(torch.arange(y.numel(), dtype=dtype)).reshape(y.shape)
        y.backward(rho)
        results.append((y.detach(), xr.grad))
    eager(False)
    xt = x.clone().requires_grad_(True)
    yt = pool(xt)
    yt.backward(torch.cos(torch.arange(yt.numel(), dtype=dtype)).reshape(yt.shape))
    for y, grad in results:
        assert torch.equal(y.nan_to_num(), yt.detach().nan_to_num())
        assert torch.equal(y.isnan(), yt.isnan())
        assert torch.equal(grad, xt.grad)


def test_maxpool_kernel_keeps_only_uint8_offsets():
    x = torch.rand(4, 2, 8, 8, requires_grad=True)
    y = MaxPoolRule().forward(nn.MaxPool2d(2), x)
    assert [t.dtype for t in y.grad_fn.saved_tensors] == [torch.uint8]


def _status_in_subprocess(env: dict) -> subprocess.CompletedProcess:
    code = (
        "import warnings; warnings.simplefilter('always');"
        "from spikelfp import _native as n; s = n.status(); print(s.available, '|', s.detail)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_kernels_can_be_turned_off():
    proc = _status_in_subprocess({"SPIKELFP_NATIVE": "0"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("False | turned off by SPIKELFP_NATIVE")
    assert "RuntimeWarning" not in proc.stderr


def test_missing_compiler_falls_back_with_a_warning(tmp_path):
    proc = _status_in_subprocess(
        {"CC": str(tmp_path / "no-such-cc"), "SPIKELFP_CACHE_DIR": str(tmp_path / "cache")}
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("False | the C compiler failed")
    assert "native LFP kernels unavailable" in proc.stderr and "eager rules" in proc.stderr


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler named cc")
def test_kernels_build_into_a_fresh_cache(tmp_path):
    proc = _status_in_subprocess({"SPIKELFP_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("True | built ")
    assert [p.suffix for p in tmp_path.iterdir()] == [".so"]  # no scratch file left behind
    again = _status_in_subprocess({"SPIKELFP_CACHE_DIR": str(tmp_path)})
    assert again.stdout.startswith("True | loaded ")


def test_lfp_step_trains_the_same_with_and_without_kernels(eager):
    from spikelfp import LIF, Sequential
    from spikelfp.lfp import lfp_step, rate_coded_reward

    def train(steps):
        torch.manual_seed(3)
        net = Sequential(
            nn.Conv2d(2, 4, 3), LIF(beta=0.9, threshold=0.3), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(4 * 3 * 3, 3), LIF(beta=0.8, threshold=0.2),
        )  # fmt: skip
        opt = torch.optim.SGD(net.parameters(), lr=0.5)
        g = torch.Generator().manual_seed(4)
        x = (torch.rand(6, 5, 2, 8, 8, generator=g) < 0.4).float()
        y = torch.randint(0, 3, (5,), generator=g)
        for _ in range(steps):
            lfp_step(net, x, y, lambda o, t: rate_coded_reward(o, t, 1 / 6), opt)
        return [p.detach().clone() for p in net.parameters()]

    start, trained = train(0), train(3)
    eager(True)
    ref = train(3)
    assert any(not torch.equal(a, b) for a, b in zip(start, trained, strict=True))  # it learned
    for a, b in zip(trained, ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", [m for m in MODES if not m[2]], ids=str)
@pytest.mark.parametrize("per_neuron", [False, True])
def test_lif_module_forward_without_grad_equals_eager(mode, per_neuron, eager):
    from spikelfp import LIF

    reset, delay, _ = mode
    shape = (12, 1, 1) if per_neuron else None
    lif = LIF(beta=0.85, threshold=0.4, reset=reset, reset_delay=delay, shape=shape)
    x = torch.randn(20, 3, 12, 5, 5, generator=torch.Generator().manual_seed(5)) * 0.5
    with torch.no_grad():
        fast = lif(x)
        eager(True)
        ref = lif(x)
    assert 0 < fast[0].mean() < 1
    assert torch.equal(fast[0], ref[0]) and torch.equal(fast[1].v, ref[1].v)


def test_empty_sequences_and_batches():
    z = torch.zeros(0, 4, 3, requires_grad=True)
    s, v = _LIFLFP.apply(z, torch.zeros(4, 3), torch.tensor(0.9), torch.tensor(1.0),
                         "zero", False, 1e-6, False)  # fmt: skip
    assert s.shape == (0, 4, 3) and torch.equal(v, torch.zeros(4, 3))
    z = torch.zeros(5, 0, 3, requires_grad=True)
    s, v = _LIFLFP.apply(z, torch.zeros(0, 3), torch.tensor(0.9), torch.tensor(1.0),
                         "zero", False, 1e-6, False)  # fmt: skip
    s.sum().backward()
    assert z.grad.shape == (5, 0, 3)
