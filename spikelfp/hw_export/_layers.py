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
from collections.abc import Sequence

import torch
from torch import nn

from ..layers import SumPool2d  # re-exported: spikelfp.hw_export.SumPool2d
from ..neurons import ALIF, IF, LI, LIF, RLIF, CubaLIF
from ..neurons.base import NeuronModule
from ..sequential import Sequential, apply_over_time
from .errors import NonFiniteParameterError, UnsupportedLayerError

__all__ = [
    "SumPool2d",
    "SYNAPSE_TYPES",
    "NEURON_TYPES",
    "canonicalize",
    "check_finite",
    "infer_shapes",
    "kind_of",
    "neuron_outputs",
    "synapse_weights",
]

#: Stateless layers with a weight (what pruning and quantisation act on).
SYNAPSE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d)
#: Neuron layers that can be exported (ALIF has neither a NIR node nor an integer model here).
NEURON_TYPES = (LIF, IF, CubaLIF, LI, RLIF)
_DROPPED = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity)
_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    return v if len(v) == 2 else (v[0], v[0])


def kind_of(layer: nn.Module) -> str:
    """A short name for a layer: ``"Linear"``, ``"Conv2d"``, ``"LIF"``, ``"IF"``, ...

    A LIF whose decay is 1 everywhere is reported as ``"IF"`` (that is what it is).

    >>> kind_of(IF()), kind_of(LIF(beta=1.0)), kind_of(nn.Linear(2, 2))
    ('IF', 'IF', 'Linear')
    """
    from .quantize import QuantizedNeuron  # local: quantize imports this module

    if isinstance(layer, QuantizedNeuron):
        return layer.kind
    if type(layer) in (LIF, IF) and _is_one(layer.beta):
        return "IF"
    return type(layer).__name__


def _is_one(t: torch.Tensor) -> bool:
    return bool((t == 1).all())


def synapse_weights(layer: nn.Module) -> list[tuple[str, torch.Tensor]]:
    """The prunable weight tensors of a layer: synapse weights and RLIF recurrent weights."""
    if isinstance(layer, SYNAPSE_TYPES):
        return [("weight", layer.weight)]
    if isinstance(layer, RLIF):
        return [("recurrent_weight", layer.recurrent_weight)]
    return []


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


def _conv_padding(layer) -> tuple[int, ...]:
    if layer.padding_mode != "zeros":
        raise UnsupportedLayerError(
            f"{type(layer).__name__} with padding_mode={layer.padding_mode!r} has no hardware/NIR "
            "equivalent; use zero padding"
        )
    if isinstance(layer.padding, str):
        if layer.padding == "valid":
            return (0,) * len(layer.kernel_size)
        k, d, s = layer.kernel_size, layer.dilation, layer.stride
        pairs = list(zip(k, d, strict=True))
        if all(si == 1 for si in s) and all((di * (ki - 1)) % 2 == 0 for ki, di in pairs):
            return tuple(di * (ki - 1) // 2 for ki, di in pairs)
        raise UnsupportedLayerError(
            f"{type(layer).__name__}(padding='same') with an even kernel pads asymmetrically, "
            "which NIR cannot express; use an odd kernel or numeric padding"
        )
    return tuple(layer.padding)


def _numeric_padding(layer: nn.Module) -> nn.Module:
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)) and isinstance(layer.padding, str):
        pad = _conv_padding(layer)
        new = type(layer)(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            pad,
            layer.dilation,
            layer.groups,
            layer.bias is not None,
            dtype=layer.weight.dtype,
        )
        new.load_state_dict(layer.state_dict())
        return new
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        _conv_padding(layer)
    return layer


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


def _unsupported_reason(layer: nn.Module) -> str | None:
    if isinstance(layer, ALIF):
        return (
            "ALIF has no NIR node and no integer hardware model here; train with LIF/CubaLIF "
            "(or fold adaptation into a learnt threshold)"
        )
    if isinstance(layer, NEURON_TYPES):
        return None
    from .quantize import QuantizedNeuron

    if isinstance(layer, (QuantizedNeuron, SumPool2d, nn.Flatten) + SYNAPSE_TYPES):
        return None
    if isinstance(layer, nn.AvgPool2d):
        if layer.ceil_mode:
            return "AvgPool2d(ceil_mode=True) has no NIR equivalent; use ceil_mode=False"
        if layer.divisor_override is not None:
            return "AvgPool2d(divisor_override=...) has no NIR equivalent"
        if not layer.count_include_pad and _pair(layer.padding) != (0, 0):
            return (
                "AvgPool2d(count_include_pad=False) with padding is not a sum/k² pool; use "
                "count_include_pad=True or padding=0"
            )
        return None
    if isinstance(layer, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        return (
            "max pooling has no NIR node and no neuromorphic equivalent; use "
            "nn.AvgPool2d (exported as sum pooling) or a strided convolution"
        )
    if isinstance(layer, _BATCHNORM):
        return "batch norm must directly follow a Linear/Conv layer so it can be folded into it"
    if isinstance(layer, nn.Conv3d):
        return "Conv3d has no NIR node; use Conv1d/Conv2d"
    return (
        f"{type(layer).__name__} is not supported for export; supported: Linear, Conv1d, "
        "Conv2d, AvgPool2d, Flatten, Dropout/Identity (removed), BatchNorm after a synapse "
        "(folded), LIF, IF, CubaLIF, LI, RLIF"
    )


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
    for i, layer in enumerate(model):
        if isinstance(layer, _DROPPED):
            continue
        if isinstance(layer, _BATCHNORM) and layers and isinstance(layers[-1], SYNAPSE_TYPES):
            layers[-1] = _fold_batchnorm(layers[-1], layer)
            continue
        reason = _unsupported_reason(layer)
        if reason is None:
            try:
                layer = _numeric_padding(copy.deepcopy(layer))
            except UnsupportedLayerError as err:
                reason = str(err)
        else:
            layer = copy.deepcopy(layer)
        if reason is not None:
            problems.append((i, type(layer).__name__, reason))
        layers.append(layer)
        origins.append(i)
    return layers, origins, problems


def canonicalize(model: nn.Module) -> Sequential:
    """An inference-only copy of ``model`` ready for pruning, quantisation and export.

    Dropout/Identity are removed, batch norm is folded into the preceding Linear/Conv,
    string conv padding becomes numeric, the copy is in ``eval()`` mode and detached from the
    original. Raises :class:`UnsupportedLayerError` listing every unsupported layer, and
    :class:`NonFiniteParameterError` naming every non-finite tensor.

    >>> net = Sequential(nn.Linear(4, 3), nn.Dropout(0.2), LIF())
    >>> [type(m).__name__ for m in canonicalize(net)]
    ['Linear', 'LIF']
    """
    layers, _, problems = canonical_layers(model)
    if problems:
        listed = "\n  ".join(f"layer {i} ({name}): {why}" for i, name, why in problems)
        raise UnsupportedLayerError(f"{len(problems)} layer(s) cannot be exported:\n  {listed}")
    out = Sequential(*layers)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    check_finite(out)
    return out


def guess_input_shape(model: nn.Module) -> tuple[int, ...] | None:
    """The per-sample input shape when the first weighted layer fixes it, else ``None``."""
    for layer in model:
        if isinstance(layer, nn.Linear):
            return (layer.in_features,)
        if isinstance(layer, RLIF):
            return (layer.size,)
        if isinstance(layer, NeuronModule):
            continue
        from .quantize import QuantizedNeuron

        if isinstance(layer, QuantizedNeuron) and layer.w_rec is not None:
            return (layer.w_rec.shape[0],)
        return None
    return None


def infer_shapes(model: nn.Module, input_shape: Sequence[int] | None) -> list[tuple[int, ...]]:
    """Per-sample activation shapes: entry ``i`` is the input of layer ``i``; the last entry is
    the output. ``input_shape`` excludes time and batch (e.g. ``(2, 34, 34)``).

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
    from .quantize import QuantizedNeuron

    if isinstance(layer, QuantizedNeuron):
        return layer.kind != "LI"
    return isinstance(layer, NeuronModule) and not isinstance(layer, LI)
