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
:math:`r = 1`, the per-step gain as sinabs, norse and snntorch read it (``convention="nir"``
writes NIR's own :math:`r = 1/dt`, :math:`\dot v = rI`); ``LI`` becomes NIR ``LI`` (or ``I``
when :math:`\beta = 1`); ``CubaLIF`` uses :math:`\tau_{syn} = dt/(1-\alpha)`,
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

Import (:func:`from_nir`) reads what other frameworks write: their conventions are in
``spikelfp.hw_export.nir_conventions``, branching graphs and recurrent cycles become the
modules of ``spikelfp.hw_export.nir_graph``.

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
from ..neurons.base import NeuronModule
from ..sequential import Sequential, apply_over_time
from ._layers import SumPool2d, as_canonical, canonical_model, converter_for, kind_of
from ._nirutil import as_array as _np
from .errors import (
    ExportWriteError,
    NIRImportError,
    ResetNotExpressibleError,
    UnsupportedLayerError,
)
from .nir_conventions import CONVENTIONS, check_gain, detect_convention
from .nir_conventions import convention as get_convention
from .nir_graph import GraphNet, MultiSpike, RecurrentNeuron
from .quantize import QuantizedNetwork, QuantizedNeuron

__all__ = [
    "require_nir",
    "to_nir",
    "write_nir",
    "export_nir",
    "from_nir",
    "read_nir",
    "NIRConventionWarning",
    "EXPORT_CONVENTIONS",
]

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


def _reset_problems(model, expressible: str = "zero") -> list[str]:
    out = []
    for i, layer in enumerate(model):
        reset = getattr(layer, "reset", None)
        if kind_of(layer) == "LI" or reset is None:
            continue
        what = []
        if reset != expressible:
            what.append(f'reset="{reset}"')
        if getattr(layer, "reset_delay", False):
            what.append("reset_delay=True")
        if what:
            out.append(f"layer {i} ({kind_of(layer)}, {', '.join(what)})")
    return out


def _neuron_node(nir, layer, shape, dt, index, consumer="spikelfp"):
    node = _neuron_node_default(nir, layer, shape, dt, index)
    if consumer in ("spikelfp", "snntorch") and not (
        consumer == "snntorch" and isinstance(node, nir.IF)
    ):
        return node
    kind = kind_of(layer)
    meta = node.metadata
    beta = np.asarray(meta.get("spikelfp_beta"), dtype=np.float64)
    if consumer == "nir":  # NIR's own semantics: dv/dt = r I, Euler: v += dt r I
        if isinstance(node, (nir.IF, nir.I)):
            node.r = np.full(shape, 1.0 / dt)
        return node
    if consumer == "snntorch":  # snntorch reads IF as Leaky(beta=0.9): write a LIF with beta 1
        tau = np.full(shape, 1e300)
        meta["spikelfp_kind"] = kind
        return nir.LIF(
            tau=tau,
            r=tau / dt,
            v_leak=np.zeros(shape),
            v_threshold=node.v_threshold,
            v_reset=np.zeros(shape),
            metadata=meta,
        )
    if kind == "RLIF" or (consumer == "sinabs" and kind == "CubaLIF"):
        raise UnsupportedLayerError(
            f"layer {index}: {kind} has no {consumer} equivalent that reads NIR; export "
            "with convention='spikelfp' or leave it out"
        )
    if consumer == "norse" and isinstance(node, nir.LIF):
        # norse's LIFBoxCell integrates (1-beta) x: its membrane is (1-beta) times ours
        meta["spikelfp_threshold"] = np.asarray(node.v_threshold, dtype=np.float64)
        meta["spikelfp_unit_gain"] = 1
        node.v_threshold = node.v_threshold * (1.0 - beta)
        node.r = np.ones(shape)
    if consumer == "sinabs" and isinstance(node, (nir.LIF, nir.LI)):
        # sinabs: tau in time steps, decay exp(-1/tau), gain 1 (r must be 1)
        with np.errstate(divide="ignore"):
            node.tau = -1.0 / np.log(beta)  # beta = 0 -> tau = 0, exp(-1/0) = 0
        node.r = np.ones(shape)
        meta["spikelfp_unit_gain"] = 1
    return node


def _neuron_node_default(nir, layer, shape, dt, index):
    """The node the neuron's kind writes (:mod:`spikelfp.hw_export.kinds`)."""
    integer = isinstance(layer, QuantizedNeuron)
    return converter_for(layer).nir_node(nir, layer, shape, dt, index, integer)


EXPORT_CONVENTIONS = ("spikelfp", "nir", "snntorch", "norse", "sinabs")


def to_nir(
    model,
    dt: float = 1e-3,
    input_shape: Sequence[int] | None = None,
    *,
    allow_reset_change: bool = False,
    convention: str = "spikelfp",
):
    r"""A ``nir.NIRGraph`` of ``model`` (a :class:`spikelfp.Sequential` or a
    :class:`QuantizedNetwork`) for time step ``dt`` (seconds).

    Args:
        model: the network.
        dt: the time step the continuous-time parameters are written for.
        input_shape: the per-sample input shape (no time, no batch); inferred for networks
            starting with a Linear layer.
        allow_reset_change: see the module docstring.
        convention: whose reading the file is written for (``docs/interop.md`` has the
            table). ``"spikelfp"`` (default): LIF/CubaLIF/LI as in the module docstring,
            IF/I with ``r = 1`` (the per-step gain, as sinabs, norse and snntorch read it).
            ``"nir"``: NIR's own semantics, IF/I ``r = 1/dt``. ``"snntorch"``: ``dt = 1e-4``
            (snntorch's importer hard-codes it; ``dt`` is ignored) and IF as a LIF with
            :math:`\tau = 10^{300}` (snntorch reads NIR IF as a leaky neuron).
            ``"norse"``: LIF with ``r = 1`` and :math:`v_{th} = (1-\beta)\theta` (norse's
            LIFBoxCell integrates :math:`(1-\beta)x`; norse's LI readout is :math:`1-\beta`
            times spikelfp's). ``"sinabs"``: LIF/LI :math:`\tau = -1/\ln\beta` time steps,
            ``r = 1``, Linear as Affine; sinabs resets by subtraction, so
            ``reset="subtract"`` neurons are expressible and ``"zero"`` ones are not.

    Returns:
        The graph; its metadata records ``dt`` and the convention, so :func:`from_nir` reads
        it back exactly whichever convention it was written for.
    """
    nir = require_nir()
    dt = _check_dt(dt)
    if convention not in EXPORT_CONVENTIONS:
        raise ValueError(
            f"unknown export convention {convention!r}; use one of {list(EXPORT_CONVENTIONS)}"
        )
    if convention == "snntorch":
        dt = 1e-4
    qnet = model if isinstance(model, QuantizedNetwork) else None
    if qnet is not None:
        net = qnet.model
        input_shape = qnet.input_shape if input_shape is None else input_shape
        # the quantised layers have the shapes of the float ones they were made from
        cnet = as_canonical(qnet.canonical or net, input_shape)
    else:
        cnet = as_canonical(model, input_shape)
        net = canonical_model(cnet)
    # a Sequential of QuantizedNeuron (e.g. read back with from_nir) is integer too
    integer = any(isinstance(m, QuantizedNeuron) for m in net)
    problems = _reset_problems(net, "subtract" if convention == "sinabs" else "zero")
    if problems:
        listed = "; ".join(problems)
        if not allow_reset_change and convention == "sinabs":
            raise ResetNotExpressibleError(
                f"sinabs resets by subtraction immediately; these layers reset differently: "
                f"{listed}. Retrain with reset='subtract', reset_delay=False, or pass "
                "allow_reset_change=True (the original reset is kept in the node metadata)."
            )
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
    shapes = cnet.require_shapes()
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
        conv = converter_for(layer)
        if conv.role == "neuron":
            node = _neuron_node(nir, layer, shapes[i + 1], dt, i, convention)
        else:
            node = conv.nir_node(nir, layer, shapes, i, integer, meta, convention)
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
        # IF/I: r is the gain per step (as sinabs, norse, snntorch read it)
        "if_r_per_step": int(convention != "nir"),
        "convention": convention,
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
    except ValueError as err:
        if "type" not in str(err).lower():
            raise NIRImportError(f"{path} is not a readable NIR file: {err}") from err
        # several producers write input types with a batch dimension, which nir's type check
        # refuses; the parameters are what spikelfp reads, and their shapes are checked
        try:
            return nir.read(path, type_check=False)
        except Exception as err2:
            raise NIRImportError(f"{path} is not a readable NIR file: {err2}") from err2
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
        **_chip_from_meta(meta),
    )


def _chip_from_meta(meta) -> dict:
    """The chip neuron semantics a file's metadata holds (none: spikelfp's own neuron)."""
    if "spikelfp_fire_at" not in meta:
        return {}
    shift = int(meta.get("spikelfp_current_shift", -1))
    return {
        "fire_at": str(meta["spikelfp_fire_at"]),
        "min_decay": bool(int(meta.get("spikelfp_min_decay", 0))),
        "current_shift": None if shift < 0 else shift,
        "max_spikes": int(meta.get("spikelfp_max_spikes", 1)),
        "input_delay": bool(int(meta.get("spikelfp_input_delay", 0))),
        "v_floor": str(meta.get("spikelfp_v_floor", "state")),
    }


def _reset_of(meta) -> tuple[str, bool]:
    return (str(meta.get("spikelfp_reset", "zero")), bool(int(meta.get("spikelfp_reset_delay", 0))))


# --------------------------------------------------------------------------- graph structure


def _flatten(nir, graph, prefix: str = ""):
    """Inline sub-graphs: returns ``(nodes, edges)`` of a graph with no NIRGraph nodes.

    A sub-graph's nodes are renamed ``sub/inner``; an edge into the sub-graph goes to the
    successors of its Input node, an edge out of it leaves from the predecessors of its Output.
    """
    nodes, edges = {}, []
    entry, exit_ = {}, {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _flatten(nir, node, full + "/")
            ins = [k for k, n in node.nodes.items() if isinstance(n, nir.Input)]
            outs = [k for k, n in node.nodes.items() if isinstance(n, nir.Output)]
            if len(ins) != 1 or len(outs) != 1:
                raise NIRImportError(
                    f"sub-graph {full!r} needs exactly one Input and one Output node, found "
                    f"{len(ins)} and {len(outs)}"
                )
            i_name, o_name = f"{full}/{ins[0]}", f"{full}/{outs[0]}"
            entry[full] = [b for a, b in sub_edges if a == i_name]
            exit_[full] = [a for a, b in sub_edges if b == o_name]
            for k, v in sub_nodes.items():
                if k not in (i_name, o_name):
                    nodes[k] = v
            edges += [(a, b) for a, b in sub_edges if a != i_name and b != o_name]
            # a sub-graph whose input runs straight to its output
            if any(a == i_name and b == o_name for a, b in sub_edges):
                raise NIRImportError(f"sub-graph {full!r} connects its Input to its Output")
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + a, prefix + b
        for src in exit_.get(a, [a]):
            for dst in entry.get(b, [b]):
                edges.append((src, dst))
    return nodes, list(dict.fromkeys(edges))


def _find_recurrence(nir, nodes, preds, succs) -> dict[str, str]:
    """``neuron -> synapse`` for every flat cycle neuron -> Linear/Affine -> same neuron."""
    neurons = (nir.LIF, nir.IF, nir.CubaLIF)
    rec = {}
    for name, node in nodes.items():
        if not isinstance(node, (nir.Linear, nir.Affine)):
            continue
        p, s = preds.get(name, []), succs.get(name, [])
        if len(p) == 1 and p == s and isinstance(nodes.get(p[0]), neurons):
            if p[0] in rec:
                raise NIRImportError(
                    f"neuron {p[0]!r} has two recurrent synapses ({rec[p[0]]}, {name}); "
                    "merge them into one"
                )
            rec[p[0]] = name
    return rec


def _reaches(succs, a, b, within) -> bool:
    """Whether ``b`` can be reached from ``a`` in one or more steps inside ``within``."""
    seen, stack = set(), [m for m in succs.get(a, []) if m in within]
    while stack:
        n = stack.pop()
        if n == b:
            return True
        if n not in seen:
            seen.add(n)
            stack += [m for m in succs.get(n, []) if m in within]
    return False


def _topological(nodes, preds, succs, start) -> list[str]:
    """Kahn's order of the nodes reachable from ``start``; a cycle is an error naming it."""
    reach, stack = {start}, [start]
    while stack:
        for m in succs.get(stack.pop(), []):
            if m not in reach:
                reach.add(m)
                stack.append(m)
    indeg = {n: sum(1 for p in preds.get(n, []) if p in reach) for n in reach}
    order, frontier = [], [start]
    while frontier:
        n = frontier.pop(0)
        for m in succs.get(n, []):
            indeg[m] -= 1
            if indeg[m] == 0:
                order.append(m)
                frontier.append(m)
    left = {n for n in reach if n != start and n not in order}
    stuck = sorted(n for n in left if _reaches(succs, n, n, left))
    if left:
        raise NIRImportError(
            f"the graph has a cycle through {', '.join(stuck)} that is not a recurrent neuron "
            "(spikelfp imports cycles of the form neuron -> Linear/Affine -> the same neuron "
            "only); break it or rewrite it as such a recurrent synapse"
        )
    return order


# --------------------------------------------------------------------------- neurons


def _decays(conv, tau, dt, name: str, what: str, meta_value=None, trust=False) -> np.ndarray:
    """Per-step decays; spikelfp's own files keep the exact value from the metadata (always,
    when ``trust``: a file written for another reader, whose tau is in that reader's units)."""
    beta = conv.decay_of(tau, dt)
    if meta_value is not None and conv.name == "spikelfp":
        mb = np.asarray(meta_value, dtype=np.float64)
        if trust or (mb.shape == beta.shape and np.all(np.abs(mb - beta) < 1e-9)):
            beta = mb
    if not np.all(np.isfinite(beta)) or np.any(beta < 0) or np.any(beta > 1):
        dt_txt = "" if dt is None else f", dt = {dt:g}"
        raise NIRImportError(
            f"node {name!r}: {what} = {np.min(beta):.4g}..{np.max(beta):.4g} is not a decay in "
            f"[0, 1] under convention {conv.name!r}{dt_txt}; pass the producer's convention= "
            "or dt="
        )
    return beta


def _param(a, dtype, conv) -> torch.Tensor:
    """A per-neuron parameter (one value when all agree), in ``dtype``."""
    return _as_param(a, dtype)


def _exp_decay_param(tau, dtype) -> torch.Tensor:
    """sinabs computes exp(-1/tau) in its own (float32) precision: do the same."""
    t = torch.as_tensor(np.asarray(tau, dtype=np.float64)).to(dtype)
    d = torch.exp(-1.0 / t)
    flat = d.reshape(-1)
    return flat[0].clone() if flat.numel() and bool((flat == flat[0]).all()) else d


class _Imported:
    """One neuron node read under a convention: the module and its per-step input gain."""

    def __init__(self, module, gain):
        self.module, self.gain = module, np.asarray(gain, dtype=np.float64)


def _reset_for(conv, meta, reset, reset_delay, leaky: bool) -> tuple[str, bool]:
    """The reset and its timing for one neuron node.

    snntorch's ``Leaky(reset_mechanism="zero")`` zeroes the previous membrane before the leak,
    which spikes exactly like an immediate reset (``reset_delay=False``); its ``Synaptic`` and
    ``RLeaky`` zero the new membrane one step late (``reset_delay=True``).
    """
    if conv.name == "spikelfp":
        r, d = _reset_of(meta)
    else:
        r, d = conv.reset, conv.reset_delay
    r = reset if reset is not None else r
    if reset_delay is not None:
        return r, bool(reset_delay)
    if conv.name == "snntorch" and r == "zero" and leaky:
        return r, False
    return r, d


@dataclasses.dataclass(frozen=True)
class _Read:
    """What reading one neuron node needs: the node's name and metadata, the convention and
    the caller's overrides."""

    name: str
    meta: dict
    conv: object
    dt: float | None
    dtype: torch.dtype
    reset: str | None
    reset_delay: bool | None
    if_per_step: bool
    recurrent: bool

    @property
    def integer(self) -> bool:
        return bool(int(self.meta.get("spikelfp_integer", 0))) and self.conv.name == "spikelfp"

    @property
    def trust(self) -> bool:
        """A spikelfp file written for another reader (sinabs, norse): the originals are in
        the metadata."""
        return self.conv.name == "spikelfp" and bool(int(self.meta.get("spikelfp_unit_gain", 0)))

    @property
    def multi_spike(self) -> bool:
        return self.conv.multi_spike and self.reset is None and not self.recurrent

    def resets(self, node, leaky: bool) -> tuple[str, bool]:
        """The reset and its timing; a reset to zero needs ``v_reset = 0``."""
        rst, delay = _reset_for(
            self.conv, self.meta, self.reset, self.reset_delay, leaky and not self.recurrent
        )
        if rst == "zero":
            _check_zero(node, "v_reset", self.name, "reset to a non-zero potential")
        return rst, delay

    def no_leak_potential(self, node) -> None:
        _check_zero(node, "v_leak", self.name, "a leak towards a non-zero potential")


def _leaky_beta(node, c: _Read):
    if c.conv.decay == "exp_steps" and not c.integer:
        beta = _exp_decay_param(node.tau, c.dtype)
    else:
        beta = _param(
            _decays(c.conv, node.tau, c.dt, c.name, "beta", c.meta.get("spikelfp_beta"), c.trust),
            c.dtype,
            c.conv,
        )
    gain = np.ones(1) if c.trust else c.conv.lif_gain(node.tau, node.r, c.dt)
    return beta, gain


def _read_lif(node, c: _Read) -> _Imported:
    rst, delay = c.resets(node, leaky=True)
    c.no_leak_potential(node)
    beta, gain = _leaky_beta(node, c)
    meta = c.meta
    theta = meta["spikelfp_threshold"] if "spikelfp_threshold" in meta else node.v_threshold
    if c.integer:
        kind = meta.get("spikelfp_kind", "LIF")
        if kind == "RLIF":  # built with its recurrent weights by _make_recurrent
            return _Imported(None, gain)
        return _Imported(_quantized_from_meta(kind, meta, _as_param(theta, torch.float64)), gain)
    if c.multi_spike:
        return _Imported(MultiSpike(beta, _as_param(theta, c.dtype)), gain)
    mod = LIF(beta=beta, threshold=_as_param(theta, c.dtype), reset=rst, reset_delay=delay)
    return _Imported(mod, gain)


def _read_li(node, c: _Read) -> _Imported:
    c.no_leak_potential(node)
    beta, gain = _leaky_beta(node, c)
    mod = _quantized_from_meta("LI", c.meta, None) if c.integer else LI(beta=beta)
    return _Imported(mod, gain)


def _if_gain(node, c: _Read) -> np.ndarray:
    r = np.asarray(node.r, dtype=np.float64)
    return r if (c.if_per_step or c.dt is None) else c.dt * r


def _read_if(node, c: _Read) -> _Imported:
    rst, delay = c.resets(node, leaky=True)
    gain = _if_gain(node, c)
    if c.integer:
        theta = _as_param(node.v_threshold, torch.float64)
        return _Imported(_quantized_from_meta("IF", c.meta, theta), gain)
    theta = _as_param(node.v_threshold, c.dtype)
    if c.multi_spike:
        return _Imported(MultiSpike(torch.ones((), dtype=c.dtype), theta), gain)
    return _Imported(IF(threshold=theta, reset=rst, reset_delay=delay), gain)


def _read_i(node, c: _Read) -> _Imported:
    mod = _quantized_from_meta("LI", c.meta, None) if c.integer else LI(beta=1.0)
    return _Imported(mod, _if_gain(node, c))


def _read_cuba(node, c: _Read) -> _Imported:
    rst, delay = c.resets(node, leaky=False)
    c.no_leak_potential(node)
    conv, dt, dtype, meta = c.conv, c.dt, c.dtype, c.meta
    alpha = _decays(conv, node.tau_syn, dt, c.name, "alpha", meta.get("spikelfp_alpha"))
    beta = _decays(conv, node.tau_mem, dt, c.name, "beta", meta.get("spikelfp_beta"))
    if conv.decay == "exp_steps":
        alpha_t, beta_t = (
            _exp_decay_param(node.tau_syn, dtype),
            _exp_decay_param(node.tau_mem, dtype),
        )
    else:
        alpha_t, beta_t = _param(alpha, dtype, conv), _param(beta, dtype, conv)
    gain = conv.cuba_gain(node.tau_syn, node.tau_mem, node.r, node.w_in, dt)
    if c.integer:
        theta = _as_param(node.v_threshold, torch.float64)
        return _Imported(_quantized_from_meta("CubaLIF", meta, theta), gain)
    if c.multi_spike:
        return _Imported(
            MultiSpike(beta_t, _as_param(node.v_threshold, dtype), alpha=alpha_t), gain
        )
    mod = CubaLIF(
        alpha=alpha_t,
        beta=beta_t,
        threshold=_as_param(node.v_threshold, dtype),
        reset=rst,
        reset_delay=delay,
    )
    return _Imported(mod, gain)


def _read_threshold(node, c: _Read) -> _Imported:
    """Stateless: a LIF without memory."""
    mod = LIF(beta=0.0, threshold=_as_param(node.threshold, c.dtype), reset="zero")
    return _Imported(mod, np.ones(1))


def _neuron_readers(nir) -> dict:
    """``{NIR node type: reader}`` of the neuron nodes."""
    return {
        nir.LIF: _read_lif,
        nir.LI: _read_li,
        nir.IF: _read_if,
        nir.I: _read_i,
        nir.CubaLIF: _read_cuba,
        nir.Threshold: _read_threshold,
    }


def _import_neuron(nir, node, name, conv, dt, dtype, reset, reset_delay, if_per_step, recurrent):
    read = _neuron_readers(nir).get(type(node))
    if read is None:
        return None
    ctx = _Read(name, _meta(node), conv, dt, dtype, reset, reset_delay, if_per_step, recurrent)
    return read(node, ctx)


def _make_recurrent(imp: _Imported, node, w_node, name: str, dtype, nir):
    """A neuron with its recurrent synapse: RLIF where it can, else RecurrentNeuron."""
    weight = np.asarray(w_node.weight, dtype=np.float64)
    bias = np.asarray(w_node.bias, np.float64) if isinstance(w_node, nir.Affine) else None
    if weight.ndim != 2 or weight.shape[0] != weight.shape[1]:
        raise NIRImportError(
            f"recurrent synapse of {name!r}: weight {weight.shape} is not square (N, N)"
        )
    n = weight.shape[0]
    mod = imp.module
    if mod is None:  # spikelfp's integer RLIF: weights as written
        return _quantized_from_meta(
            "RLIF", _meta(node), _as_param(node.v_threshold, torch.float64),
            w_rec=torch.from_numpy(weight),
        )  # fmt: skip
    g = np.broadcast_to(imp.gain, (n,)) if imp.gain.size in (1, n) else None
    if g is None:
        raise NIRImportError(f"node {name!r}: its input gain does not match its {n} neurons")
    if not np.all(np.abs(g - 1) < _GAIN_TOL):
        weight = weight * g.reshape(-1, 1)
        bias = None if bias is None else bias * g
    has_bias = bias is not None and np.any(bias != 0)
    if type(mod) is LIF and not has_bias:
        beta, theta = mod.beta.detach(), mod.threshold.detach()
        per = beta.dim() > 0 or theta.dim() > 0
        layer = RLIF(
            n,
            beta=beta.expand(n).clone() if per else beta,
            threshold=theta.expand(n).clone() if per else theta,
            reset=mod.reset,
            reset_delay=mod.reset_delay,
            per_neuron=per,
        )
        with torch.no_grad():
            layer.recurrent_weight.copy_(torch.from_numpy(weight).to(dtype))
        return layer
    return RecurrentNeuron(
        mod,
        torch.from_numpy(weight).to(dtype),
        torch.from_numpy(bias).to(dtype) if has_bias else None,
    )


# --------------------------------------------------------------------------- from_nir


def _build_dense(nir, node, name, dtype):
    w = torch.from_numpy(np.asarray(node.weight, dtype=np.float64)).to(dtype)
    if w.dim() != 2:
        raise NIRImportError(f"node {name!r}: weight must be 2-D, got {tuple(w.shape)}")
    has_b = type(node) is nir.Affine
    layer = nn.Linear(w.shape[1], w.shape[0], bias=has_b, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(w)
        if has_b:
            b = np.asarray(node.bias, np.float64).reshape(-1)
            if b.shape[0] != w.shape[0]:
                raise NIRImportError(
                    f"node {name!r}: bias has {b.shape[0]} entries for {w.shape[0]} outputs"
                )
            layer.bias.copy_(torch.from_numpy(b))
    return layer


def _build_conv(nir, node, name, dtype):
    w = torch.from_numpy(np.asarray(node.weight, dtype=np.float64)).to(dtype)
    if isinstance(node.padding, str):
        raise NIRImportError(
            f"node {name!r}: string padding {node.padding!r} is not supported; use numeric padding"
        )
    cls = nn.Conv1d if type(node) is nir.Conv1d else nn.Conv2d
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
        bias = node.bias if node.bias is not None else np.zeros(w.shape[0])
        layer.bias.copy_(torch.from_numpy(np.asarray(bias, np.float64).reshape(-1)))
    return layer


def _build_pool(cls):
    def build(nir, node, name, dtype):
        return cls(_tuple2(node.kernel_size), _tuple2(node.stride), _tuple2(node.padding))

    return build


def _build_flatten(nir, node, name, dtype):
    s, e = int(node.start_dim), int(node.end_dim)
    return nn.Flatten(s + 1 if s >= 0 else s, e + 1 if e >= 0 else e)


def _build_scale(nir, node, name, dtype):
    return Scale(torch.from_numpy(np.asarray(node.scale, np.float64)).to(dtype))


def _layer_builders(nir) -> dict:
    """``{NIR node type: builder}`` of the stateless layers (synapses, pooling, reshaping)."""
    return {
        nir.Affine: _build_dense,
        nir.Linear: _build_dense,
        nir.Conv1d: _build_conv,
        nir.Conv2d: _build_conv,
        nir.SumPool2d: _build_pool(SumPool2d),
        nir.AvgPool2d: _build_pool(nn.AvgPool2d),
        nir.Flatten: _build_flatten,
        nir.Scale: _build_scale,
    }


def _build_layer(nir, node, name, dtype):
    """The stateless layer for a synapse / pooling / reshaping node, or None."""
    build = _layer_builders(nir).get(type(node))
    return None if build is None else build(nir, node, name, dtype)


_SUPPORTED = (
    "Input, Output, Affine, Linear, Scale, Conv1d, Conv2d, SumPool2d, AvgPool2d, Flatten, "
    "Threshold, I, LI, IF, LIF, CubaLIF, sub-graphs and recurrent cycles neuron -> "
    "Linear/Affine -> neuron"
)


def _fold_into(modules, preds, succs, name, gain, dtype, nodes_order) -> None:
    """Multiply the synapse(s) feeding neuron ``name`` by its input gain; insert a Scale
    node where no synapse of its own is in front."""
    g = np.asarray(gain, dtype=np.float64)
    if np.all(np.abs(g - 1.0) < _GAIN_TOL):
        return
    targets = []
    for p in preds[name]:
        j = p
        while isinstance(modules.get(j), (nn.AvgPool2d, SumPool2d)) and len(preds[j]) == 1:
            if len(succs[j]) != 1:
                break
            j = preds[j][0]
        m = modules.get(j)
        ok = isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) and len(succs.get(j, [])) == 1
        ok = ok and all(len(succs.get(k, [])) == 1 for k in _between(preds, p, j))
        if not ok:
            targets = None
            break
        targets.append(m)
    gflat = g.reshape(g.shape[0], -1) if g.ndim else g.reshape(1, 1)
    per_channel = np.all(gflat == gflat[:, :1])
    if targets and per_channel:
        gc = torch.from_numpy(np.ascontiguousarray(gflat[:, 0]))
        for syn in targets:
            c = gc.to(syn.weight.dtype)
            if c.numel() == 1:
                c = c.expand(syn.weight.shape[0])
            with torch.no_grad():
                syn.weight.mul_(c.reshape(-1, *([1] * (syn.weight.dim() - 1))))
                if syn.bias is not None:
                    syn.bias.mul_(c)
        return
    scale_name = f"{name}.gain"
    modules[scale_name] = Scale(torch.from_numpy(g).to(dtype))
    preds[scale_name], preds[name] = preds[name], [scale_name]
    for p in preds[scale_name]:
        succs[p] = [scale_name if s == name else s for s in succs[p]]
    succs[scale_name] = [name]
    nodes_order.insert(nodes_order.index(name), scale_name)


def _between(preds, start, stop) -> list[str]:
    out, j = [], start
    while j != stop:
        out.append(j)
        j = preds[j][0]
    return out


def from_nir(
    graph,
    dt: float | None = None,
    dtype: torch.dtype | None = None,
    *,
    convention: str | None = None,
    reset: str | None = None,
    reset_delay: bool | None = None,
):
    r"""Build a spikelfp network from a NIR graph (or a path to a NIR file).

    What ``tau``, ``r`` and ``dt`` mean depends on the producer
    (``spikelfp.hw_export.nir_conventions``); with neither ``dt`` nor ``convention`` the
    producer is detected (spikelfp's metadata, or the parameters' pattern: snntorch, sinabs,
    norse, rockpool) and the network simulates what the producer simulates. Graphs with only
    IF/I neurons need no ``dt``: their ``r`` is the per-step gain. A per-step input gain
    outside [0.01, 100] warns (``NIRConventionWarning``): it almost always means a wrong ``dt``
    or convention (e.g. ``dt=1e-3`` for sinabs's ``r = 1`` IF).

    Args:
        graph: a ``nir.NIRGraph`` or a path to a ``.nir`` file.
        dt: the time step (seconds). Without ``convention`` it means NIR's own semantics:
            forward Euler, :math:`\beta = 1 - dt/\tau`, input gain :math:`dt\,r/\tau`
            (:math:`dt\,r` for IF/I). For spikelfp's files it overrides the recorded step.
        dtype: parameter dtype (float64 for quantised files, else torch's default).
        convention: the producer's convention (``"nir"``, ``"spikelfp"``, ``"snntorch"``,
            ``"sinabs"``, ``"sinabs-single"``, ``"norse"``, ``"rockpool"``), overriding the
            detection.
        reset, reset_delay: override the convention's reset (``"zero"``, ``"subtract"``,
            ``"none"``; e.g. an snntorch model built with ``reset_mechanism="zero"``).

    Returns:
        A :class:`spikelfp.Sequential` when the graph is a chain, else a
        ``GraphNet`` (``spikelfp.hw_export.nir_graph``). Flat cycles
        ``neuron -> Linear/Affine -> neuron`` (and spikelfp's RLIF sub-graphs) become an
        :class:`~spikelfp.RLIF` or a ``RecurrentNeuron`` (``spikelfp.hw_export.nir_graph``).
        Each neuron's input gain (:math:`\ne 1`) is folded into the synapse in front of it.

    Raises:
        NIRImportError: NaN/inf parameters (naming the node), node types without a spikelfp
            equivalent (all listed), shapes that do not fit (naming the node), a cycle that is
            not a recurrent neuron, decays outside [0, 1], or a graph whose producer cannot be
            told and no ``dt``/``convention`` given.
    """
    nir = require_nir()
    if isinstance(graph, (str, os.PathLike)):
        graph = read_nir(graph)
    meta = _meta(graph)
    nodes, edges = _flatten(nir, graph)
    for name, node in nodes.items():  # before anything is built: one line naming the node
        _check_finite_node(nir, node, name)
    known = (
        nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Scale, nir.Conv1d, nir.Conv2d,
        nir.SumPool2d, nir.AvgPool2d, nir.Flatten, nir.Threshold, nir.I, nir.LI, nir.IF,
        nir.LIF, nir.CubaLIF,
    )  # fmt: skip
    unknown = [f"{k} ({type(n).__name__})" for k, n in nodes.items() if not isinstance(n, known)]
    if unknown:
        raise NIRImportError(
            "NIR nodes without a spikelfp equivalent: "
            + ", ".join(unknown)
            + ". Supported: "
            + _SUPPORTED
        )
    conv, dt = _resolve_convention(nir, nodes, meta, dt, convention)
    integer = bool(int(meta.get("integer", 0))) and conv.name == "spikelfp"
    dtype = dtype or (torch.float64 if integer else torch.get_default_dtype())
    if_per_step = conv.if_gain_per_step and not (
        conv.name == "spikelfp" and not int(meta.get("if_r_per_step", 0))
    )

    inputs = [k for k, n in nodes.items() if isinstance(n, nir.Input)]
    outputs = [k for k, n in nodes.items() if isinstance(n, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRImportError(
            f"from_nir needs exactly one Input and one Output node, found inputs {inputs} and "
            f"outputs {outputs}"
        )
    preds: dict[str, list[str]] = {k: [] for k in nodes}
    succs: dict[str, list[str]] = {k: [] for k in nodes}
    for a, b in edges:
        if a not in nodes or b not in nodes:
            raise NIRImportError(f"edge {a} -> {b} names a node that does not exist")
        succs[a].append(b)
        preds[b].append(a)
    rec = _find_recurrence(nir, nodes, preds, succs)
    for neuron, w in rec.items():  # take the recurrent synapse out of the graph
        preds[neuron].remove(w)
        succs[neuron].remove(w)
        del preds[w], succs[w]
    order = _topological(nodes, preds, succs, inputs[0])
    if outputs[0] not in order:
        raise NIRImportError("the graph's Output is not reachable from its Input")
    order.remove(outputs[0])
    unused = sorted(set(nodes) - set(order) - {inputs[0], outputs[0]} - set(rec.values()))
    if unused:
        raise NIRImportError(f"nodes not connected between Input and Output: {unused}")

    modules: dict[str, nn.Module] = {}
    gains: dict[str, np.ndarray] = {}
    for name in order:
        node = nodes[name]
        layer = _build_layer(nir, node, name, dtype)
        if layer is None:
            imp = _import_neuron(
                nir, node, name, conv, dt, dtype, reset, reset_delay, if_per_step, name in rec
            )
            msg = check_gain(imp.gain, name, conv, dt)
            if msg:
                warnings.warn(msg, NIRConventionWarning, stacklevel=2)
            layer = imp.module
            if name in rec:
                layer = _make_recurrent(imp, node, nodes[rec[name]], name, dtype, nir)
            gains[name] = imp.gain
        modules[name] = layer
    for name, gain in gains.items():
        _fold_into(modules, preds, succs, name, gain, dtype, order)

    chain = all(len(preds[n]) == 1 for n in order) and all(
        len(succs[n]) == 1 for n in [inputs[0], *order]
    )
    if chain:
        net = Sequential(*(modules[n] for n in order))
    else:
        net = GraphNet(modules, order, {n: preds[n] for n in order}, preds[outputs[0]])
    _check_shapes(nir, net, nodes[inputs[0]], order, chain, dtype)
    net.eval()
    return net


class NIRConventionWarning(UserWarning):
    """An imported neuron's per-step input gain is implausible (wrong ``dt``/convention?)."""


def _resolve_convention(nir, nodes, meta, dt, name):
    if dt is not None:
        dt = _check_dt(dt)
    if name is not None:
        conv = get_convention(name)
        if dt is None:
            det, det_dt, _ = detect_convention(nir, nodes, meta)
            dt = conv.dt if conv.dt is not None else (det_dt if det is not None else None)
            if conv.name in ("spikelfp", "nir") and "dt" in meta:
                dt = float(meta["dt"])
        return conv, _needs_dt(nir, nodes, conv, dt)
    det, det_dt, reason = detect_convention(nir, nodes, meta)
    if det is not None and det.name == "spikelfp":
        return det, dt if dt is not None else _check_dt(det_dt)
    if dt is not None:
        return get_convention("nir"), dt
    if det is None:
        raise NIRImportError(
            f"cannot tell which producer wrote this graph ({reason}); pass convention= (one "
            f"of {', '.join(sorted(CONVENTIONS))}) or dt= (seconds) for NIR's own forward-Euler "
            "semantics"
        )
    return det, _needs_dt(nir, nodes, det, det_dt)


def _needs_dt(nir, nodes, conv, dt):
    timed = any(isinstance(n, (nir.LIF, nir.LI, nir.CubaLIF)) for n in nodes.values())
    if timed and dt is None and conv.decay != "exp_steps":
        raise NIRImportError(
            f"convention {conv.name!r} needs the producer's time step for this graph's time "
            "constants; pass dt= (seconds)"
        )
    return dt


def _check_shapes(nir, net, inp, order, chain, dtype) -> None:
    """Run one zero step through the network; a layer that does not fit is named."""
    shape = np.asarray(next(iter(inp.input_type.values())) if inp.input_type else []).tolist()
    if not shape or any(int(s) <= 0 for s in shape):
        return
    x = torch.zeros(1, 1, *[int(s) for s in shape], dtype=dtype)
    with torch.no_grad():
        if not chain:
            try:
                net(x)
            except ValueError as err:
                raise NIRImportError(f"shape mismatch: {err}") from None
            return
        for name, layer in zip(order, net, strict=True):
            try:
                if isinstance(layer, NeuronModule):
                    x, _ = layer(x)
                else:
                    x = apply_over_time(layer, x)
            except (RuntimeError, ValueError) as err:
                raise NIRImportError(
                    f"shape mismatch at node {name!r} ({type(layer).__name__}): it cannot take "
                    f"an input of shape {tuple(x.shape[2:])} (per sample): {err}"
                ) from None


class Scale(nn.Module):
    """NIR's Scale: multiply every feature by its own factor (shape broadcast from the
    feature dimensions)."""

    def __init__(self, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("scale", torch.as_tensor(scale).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


def _tuple_n(v, n: int) -> tuple[int, ...]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return tuple(a * n if len(a) == 1 else a)


def _tuple2(v) -> tuple[int, int]:
    a = np.atleast_1d(np.asarray(v)).astype(int).tolist()
    return (a[0], a[0]) if len(a) == 1 else (a[0], a[1])
