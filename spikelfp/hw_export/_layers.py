r"""The layers the export path understands, and a canonical, inference-only copy of a network.

:func:`canonicalize` turns a trained :class:`spikelfp.Sequential` into the plain chain that
hardware runs: a deep copy in ``eval()`` mode with dropout and identities removed and every
batch norm folded into the synapse before it (:math:`W' = W \gamma/\sigma`,
:math:`b' = (b - \mu)\gamma/\sigma + \beta_{bn}`, :math:`\sigma = \sqrt{var + \epsilon}`). It
refuses, listing *every* offending layer at once, layers with no hardware equivalent and any
non-finite parameter.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import SumPool2d  # re-exported: spikelfp.hw_export.SumPool2d
from ..neurons.base import NeuronModule
from ..sequential import Sequential, apply_over_time
from . import kinds
from ._qneuron import QuantizedNeuron
from .errors import NonFiniteParameterError, UnsupportedLayerError
from .kinds import INTEGER_KINDS, Converter

__all__ = [
    "SumPool2d",
    "CanonicalLayer",
    "CanonicalNet",
    "as_canonical",
    "as_module",
    "CONVERTERS",
    "converter_for",
    "SYNAPSE_TYPES",
    "NEURON_TYPES",
    "canonicalize",
    "check_finite",
    "infer_shapes",
    "kind_of",
    "neuron_outputs",
    "synapse_weights",
]

#: ``{module type: converter}``: the kinds of :mod:`.kinds`, and the integer neuron of a
#: quantised network (whose converter is that of its ``kind``).
CONVERTERS: dict[type, Converter] = {
    **kinds.CONVERTERS,
    QuantizedNeuron: Converter("", "neuron", refine=lambda layer: INTEGER_KINDS[layer.kind]),
}


def _types(role: str) -> tuple[type, ...]:
    return tuple(t for t, c in kinds.CONVERTERS.items() if c.role == role)


#: Stateless layers with a weight (what pruning and quantisation act on).
SYNAPSE_TYPES = _types("synapse")
#: Neuron layers that can be exported (ALIF has neither a NIR node nor an integer model here).
NEURON_TYPES = _types("neuron")


def converter_for(layer: nn.Module) -> Converter:
    """The :class:`~spikelfp.hw_export.kinds.Converter` of ``layer``: looked up by type along
    the MRO, then refined by the layer (a LIF with decay 1 is an IF; an integer neuron is
    its ``kind``).

    >>> from spikelfp import LIF
    >>> converter_for(LIF(beta=1.0)).name, converter_for(nn.Conv2d(1, 2, 3)).role
    ('IF', 'synapse')
    """
    return kinds.lookup(type(layer), CONVERTERS).resolve(layer)


def kind_of(layer: nn.Module) -> str:
    """A short name for a layer: ``"Linear"``, ``"Conv2d"``, ``"LIF"``, ``"IF"``, ...

    A LIF whose decay is 1 everywhere is reported as ``"IF"`` (that is what it is).

    >>> from spikelfp import IF, LIF
    >>> kind_of(IF()), kind_of(LIF(beta=1.0)), kind_of(nn.Linear(2, 2))
    ('IF', 'IF', 'Linear')
    """
    return converter_for(layer).name or type(layer).__name__


def synapse_weights(layer: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The prunable weight tensors of a layer: synapse weights and RLIF recurrent weights."""
    conv = converter_for(layer)
    return [] if conv.weights is None else conv.weights(layer)


def check_finite(model: nn.Module) -> None:
    """Raise :class:`NonFiniteParameterError` naming every parameter/buffer with NaN or inf."""
    bad = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and not torch.isfinite(t).all():
            n = int((~torch.isfinite(t)).sum())
            bad.append(f"{name} ({n} of {t.numel()} values)")
    if bad:
        raise NonFiniteParameterError(
            "non-finite (NaN/inf) values in " + ", ".join(bad) + "; the network cannot be "
            "exported. Retrain, or reload a checkpoint from before the divergence."
        )


def _fold_batchnorm(syn: nn.Module, bn: nn.Module) -> nn.Module:
    syn = copy.deepcopy(syn)
    with torch.no_grad():
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight if bn.affine else torch.ones_like(std)
        shift = bn.bias if bn.affine else torch.zeros_like(std)
        g = (gamma / std).to(syn.weight.dtype)
        syn.weight.mul_(g.reshape(-1, *([1] * (syn.weight.dim() - 1))))
        b = syn.bias if syn.bias is not None else torch.zeros_like(g)
        new_b = (b - bn.running_mean) * g + shift
        if syn.bias is None:
            syn.bias = nn.Parameter(new_b.to(syn.weight.dtype))
        else:
            syn.bias.copy_(new_b)
    return syn


def canonical_layers(model: nn.Module):
    """``(layers, origins, problems)``: copies of the layers after removing dropout/identity
    and folding batch norm, the index in ``model`` of each, and ``(index, layer type,
    reason)`` for every unsupported layer (kept in the list, so that shapes can still be
    inferred for a report)."""
    if not isinstance(model, Sequential):
        raise TypeError(
            f"export works on a spikelfp.Sequential, got {type(model).__name__}; wrap the layers "
            "in spikelfp.Sequential(...) (time-first, stateful)"
        )
    check_finite(model)
    problems: list[tuple[int, str, str]] = []
    layers: list[nn.Module] = []
    origins: list[int] = []
    roles: list[str] = []
    for i, layer in enumerate(model):
        conv = converter_for(layer)
        if conv.role == "dropped":
            continue
        if conv.role == "batchnorm" and roles and roles[-1] == "synapse":
            layers[-1] = _fold_batchnorm(layers[-1], layer)
            continue
        reason = None if conv.reason is None else conv.reason(layer)
        layer = copy.deepcopy(layer)
        if reason is None and conv.canonical is not None:
            try:
                layer = conv.canonical(layer)
            except UnsupportedLayerError as err:
                reason = str(err)
        if reason is not None:
            problems.append((i, type(layer).__name__, reason))
        layers.append(layer)
        origins.append(i)
        roles.append(conv.role)
    return layers, origins, problems


@dataclass(frozen=True)
class CanonicalLayer:
    """One layer of a :class:`CanonicalNet`.

    Attributes:
        module: the canonical layer (a copy; batch norm folded in, padding numeric).
        origin: its index in the user's :class:`spikelfp.Sequential`.
        kind: :func:`kind_of` the layer (``"Linear"``, ``"LIF"``, ``"IF"``, ...).
        in_shape, out_shape: per-sample shapes (no time, no batch); ``None`` when the input
            shape is unknown.
    """

    module: nn.Module
    origin: int
    kind: str
    in_shape: tuple[int, ...] | None
    out_shape: tuple[int, ...] | None


@dataclass(frozen=True)
class CanonicalNet:
    """A network canonicalised once for export: the typed intermediate that the checks,
    quantisation and NIR writing of one :func:`~spikelfp.hw_export.export` call share.

    Build it with :meth:`from_model` (the one canonicalisation: dropout/identity removed,
    batch norm folded, padding numeric, unsupported layers listed in ``problems``). Every
    public function that takes a model also takes a ``CanonicalNet``.

    Attributes:
        model: the canonical :class:`spikelfp.Sequential` (``eval()``, no gradients; it holds
            the unsupported layers too, so that a report can still infer shapes).
        layers: one :class:`CanonicalLayer` per layer of ``model``.
        problems: ``(index in the user's model, layer type, reason)`` per unsupported layer.
        shapes: per-sample shapes as :func:`infer_shapes` gives them (the input of each
            layer, then the output), or ``None`` when they could not be inferred.
        shape_error: why the shapes could not be inferred (``None`` when they were).

    >>> from spikelfp import LIF
    >>> net = Sequential(nn.Linear(4, 3), nn.Dropout(0.2), LIF())
    >>> c = CanonicalNet.from_model(net)
    >>> [(layer.kind, layer.origin, layer.out_shape) for layer in c.layers]
    [('Linear', 0, (3,)), ('LIF', 2, (3,))]
    """

    model: Sequential
    layers: tuple[CanonicalLayer, ...]
    problems: tuple[tuple[int, str, str], ...] = ()
    shapes: tuple[tuple[int, ...], ...] | None = None
    shape_error: str | None = None

    @classmethod
    def from_model(cls, model: nn.Module, input_shape: Sequence[int] | None = None) -> CanonicalNet:
        """Canonicalise ``model`` (a :class:`spikelfp.Sequential`; not modified) and infer
        the per-sample shapes for ``input_shape`` (guessed from a leading Linear/RLIF layer
        when ``None``).

        Raises:
            TypeError: ``model`` is not a :class:`spikelfp.Sequential`.
            NonFiniteParameterError: a parameter or buffer holds NaN/inf (all named).
        """
        layers, origins, problems = canonical_layers(model)
        out = Sequential(*layers)
        out.eval()
        for p in out.parameters():
            p.requires_grad_(False)
        return cls._shaped(out, tuple(origins), tuple(problems), input_shape)

    @classmethod
    def _shaped(cls, model, origins, problems, input_shape) -> CanonicalNet:
        try:
            shapes, error = infer_shapes(model, input_shape), None
        except ValueError as err:
            shapes, error = None, str(err)
        except Exception as err:  # an unsupported layer may fail in any way; it is listed
            if not problems:
                raise
            shapes, error = None, f"{type(err).__name__}: {err}"
        rows = tuple(
            CanonicalLayer(
                layer,
                origin,
                kind_of(layer),
                None if shapes is None else shapes[j],
                None if shapes is None else shapes[j + 1],
            )
            for j, (layer, origin) in enumerate(zip(model, origins, strict=True))
        )
        frozen = None if shapes is None else tuple(tuple(s) for s in shapes)
        return cls(model, rows, problems, frozen, error)

    @property
    def origins(self) -> list[int]:
        """The index in the user's model of each canonical layer."""
        return [layer.origin for layer in self.layers]

    def require_shapes(self) -> list[tuple[int, ...]]:
        """``shapes`` as a list, or the ``ValueError`` that says why they are unknown."""
        if self.shapes is None:
            raise ValueError(self.shape_error)
        return list(self.shapes)

    def require_exportable(self) -> CanonicalNet:
        """``self``; raises :class:`UnsupportedLayerError` listing every unsupported layer."""
        if self.problems:
            listed = "\n  ".join(f"layer {i} ({name}): {why}" for i, name, why in self.problems)
            raise UnsupportedLayerError(
                f"{len(self.problems)} layer(s) cannot be exported:\n  {listed}"
            )
        return self

    def reshaped(self, input_shape: Sequence[int] | None) -> CanonicalNet:
        """The same canonical layers with shapes inferred for another ``input_shape`` (no
        new canonicalisation)."""
        return self._shaped(self.model, tuple(self.origins), self.problems, input_shape)

    def with_model(self, model: Sequential) -> CanonicalNet:
        """The same structure with the layers of ``model`` (e.g. a pruned copy of
        ``model``; no new canonicalisation)."""
        layers = list(model)
        if len(layers) != len(self.layers) or any(
            type(a) is not type(b.module) for a, b in zip(layers, self.layers, strict=True)
        ):
            raise ValueError(
                "with_model needs a network with the same layers as the canonical one (e.g. "
                "a pruned copy of CanonicalNet.model)"
            )
        rows = tuple(
            dataclasses.replace(row, module=layer)
            for row, layer in zip(self.layers, layers, strict=True)
        )
        return dataclasses.replace(self, model=model, layers=rows)


def as_module(model) -> nn.Module:
    """The network of ``model``: itself, or the canonical model of a :class:`CanonicalNet`."""
    return model.model if isinstance(model, CanonicalNet) else model


def as_canonical(model, input_shape: Sequence[int] | None = None) -> CanonicalNet:
    """``model`` as a :class:`CanonicalNet`: itself when it is one (reshaped when another
    ``input_shape`` is asked for), else :meth:`CanonicalNet.from_model`."""
    if isinstance(model, CanonicalNet):
        if input_shape is not None and (
            model.shapes is None or tuple(model.shapes[0]) != tuple(int(s) for s in input_shape)
        ):
            return model.reshaped(input_shape)
        return model
    return CanonicalNet.from_model(model, input_shape)


def canonicalize(model: nn.Module) -> Sequential:
    """An inference-only copy of ``model`` ready for pruning, quantisation and export.

    Dropout/Identity are removed, batch norm is folded into the preceding Linear/Conv,
    string conv padding becomes numeric, the copy is in ``eval()`` mode and detached from the
    original. Raises :class:`UnsupportedLayerError` listing every unsupported layer, and
    :class:`NonFiniteParameterError` naming every non-finite tensor. (:class:`CanonicalNet`
    keeps the origin, kind and shapes of every layer too.)

    >>> from spikelfp import LIF
    >>> net = Sequential(nn.Linear(4, 3), nn.Dropout(0.2), LIF())
    >>> [type(m).__name__ for m in canonicalize(net)]
    ['Linear', 'LIF']
    """
    return canonical_model(as_canonical(model))


def canonical_model(cnet: CanonicalNet) -> Sequential:
    """The exportable canonical :class:`spikelfp.Sequential` of ``cnet`` (raises
    :class:`UnsupportedLayerError` listing every unsupported layer)."""
    out = cnet.require_exportable().model
    check_finite(out)
    return out


def guess_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The per-sample input shape when the first weighted layer fixes it, else ``None``."""
    for layer in model:
        hook = converter_for(layer).input_shape
        if hook is not None:
            return hook(layer)
        if isinstance(layer, NeuronModule):  # a neuron keeps the shape: look further
            continue
        return None
    return None


def infer_shapes(model: nn.Module, input_shape: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Per-sample activation shapes: entry ``i`` is the input of layer ``i``; the last entry is
    the output. ``input_shape`` excludes time and batch (e.g. ``(2, 34, 34)``).

    >>> from spikelfp import LIF
    >>> infer_shapes(Sequential(nn.Linear(4, 3), LIF()), None)
    [(4,), (3,), (3,)]
    """
    if input_shape is None:
        input_shape = guess_input_shape(model)
        if input_shape is None:
            raise ValueError(
                "cannot infer the input shape of this network (it starts with a convolution, "
                "pooling or flatten); pass input_shape=(C, H, W) without time and batch"
            )
    shape = tuple(int(s) for s in input_shape)
    model = copy.deepcopy(model).eval()  # batch norm in train mode would update its stats
    dtype = next((p.dtype for p in model.parameters()), None)
    if dtype is None:
        dtype = next(
            (b.dtype for b in model.buffers() if b.is_floating_point()), torch.get_default_dtype()
        )
    x = torch.zeros((1, 1, *shape), dtype=dtype)
    shapes = [shape]
    with torch.no_grad():
        for i, layer in enumerate(model):
            try:
                x = layer(x)[0] if isinstance(layer, NeuronModule) else apply_over_time(layer, x)
            except (RuntimeError, ValueError) as err:
                raise ValueError(
                    f"layer {i} ({type(layer).__name__}) cannot take per-sample input shape "
                    f"{tuple(x.shape[2:])}: {err}"
                ) from err
            shapes.append(tuple(x.shape[2:]))
    return shapes


def neuron_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Outputs ``(T, B, ...)`` of every neuron layer of a Sequential, in order."""
    outs = []
    with torch.no_grad():
        for layer in model:
            if isinstance(layer, NeuronModule):
                x, _ = layer(x)
                outs.append(x)
            else:
                x = apply_over_time(layer, x)
    return outs


def is_spiking(layer: nn.Module) -> bool:
    """True for neuron layers whose output is spikes (everything but the LI readout)."""
    return converter_for(layer).spiking
