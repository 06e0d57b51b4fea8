r"""NIR export and import (`nir <https://neuroir.org>`_: read by Lava/Loihi 2, rockpool/Xylo,
sinabs/Speck, SpiNNaker2, snntorch, norse).

**Continuous-time parameters for an explicit** ``dt``. NIR's LIF is
:math:`\tau \dot v = (v_{leak} - v) + r I`. Its forward-Euler step of length ``dt`` (the
discretisation NIR simulators such as snntorch's importer use) is

.. math:: v_t = (1 - \tfrac{dt}{\tau})\, v_{t-1} + \tfrac{dt\, r}{\tau}\, I_t ,

so spikelfp's :math:`V_t = \beta U_{t-1} + Z_t` is matched exactly by

.. math:: \tau = \frac{dt}{1-\beta},\qquad r = \frac{\tau}{dt} = \frac{1}{1-\beta},\qquad
    v_{leak} = 0,\quad v_{threshold} = \theta,\quad v_{reset} = 0

(unit input gain :math:`dt\,r/\tau = 1`). ``IF`` (:math:`\beta = 1`) becomes NIR ``IF`` with
:math:`r = 1/dt` (:math:`\dot v = rI`); ``LI`` becomes NIR ``LI`` (or ``I`` when
:math:`\beta = 1`); ``CubaLIF`` uses :math:`\tau_{syn} = dt/(1-\alpha)`,
:math:`w_{in} = 1/(1-\alpha)` and :math:`\tau_{mem}, r` as above (current updated first, as in
spikelfp). ``RLIF`` becomes a sub-graph ``input → LIF ⇄ Linear(W_rec)``, ``LIF → output``.
Per-neuron parameters are written as arrays of the layer's full shape; the Input node's shape
excludes the batch (and time) dimension; ``Flatten``'s dims are shifted accordingly.

NIR resets a spiking neuron to ``v_reset``. spikelfp's ``reset="subtract"``, ``reset="none"``
and ``reset_delay=True`` cannot be expressed, so they are refused
(:class:`ResetNotExpressibleError`) unless ``allow_reset_change=True``: then the file holds a
reset-to-zero neuron (that is what other tools will simulate) and the original reset in the
node's metadata, which :func:`from_nir` restores.

A quantised network (:func:`spikelfp.hw_export.quantize`) is written with its integer weights
and thresholds; each synapse's float scale (float weight = scale · integer weight) and each
neuron's integer decay are recorded in node metadata.

Files are written atomically (a temporary file in the target folder, then ``os.replace``).
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from .._io import atomic_write
from ..neurons import IF, LI, LIF, RLIF, CubaLIF
from ..sequential import Sequential
from ._layers import SumPool2d, canonicalize, infer_shapes, kind_of
from .errors import (
    ExportWriteError,
    NIRImportError,
    ResetNotExpressibleError,
    UnsupportedLayerError,
)
from .quantize import QuantizedNetwork, QuantizedNeuron

__all__ = ["require_nir", "to_nir", "write_nir", "export_nir", "from_nir", "read_nir"]

_INSTALL_HINT = "pip install 'spikelfp[export]'"
_GAIN_TOL = 1e-9


def require_nir():
    """Return the ``nir`` module or raise an ImportError that says how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise ImportError(
            f"NIR export/import needs the optional packages 'nir' and 'h5py' ({exc}). Install "
            f"the export extras with: {_INSTALL_HINT}"
        ) from exc
    return nir


def _check_dt(dt) -> float:
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a time step in seconds, got {dt!r}") from None
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive, finite time step in seconds, got {dt}")
    return dt


def _np(t: torch.Tensor, shape=None, dtype=np.float64) -> np.ndarray:
    t = t.detach().cpu()
    if shape is not None:
        t = t.expand(shape)
    return np.ascontiguousarray(t.to(torch.float64).numpy().astype(dtype))


def _weights(t: torch.Tensor, integer: bool) -> np.ndarray:
    """Weights as float32 unless that would round them (float64 then)."""
    a = t.detach().cpu().to(torch.float64).numpy()
    if t.dtype == torch.float32 or (integer and np.abs(a).max(initial=0) < 2**24):
        return a.astype(np.float32)
    return a


def _decay_of(layer, key: str) -> torch.Tensor:
    """The float decay (beta / alpha) of a float or quantised neuron."""
    if isinstance(layer, QuantizedNeuron):
        p = (layer.v_decay if key == "beta" else layer.i_decay).to(torch.float64)
        if layer.decay_mode == "none":
            return torch.ones_like(p)
        if layer.decay_mode == "shift":
            return 1.0 - torch.pow(2.0, -p)
        return 1.0 - p / 2.0**layer.decay_bits
    return getattr(layer, key).detach().to(torch.float64)


def _reset_problems(model) -> list[str]:
    out = []
    for i, layer in enumerate(model):
        reset = getattr(layer, "reset", None)
        if kind_of(layer) == "LI" or reset is None:
            continue
        what = []
        if reset != "zero":
            what.append(f'reset="{reset}"')
        if getattr(layer, "reset_delay", False):
            what.append("reset_delay=True")
        if what:
            out.append(f"layer {i} ({kind_of(layer)}, {', '.join(what)})")
    return out


def _neuron_meta(layer, integer: bool) -> dict:
    meta = {"spikelfp_kind": kind_of(layer)}
    if kind_of(layer) != "LI":
        meta["spikelfp_reset"] = layer.reset
        meta["spikelfp_reset_delay"] = int(bool(layer.reset_delay))
    if integer:
        meta.update(
            {
                "spikelfp_integer": 1,
                "decay_mode": layer.decay_mode,
                "decay_bits": int(layer.decay_bits),
                "decay_rounding": layer.rounding,
                "state_bits": -1 if layer.state_bits is None else int(layer.state_bits),
                "v_decay": _np(layer.v_decay),
            }
        )
        if layer.i_decay is not None:
            meta["i_decay"] = _np(layer.i_decay)
    return meta


def _lif_params(beta: np.ndarray, dt: float, index: int, what: str):
    if np.any(beta < 0) or np.any(beta > 1):
        raise UnsupportedLayerError(
            f"layer {index}: {what} must lie in [0, 1] for NIR, got "
            f"{beta.min():.4g}..{beta.max():.4g}"
        )
    if np.any(beta == 1):
        raise UnsupportedLayerError(
            f"layer {index}: {what} = 1 (no leak) has no finite NIR time constant in this "
            "neuron model; use IF/LI(beta=1) for a pure integrator or a decay < 1"
        )
    tau = dt / (1.0 - beta)
    return tau, 1.0 / (1.0 - beta)


def _neuron_node(nir, layer, shape, dt, index):
    kind = kind_of(layer)
    integer = isinstance(layer, QuantizedNeuron)
    meta = _neuron_meta(layer, integer)
    beta = _np(_decay_of(layer, "beta"), shape)
    meta["spikelfp_beta"] = beta
    if kind == "LI":
        if np.all(beta == 1):
            return nir.I(r=np.full(shape, 1.0 / dt), metadata=meta)
        tau, r = _lif_params(beta, dt, index, "beta")
        return nir.LI(tau=tau, r=r, v_leak=np.zeros(shape), metadata=meta)
    theta = _np(layer.threshold, shape)
    zeros = np.zeros(shape)
    if kind == "CubaLIF":
        alpha = _np(_decay_of(layer, "alpha"), shape)
        meta["spikelfp_alpha"] = alpha
        tau_syn, w_in = _lif_params(alpha, dt, index, "alpha")
        tau_mem, r = _lif_params(beta, dt, index, "beta")
        return nir.CubaLIF(
            tau_syn=tau_syn,
            tau_mem=tau_mem,
            r=r,
            v_leak=zeros.copy(),
            v_threshold=theta,
            v_reset=zeros,
            w_in=w_in,
            metadata=meta,
        )
    if np.all(beta == 1) and kind != "RLIF":
        return nir.IF(r=np.full(shape, 1.0 / dt), v_threshold=theta, v_reset=zeros, metadata=meta)
    tau, r = _lif_params(beta, dt, index, "beta")
    node = nir.LIF(
        tau=tau, r=r, v_leak=zeros.copy(), v_threshold=theta, v_reset=zeros, metadata=meta
    )
    if kind != "RLIF":
        return node
    w_rec = layer.w_rec if integer else layer.recurrent_weight
    n = shape[0]
    return nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type=np.array([n])),
            "lif": node,
            "w_rec": nir.Linear(weight=_weights(w_rec, integer)),
            "output": nir.Output(output_type=np.array([n])),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        metadata={"spikelfp_kind": "RLIF"},
    )


def _flatten_dims(layer: nn.Flatten, index: int) -> tuple[int, int]:
    s, e = layer.start_dim, layer.end_dim
    if s == 0 or e == 0:
        raise UnsupportedLayerError(
            f"layer {index}: Flatten(start_dim={s}, end_dim={e}) would merge the batch "
            "dimension; use start_dim >= 1"
        )
    return (s - 1 if s > 0 else s), (e - 1 if e > 0 else e)


def to_nir(
    model,
    dt: float = 1e-3,
    input_shape: Sequence[int] | None = None,
    *,
    allow_reset_change: bool = False,
):
    """A ``nir.NIRGraph`` of ``model`` (a :class:`spikelfp.Sequential` or a
    :class:`QuantizedNetwork`) for time step ``dt`` (seconds).

    ``input_shape`` is the per-sample input shape (no time, no batch); it is inferred for
    networks starting with a Linear layer. See the module docstring for the parameter mapping
    and ``allow_reset_change``.
    """
    nir = require_nir()
    dt = _check_dt(dt)
    qnet = model if isinstance(model, QuantizedNetwork) else None
    if qnet is not None:
        net = qnet.model
        input_shape = qnet.input_shape if input_shape is None else input_shape
    else:
        net = canonicalize(model)
    # a Sequential of QuantizedNeuron (e.g. read back with from_nir) is integer too
    integer = any(isinstance(m, QuantizedNeuron) for m in net)
    problems = _reset_problems(net)
    if problems:
        listed = "; ".join(problems)
        if not allow_reset_change:
            raise ResetNotExpressibleError(
                f"NIR neurons reset to v_reset immediately; these layers reset differently: "
                f"{listed}. Retrain with LIF(reset='zero', reset_delay=False), or pass "
                "allow_reset_change=True to export them as reset-to-zero neurons (the original "
                "reset is kept in the node metadata)."
            )
        warnings.warn(
            f"exporting with a changed reset (NIR: reset to zero) for {listed}; other "
            "simulators will not reproduce this network's spikes exactly",
            stacklevel=2,
        )
    shapes = infer_shapes(net, input_shape)
    nodes = {"input": nir.Input(input_type=np.array(shapes[0]))}
    edges = []
    prev = "input"
    for i, layer in enumerate(net):
        name = f"l{i}_{kind_of(layer).lower()}"
        meta = {}
        if qnet is not None and i in qnet.weight_scales:
            meta = {
                "spikelfp_integer": 1,
                "bits": int(qnet.bits),
                "weight_scale": _np(qnet.weight_scales[i]),
            }
        if isinstance(layer, nn.Linear):
            w = _weights(layer.weight, integer)
            if layer.bias is not None:
                node = nir.Affine(weight=w, bias=_weights(layer.bias, integer), metadata=meta)
            else:
                node = nir.Linear(weight=w, metadata=meta)
        elif isinstance(layer, (nn.Conv1d, nn.Conv2d)):
            w = _weights(layer.weight, integer)
            bias = (
                _weights(layer.bias, integer)
                if layer.bias is not None
                else np.zeros(w.shape[0], dtype=w.dtype)
            )
            one_d = isinstance(layer, nn.Conv1d)
            cls = nir.Conv1d if one_d else nir.Conv2d
            node = cls(
                input_shape=shapes[i][1] if one_d else tuple(shapes[i][1:]),
                weight=w,
                stride=layer.stride[0] if one_d else tuple(layer.stride),
                padding=layer.padding[0] if one_d else tuple(layer.padding),
                dilation=layer.dilation[0] if one_d else tuple(layer.dilation),
                groups=layer.groups,
                bias=bias,
                metadata=meta,
            )
        elif isinstance(layer, (nn.AvgPool2d, SumPool2d)):
            k = SumPool2d(layer.kernel_size, layer.stride, layer.padding)
            cls = nir.SumPool2d if isinstance(layer, SumPool2d) else nir.AvgPool2d
            node = cls(
                kernel_size=np.array(k.kernel_size),
                stride=np.array(k.stride),
                padding=np.array(k.padding),
            )
            node.input_type = {"input": np.array(shapes[i])}
            node.output_type = {"output": np.array(shapes[i + 1])}
        elif isinstance(layer, nn.Flatten):
            s, e = _flatten_dims(layer, i)
            node = nir.Flatten(input_type={"input": np.array(shapes[i])}, start_dim=s, end_dim=e)
        else:
            node = _neuron_node(nir, layer, shapes[i + 1], dt, i)
        nodes[name] = node
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output(output_type=np.array(shapes[-1]))
    edges.append((prev, "output"))
    meta = {
        "producer": "spikelfp",
        "spikelfp_version": __version__,
        "dt": dt,
        "discretisation": "forward Euler: beta = 1 - dt/tau, r = tau/dt (unit input gain)",
        "integer": int(integer),
    }
    if qnet is not None:
        meta.update(
            {
                "bits": int(qnet.bits),
                "profile": qnet.profile.name,
                "input_scale": float(qnet.input_scale),
            }
        )
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def write_nir(graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` atomically: a temporary file in the same folder, then
    ``os.replace``. On any failure the temporary file is removed and an existing file under
    ``path`` is left untouched (:class:`ExportWriteError`)."""
    nir = require_nir()
    path = Path(path)
    if path.is_dir():
        raise ExportWriteError(f"{path} is a folder; give a file name, e.g. {path / 'net.nir'}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ExportWriteError(
            f"cannot write {path}: the folder {parent} does not exist; create it first"
        )
    if not os.access(parent, os.W_OK):
        raise ExportWriteError(f"cannot write {path}: the folder {parent} is not writable")
    created = False
    try:
        with atomic_write(path) as tmp:
            created = True
            nir.write(str(tmp), graph)
    except Exception as err:
        if not created:
            raise ExportWriteError(f"cannot create a temporary file next to {path}: {err}") from err
        raise ExportWriteError(
            f"writing {path} failed ({type(err).__name__}: {err}); nothing was written "
            "under that name"
        ) from err
    return path


def export_nir(
    model, path, dt: float = 1e-3, input_shape=None, *, allow_reset_change: bool = False
) -> Path:
    """:func:`to_nir` then :func:`write_nir`; returns the path written."""
    graph = to_nir(model, dt, input_shape, allow_reset_change=allow_reset_change)
    return write_nir(graph, path)


def read_nir(path: str | os.PathLike):
    """Read a NIR file (``nir.read``) with a clear error for a missing or invalid file."""
    nir = require_nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no NIR file at {path}")
    try:
        return nir.read(path)
    except Exception as err:
        raise NIRImportError(f"{path} is not a readable NIR file: {err}") from err


# --------------------------------------------------------------------------- import


def _meta(node) -> dict:
    meta = getattr(node, "metadata", None) or {}
    out = {}
    for k, v in meta.items():
        if isinstance(v, bytes):
            v = v.decode("utf8")
        elif isinstance(v, np.ndarray) and v.dtype.kind in "SO" and v.ndim == 0:
            v = v.item().decode("utf8") if isinstance(v.item(), bytes) else v.item()
        out[k] = v
    return out


def _as_param(a: np.ndarray, dtype) -> torch.Tensor:
    a = np.asarray(a, dtype=np.float64)
    t = torch.from_numpy(a).to(dtype)
    flat = t.reshape(-1)
    if flat.numel() and bool((flat == flat[0]).all()):
        return flat[0].clone()
    return t


def _chain(graph) -> list[tuple[str, object]]:
    nir = require_nir()
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRImportError(f"from_nir needs exactly one Input node, found {inputs}")
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    order, cur, seen = [], inputs[0], set()
    while True:
        nxt = succ.get(cur, [])
        if not nxt:
            break
        if len(nxt) != 1 or len(pred.get(nxt[0], [])) != 1:
            raise NIRImportError(
                f"from_nir imports chains (a spikelfp.Sequential); node {cur!r} branches or "
                f"merges ({cur} -> {nxt}). Recurrent layers must be NIRGraph sub-graphs."
            )
        cur = nxt[0]
        if cur in seen:
            raise NIRImportError(f"cycle through {cur!r} outside a sub-graph")
        seen.add(cur)
        if isinstance(graph.nodes[cur], nir.Output):
            break
        order.append((cur, graph.nodes[cur]))
    return order


_NOT_PARAMETERS = ("input_type", "output_type", "metadata")


def _check_finite_node(nir, node, name: str) -> None:
    """Refuse a node whose parameters (weights, biases, time constants, thresholds, ...; the
    integer decays of a quantised node) hold NaN or infinite values, naming the node."""
    if isinstance(node, nir.NIRGraph):  # a recurrent sub-graph: check its nodes
        for inner, sub in node.nodes.items():
            _check_finite_node(nir, sub, f"{name}/{inner}")
        return
    fields = {}
    if dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            if f.name not in _NOT_PARAMETERS:
                fields[f.name] = getattr(node, f.name, None)
    meta = _meta(node)
    if int(meta.get("spikelfp_integer", 0) or 0):
        fields.update({k: meta[k] for k in ("v_decay", "i_decay", "weight_scale") if k in meta})
    for field_name, value in fields.items():
        if value is None or isinstance(value, str):
            continue
        try:
            a = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            continue  # not numbers (e.g. a padding mode): checked where it is used
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise NIRImportError(
                f"node {name!r} ({type(node).__name__}): {field_name} holds {bad} NaN or "
                f"infinite value{'s' if bad > 1 else ''} (of {a.size}); the file is corrupted "
                "or was written from a diverged network. Re-export it from a finite model"
            )


def _beta_from(tau, dt, meta_beta) -> np.ndarray:
    beta = 1.0 - dt / np.asarray(tau, dtype=np.float64)
    if meta_beta is not None:
        mb = np.asarray(meta_beta, dtype=np.float64)
        if mb.shape == beta.shape and np.all(np.abs(mb - beta) < 1e-9):
            return mb
    return beta


def _fold_gain(layers: list[nn.Module], gain: np.ndarray, name: str) -> None:
    """Multiply the synapse feeding a neuron by its NIR input gain ``dt r / tau``."""
    g = np.asarray(gain, dtype=np.float64)
    if np.all(np.abs(g - 1.0) < _GAIN_TOL):
        return
    j = len(layers) - 1
    while j >= 0 and isinstance(layers[j], (nn.AvgPool2d, SumPool2d)):
        j -= 1
    if j < 0 or not isinstance(layers[j], (nn.Linear, nn.Conv1d, nn.Conv2d)):
        raise NIRImportError(
            f"node {name!r} has an input gain dt*r/tau != 1 and no synapse in front of it to "
            "fold the gain into"
        )
    syn = layers[j]
    gflat = g.reshape(g.shape[0], -1)
    if not np.all(gflat == gflat[:, :1]):
        raise NIRImportError(f"node {name!r}: the input gain varies within a channel")
    gc = torch.from_numpy(gflat[:, 0]).to(syn.weight.dtype)
    with torch.no_grad():
        syn.weight.mul_(gc.reshape(-1, *([1] * (syn.weight.dim() - 1))))
        if syn.bias is not None:
            syn.bias.mul_(gc)


def _check_zero(node, field_name: str, name: str, what: str) -> None:
    v = getattr(node, field_name, None)
    if v is not None and not np.allclose(np.asarray(v, dtype=np.float64), 0.0):
        raise NIRImportError(
            f"node {name!r}: {field_name} != 0 ({what}) cannot be expressed by spikelfp's neurons"
        )


def _quantized_from_meta(kind, meta, threshold, w_rec=None) -> QuantizedNeuron:
    sb = int(meta.get("state_bits", -1))
    return QuantizedNeuron(
        kind,
        threshold=threshold,
        decay_mode=str(meta["decay_mode"]),
        v_decay=torch.as_tensor(np.asarray(meta["v_decay"], dtype=np.float64)),
        i_decay=(
            torch.as_tensor(np.asarray(meta["i_decay"], dtype=np.float64))
            if "i_decay" in meta
            else None
        ),
        decay_bits=int(meta["decay_bits"]),
        rounding=str(meta["decay_rounding"]),
        reset=str(meta.get("spikelfp_reset", "zero")),
        reset_delay=bool(int(meta.get("spikelfp_reset_delay", 0))),
        state_bits=None if sb < 0 else sb,
        w_rec=w_rec,
    )


def _reset_of(meta) -> tuple[str, bool]:
    return (str(meta.get("spikelfp_reset", "zero")), bool(int(meta.get("spikelfp_reset_delay", 0))))


def _import_neuron(nir, node, name, dt, layers, dtype):
    meta = _meta(node)
    integer = bool(int(meta.get("spikelfp_integer", 0)))
    reset, delay = _reset_of(meta)
    if isinstance(node, nir.NIRGraph):
        return _import_recurrent(nir, node, name, dt, layers, dtype)
    if isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
        _check_zero(node, "v_reset", name, "reset to a non-zero potential")
    if isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):
        _check_zero(node, "v_leak", name, "a leak towards a non-zero potential")
    if isinstance(node, nir.LIF):
        beta = _beta_from(node.tau, dt, meta.get("spikelfp_beta"))
        _fold_gain(layers, dt * np.asarray(node.r) / np.asarray(node.tau), name)
        if integer:
            return _quantized_from_meta(
                meta.get("spikelfp_kind", "LIF"), meta, _as_param(node.v_threshold, torch.float64)
            )
        return LIF(
            beta=_as_param(beta, dtype),
            threshold=_as_param(node.v_threshold, dtype),
            reset=reset,
            reset_delay=delay,
        )
    if isinstance(node, nir.IF):
        _fold_gain(layers, dt * np.asarray(node.r), name)
        if integer:
            return _quantized_from_meta("IF", meta, _as_param(node.v_threshold, torch.float64))
        return IF(threshold=_as_param(node.v_threshold, dtype), reset=reset, reset_delay=delay)
    if isinstance(node, nir.CubaLIF):
        alpha = _beta_from(node.tau_syn, dt, meta.get("spikelfp_alpha"))
        beta = _beta_from(node.tau_mem, dt, meta.get("spikelfp_beta"))
        gain = (
            dt
            * np.asarray(node.w_in)
            / np.asarray(node.tau_syn)
            * dt
            * np.asarray(node.r)
            / np.asarray(node.tau_mem)
        )
        _fold_gain(layers, gain, name)
        if integer:
            return _quantized_from_meta("CubaLIF", meta, _as_param(node.v_threshold, torch.float64))
        return CubaLIF(
            alpha=_as_param(alpha, dtype),
            beta=_as_param(beta, dtype),
            threshold=_as_param(node.v_threshold, dtype),
            reset=reset,
            reset_delay=delay,
        )
    if isinstance(node, nir.LI):
        beta = _beta_from(node.tau, dt, meta.get("spikelfp_beta"))
        _fold_gain(layers, dt * np.asarray(node.r) / np.asarray(node.tau), name)
        if integer:
            return _quantized_from_meta("LI", meta, None)
        return LI(beta=_as_param(beta, dtype))
    if isinstance(node, nir.I):
        _fold_gain(layers, dt * np.asarray(node.r), name)
        if integer:
            return _quantized_from_meta("LI", meta, None)
        return LI(beta=1.0)
    return None


def _import_recurrent(nir, graph, name, dt, layers, dtype):
    lif = [n for n in graph.nodes.values() if isinstance(n, nir.LIF)]
    rec = [n for n in graph.nodes.values() if isinstance(n, (nir.Linear, nir.Affine))]
    others = [
        type(n).__name__
        for n in graph.nodes.values()
        if not isinstance(n, (nir.LIF, nir.Linear, nir.Affine, nir.Input, nir.Output))
    ]
    if len(lif) != 1 or len(rec) != 1 or others:
        raise NIRImportError(
            f"sub-graph {name!r} is not a recurrent LIF (Input, LIF, Linear/Affine, Output); "
            f"found LIF x{len(lif)}, Linear/Affine x{len(rec)}, other {others}"
        )
    node, w = lif[0], rec[0]
    if isinstance(w, nir.Affine) and not np.allclose(w.bias, 0):
        raise NIRImportError(f"sub-graph {name!r}: a recurrent bias cannot be expressed by RLIF")
    meta = _meta(node)
    _check_zero(node, "v_reset", name, "reset to a non-zero potential")
    _check_zero(node, "v_leak", name, "a leak towards a non-zero potential")
    gain = dt * np.asarray(node.r, dtype=np.float64) / np.asarray(node.tau, dtype=np.float64)
    weight = np.asarray(w.weight, dtype=np.float64)
    n = weight.shape[0]
    if bool(int(meta.get("spikelfp_integer", 0))):
        _fold_gain(layers, gain, name)
        return _quantized_from_meta(
            "RLIF", meta, _as_param(node.v_threshold, torch.float64), w_rec=torch.from_numpy(weight)
        )
    if not np.all(np.abs(gain - 1) < _GAIN_TOL):
        _fold_gain(layers, gain, name)
        weight = weight * np.asarray(gain, dtype=np.float64).reshape(-1, 1)
    beta = _as_param(_beta_from(node.tau, dt, meta.get("spikelfp_beta")), dtype)
    theta = _as_param(node.v_threshold, dtype)
    reset, delay = _reset_of(meta)
    per = beta.dim() > 0 or theta.dim() > 0
    layer = RLIF(
        n,
        beta=beta.expand(n).clone() if per else beta,
        threshold=theta.expand(n).clone() if per else theta,
        reset=reset,
        reset_delay=delay,
        per_neuron=per,
    )
    with torch.no_grad():
        layer.recurrent_weight.copy_(torch.from_numpy(weight).to(dtype))
    return layer


def from_nir(graph, dt: float | None = None, dtype: torch.dtype | None = None) -> Sequential:
    """Build a :class:`spikelfp.Sequential` from a NIR graph (or a path to a NIR file).

    ``dt`` defaults to the one recorded by spikelfp's exporter; files from other tools need
    it. Decays are :math:`\\beta = 1 - dt/\\tau`; an input gain :math:`dt\\,r/\\tau \\ne 1` is
    folded into the synapse in front. A node whose parameters hold NaN or infinite values is
    refused (:class:`NIRImportError` naming the node) before anything is built. Nodes written
    from a quantised network come back as :class:`QuantizedNeuron` (float64 integers), so the
    round trip is exact.
    """
    nir = require_nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = read_nir(graph)
    meta = _meta(graph)
    if dt is None:
        if "dt" not in meta:
            raise NIRImportError(
                "this NIR graph records no time step; pass dt= (seconds) — the step its "
                "continuous-time parameters are to be discretised with"
            )
        dt = float(meta["dt"])
    dt = _check_dt(dt)
    integer = bool(int(meta.get("integer", 0)))
    dtype = dtype or (torch.float64 if integer else torch.get_default_dtype())
    layers: list[nn.Module] = []
    unsupported = []
    chain = _chain(graph)
    for name, node in chain:  # before anything is built: one line naming the node
        _check_finite_node(nir, node, name)
    for name, node in chain:
        layer = None
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = torch.from_numpy(np.asarray(node.weight, dtype=np.float64)).to(dtype)
            has_b = isinstance(node, nir.Affine)
            layer = nn.Linear(w.shape[1], w.shape[0], bias=has_b, dtype=dtype)
            with torch.no_grad():
                layer.weight.copy_(w)
                if has_b:
                    layer.bias.copy_(torch.from_numpy(np.asarray(node.bias, np.float64)))
        elif isinstance(node, (nir.Conv1d, nir.Conv2d)):
            w = torch.from_numpy(np.asarray(node.weight, dtype=np.float64)).to(dtype)
            if isinstance(node.padding, str):
                raise NIRImportError(
                    f"node {name!r}: string padding {node.padding!r} is not "
                    "supported; use numeric padding"
                )
            cls = nn.Conv1d if isinstance(node, nir.Conv1d) else nn.Conv2d
            nd = w.dim() - 2
            layer = cls(
                int(w.shape[1]) * int(node.groups),
                int(w.shape[0]),
                tuple(w.shape[2:]),
                _tuple_n(node.stride, nd),
                _tuple_n(node.padding, nd),
                _tuple_n(node.dilation, nd),
                int(node.groups),
                bias=True,
                dtype=dtype,
            )
            with torch.no_grad():
                layer.weight.copy_(w)
                layer.bias.copy_(torch.from_numpy(np.asarray(node.bias, np.float64)))
        elif isinstance(node, nir.SumPool2d):
            layer = SumPool2d(
                _tuple2(node.kernel_size), _tuple2(node.stride), _tuple2(node.padding)
            )
        elif isinstance(node, nir.AvgPool2d):
            layer = nn.AvgPool2d(
                _tuple2(node.kernel_size), _tuple2(node.stride), _tuple2(node.padding)
            )
        elif isinstance(node, nir.Flatten):
            s, e = int(node.start_dim), int(node.end_dim)
            layer = nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)
        else:
            layer = _import_neuron(nir, node, name, dt, layers, dtype)
        if layer is None:
            unsupported.append(f"{name} ({type(node).__name__})")
            continue
        layers.append(layer)
    if unsupported:
        raise NIRImportError(
            "NIR nodes without a spikelfp equivalent: " + ", ".join(unsupported) + ". Supported: "
            "Affine, Linear, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, LIF, IF, CubaLIF, "
            "LI, I, recurrent LIF sub-graphs"
        )
    net = Sequential(*layers)
    net.eval()
    return net


def _tuple_n(v, n: int) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return tuple(a * n if len(a) == 1 else a)


def _tuple2(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])
