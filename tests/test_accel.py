"""spikelfp._accel: the speed machinery gives the bits of the plain maths, and lives apart from it.

The chunked sums are compared on data whose arithmetic is exact (binary spikes, dyadic weights,
rewards that are dyadic multiples of z'), so any chunk-order dependence would be a bookkeeping
error, not rounding; per-sample results are compared on random float64 data.
"""

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

import spikelfp
from spikelfp import _accel, _native
from spikelfp._accel import chunking
from spikelfp.lfp._tensor import stabilized_divide
from spikelfp.lfp.neuron_rules import membrane_backward

ROOT = Path(spikelfp.__file__).resolve().parent
TINY = chunking.ChunkBytes(conv=600, rows=8 * 4, inference=64)  # many chunks
HUGE = chunking.ChunkBytes(conv=1 << 40, rows=1 << 40, inference=1 << 40)  # one chunk


def _budget(monkeypatch, budget):
    monkeypatch.setattr(chunking, "BUDGET", budget)


def _dyadic(shape, g, scale=4):
    """Small multiples of 1/scale: sums and products of a few of them are exact."""
    return torch.randint(-8, 9, shape, generator=g).double() / scale


def _spikes(shape, g):
    return (torch.rand(shape, generator=g) < 0.4).double()


def _reward(zmod, g):
    """ρ = k z' with k in {±1/2, ±1, ±2}: n = ρ / z' = k exactly (ε = 0)."""
    k = torch.tensor([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], dtype=zmod.dtype)
    return k[torch.randint(0, 6, zmod.shape, generator=g)] * zmod


def _linear_case(rows):
    g = torch.Generator().manual_seed(rows)
    x = _spikes((rows, 3, 9), g)
    w2, b2 = _dyadic((4, 9), g), _dyadic((4,), g)
    zmod = nn.functional.linear(x, w2, b2)
    return x, w2, zmod, _reward(zmod, g)


@pytest.mark.parametrize("rows", [1, 37, 300])
def test_linear_backward_in_small_chunks_is_the_unchunked_maths(rows, monkeypatch):
    x, w2, zmod, rho = _linear_case(rows)
    _budget(monkeypatch, TINY)
    assert chunking.rows_per_chunk(4 * 8, chunking.BUDGET.rows, minimum=256) == 256
    small = _accel.linear_backward_chunked(rho, x, w2, zmod, 0.0, True, True, True)
    _budget(monkeypatch, HUGE)
    whole = _accel.linear_backward_chunked(rho, x, w2, zmod, 0.0, True, True, True)
    n = stabilized_divide(rho, zmod, 0.0).reshape(-1, 4)
    xf = x.reshape(-1, 9)
    maths = (x * (n @ w2).reshape(x.shape), n.t() @ xf, n.sum(0))
    for a, b, c in zip(small, whole, maths, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    # only what is asked for is computed
    r_only = _accel.linear_backward_chunked(rho, x, w2, zmod, 0.0, True, False, False)
    assert torch.equal(r_only[0], maths[0]) and r_only[1:] == (None, None)


@pytest.mark.parametrize("dims", [1, 2])
def test_conv_forward_and_backward_in_small_chunks_are_the_unchunked_maths(dims, monkeypatch):
    g = torch.Generator().manual_seed(dims)
    conv = (nn.Conv1d, nn.Conv2d)[dims - 1](2, 3, 3, stride=2, padding=1).double()
    spec = _accel.ConvSpec(conv.stride, conv.padding, conv.dilation, conv.groups)
    x_rand = torch.randn((13, 2) + (9,) * dims, generator=g, dtype=torch.float64)
    w2, b2 = _dyadic(conv.weight.shape, g), _dyadic(conv.bias.shape, g)
    x = _spikes(x_rand.shape, g)
    _budget(monkeypatch, TINY)
    assert chunking._conv_rows(x, 3 * 5**dims) < x.shape[0]  # several chunks
    small_fwd = _accel.conv_forward_chunked(x_rand, conv.weight, conv.bias, spec)
    zmod = _accel.conv_forward_chunked(x, w2, b2, spec)
    rho = _reward(zmod, g)
    small = _accel.conv_backward_chunked(rho, x, w2, zmod, spec, 0.0, True, True, True)
    _budget(monkeypatch, HUGE)
    assert torch.equal(small_fwd, conv(x_rand).detach())
    assert torch.equal(zmod, _accel.conv_forward(x, w2, b2, spec))
    whole = _accel.conv_backward_chunked(rho, x, w2, zmod, spec, 0.0, True, True, True)
    n = stabilized_divide(rho, zmod, 0.0)
    xd = x.clone().requires_grad_(True)
    wd = w2.clone().requires_grad_(True)
    out = (nn.functional.conv1d, nn.functional.conv2d)[dims - 1](
        xd, wd, None, conv.stride, conv.padding
    )
    gx, gw = torch.autograd.grad(out, (xd, wd), n)
    maths = (x * gx, gw, n.movedim(1, -1).reshape(-1, 3).sum(0))
    for a, b, c in zip(small, whole, maths, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_max_pool_in_small_chunks_is_torchs_max_pool(monkeypatch):
    g = torch.Generator().manual_seed(3)
    x = _spikes((11, 2, 6, 6), g)  # binary: many ties
    rho = torch.randn(11, 2, 3, 3, generator=g, dtype=torch.float64)
    xd = x.clone().requires_grad_(True)
    y_ref = nn.functional.max_pool2d(xd, 2)
    (r_ref,) = torch.autograd.grad(y_ref, xd, rho)
    with _native.disabled():
        for budget in (TINY, HUGE):
            _budget(monkeypatch, budget)
            y, saved, winners = _accel.max_pool_argmax(x, 2, (2, 2), (2, 2), (0, 0), (1, 1), False)
            assert (winners.step == 1) == (budget is TINY) and not winners.native
            assert saved[0].dtype == torch.uint8  # offsets, not int64 indices
            assert torch.equal(y, y_ref.detach())
            assert torch.equal(_accel.scatter_to_argmax(rho, saved, winners), r_ref)


def test_inference_in_small_chunks_is_one_call(monkeypatch):
    g = torch.Generator().manual_seed(4)
    conv = nn.Conv2d(2, 3, 3).double()
    flat = torch.randn(20, 2, 6, 6, generator=g, dtype=torch.float64)
    _budget(monkeypatch, TINY)
    with torch.no_grad():
        assert torch.equal(_accel.apply_chunked(conv, flat, 3), conv(flat))
        y = spikelfp.sequential.apply_over_time(conv, flat.reshape(5, 4, 2, 6, 6))
        assert torch.equal(y.reshape(20, 3, 4, 4), conv(flat))


@pytest.mark.parametrize("epsilon", [0.0, 0.25])
def test_divide_is_the_stabilised_division(epsilon):
    g = torch.Generator().manual_seed(5)
    num = torch.randn(300, generator=g, dtype=torch.float64)
    den = torch.randn(300, generator=g, dtype=torch.float64)
    den[::7] = 0.0
    ref = stabilized_divide(num, den, epsilon)
    with _native.disabled():
        assert torch.equal(_accel.divide(num, den, epsilon), ref)
    assert torch.equal(_accel.divide(num, den, epsilon), ref)
    # broadcasting and mixed dtypes: the reference formula
    row = den[:10].float()
    assert torch.equal(
        _accel.divide(num.reshape(30, 10), row, epsilon),
        stabilized_divide(num.reshape(30, 10), row, epsilon),
    )


@pytest.mark.parametrize("keep_n", [True, False])
def test_inplace_membrane_backward_is_membrane_backward(keep_n):
    """The fused in-place backward gives the bits of the rule's recursion."""
    g = torch.Generator().manual_seed(6)
    t, shape, beta, eps = 7, (3, 4), torch.tensor(0.9, dtype=torch.float64), 1e-6
    z = torch.randn((t, *shape), generator=g, dtype=torch.float64)
    u_prev = torch.randn((t, *shape), generator=g, dtype=torch.float64)
    r = torch.randn((t, *shape), generator=g, dtype=torch.float64)
    q = torch.randn(shape, generator=g, dtype=torch.float64)
    v_pre = beta * u_prev + z
    inv_d = (u_prev.abs() + (v_pre - u_prev).abs()).add_(eps).reciprocal_()
    n_ref, q_ref = membrane_backward(r, q, u_prev, inv_d, beta)
    rho, n, q0 = _accel.membrane_backward_inplace(r, q, z, u_prev.clone(), beta, eps, keep_n, None)
    assert torch.equal(rho, n_ref * z) and torch.equal(q0, q_ref)
    assert torch.equal(n, n_ref) if keep_n else n is None


def test_lif_path():
    z, v0, beta, thr = torch.zeros(4, 2, 3), torch.zeros(2, 3), torch.tensor(0.9), torch.ones(3)
    native = _accel.LIFPath.NATIVE if _native.status().available else _accel.LIFPath.INPLACE
    assert _accel.lif_path(z, v0, beta, thr) is native
    with _native.disabled():
        assert _accel.lif_path(z, v0, beta, thr) is _accel.LIFPath.INPLACE
    general = _accel.LIFPath.GENERAL
    assert _accel.lif_path(z.transpose(1, 2), v0.t(), beta, thr) is general  # not contiguous
    assert _accel.lif_path(z, torch.zeros(3), beta, thr) is general  # a broadcast state
    assert _accel.lif_path(z, v0, beta.double(), thr) is general  # mixed dtypes
    assert _accel.lif_path(z, v0, beta, torch.ones(2)) is general  # does not broadcast


def _functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]


def _imports(path: Path) -> set[str]:
    """Modules imported by ``path`` (relative imports resolved against spikelfp)."""
    package = list(path.relative_to(ROOT.parent).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def test_the_rule_files_define_no_chunking_or_native_dispatch():
    """The LFP rules keep the maths: chunking and native dispatch are in spikelfp._accel."""
    files = sorted((ROOT / "lfp").glob("*.py"))
    assert any(f.name == "synapse_rules.py" for f in files)
    for path in files:
        chunky = [name for name in _functions(path) if "chunk" in name.lower()]
        assert not chunky, f"{path.name} defines chunking helpers {chunky}"
        direct = {
            m for m in _imports(path) if m.startswith(("spikelfp._native", "spikelfp.allocator"))
        }
        assert not direct, f"{path.name} imports {direct}; go through spikelfp._accel"
    assert not [n for n in _functions(ROOT / "sequential.py") if "chunk" in n.lower()]


def test_accel_is_layer_0():
    """spikelfp._accel imports torch, numpy, the standard library and spikelfp._native only."""
    for path in sorted((ROOT / "_accel").glob("*.py")):
        own = {m for m in _imports(path) if m.startswith("spikelfp")}
        outside = {
            m
            for m in own
            if not m.startswith(("spikelfp._accel", "spikelfp._native"))
            and m not in ("spikelfp", "spikelfp._native")
        }
        assert not outside, f"{path.name} imports {outside}"


def test_allocator_module_keeps_its_public_names():
    from spikelfp import allocator
    from spikelfp._accel import allocator as moved

    for name in allocator.__all__:
        assert getattr(allocator, name) is getattr(moved, name)
    assert spikelfp.reuse_freed_memory is moved.reuse_freed_memory
