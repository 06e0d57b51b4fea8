"""The converter of one layer kind: what ``hw_export`` needs to know about it, in one place.

A :class:`Converter` is a stateless, frozen bundle of plain functions (hooks). The export
path looks a layer's converter up by type (:func:`spikelfp.hw_export.kinds.converter_for`,
along the MRO) and calls the hooks instead of testing types; every hook a role does not use
stays ``None``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Converter", "ROLES"]

#: What a layer is to the export path: a weighted synapse, a neuron, a pooling, a reshape,
#: a layer removed or folded when canonicalising, or a layer that cannot be exported.
ROLES = ("synapse", "neuron", "pool", "reshape", "dropped", "batchnorm", "unsupported")


@dataclass(frozen=True)
class Converter:
    """How one layer kind is canonicalised, checked, quantised, simulated and written to NIR.

    Attributes:
        name: the kind's short name (:func:`~spikelfp.hw_export.kind_of`), e.g. ``"LIF"``.
        role: one of :data:`ROLES`.
        refine: ``layer -> Converter``: the converter of what this layer really is (a LIF
            with decay 1 is an IF; an integer neuron is its ``kind``).
        reason: ``layer -> str | None``: why this layer cannot be exported (``None``: it can).
        canonical: ``layer -> layer``: its hardware form (e.g. numeric padding); may raise
            :class:`~spikelfp.hw_export.UnsupportedLayerError`.
        input_shape: ``layer -> tuple | None``: the per-sample input shape this layer fixes
            when it comes first.
        weights: ``layer -> [(name, tensor)]``: prunable weights (synapse and recurrent).
        check: ``(layer, kind, where, profile, report) -> None``: adds what breaks the
            profile to a :class:`~spikelfp.hw_export.ConstraintReport` (synapses also get the
            fan-in/fan-out checks from ``connectivity``).
        spiking: a neuron that emits spikes (``False``: an LI readout).
        decays: ``layer -> {"alpha"/"beta": tensor}``: a float neuron's decays.
        recurrent_weight: ``layer -> tensor | None``: a float neuron's recurrent weights.
        integer_params: ``(layer, thresholds, w_rec) -> dict``: the keyword arguments of the
            :class:`~spikelfp.hw_export.QuantizedNeuron` a quantised float neuron becomes.
        integer_needs: ``(argument, message)``: the ``QuantizedNeuron`` arguments this kind
            cannot do without (``"i_decay"``, ``"w_rec"``) and the error if one is missing.
        initial_state, torch_step: the integer neuron in torch (``QuantizedNeuron``):
            ``zeros -> state`` and ``(neuron, z, state, hooks) -> (output, state)``, both
            calling the neuron kernels of :mod:`spikelfp.neurons`.
        simulate: ``(z, params, saturate) -> output``: the integer neuron in numpy (the
            independent implementation, :mod:`spikelfp.hw_export.simulator`).
        connectivity: ``(layer, mask, in_shape) -> (fan_in, fan_out)`` of a synapse.
        column_scale: ``(layer, per-input scale) -> factor``: a synapse's input scale as a
            factor on its weight.
        rebuild: ``(layer, integer weight, integer bias) -> layer``: the integer synapse.
        quantize: ``(layer, scale, in_shape) -> (layer, scale, note)``: a pooling or reshape
            layer in the integer network and the scale after it.
        compile: ``layer -> op``: an integer stateless layer for the numpy simulator;
            ``run``: ``(x, op) -> y`` on ``(N, ...)`` int64 arrays.
        nir_node: writes the NIR node; neurons ``(nir, layer, shape, dt, index, integer)``,
            other layers ``(nir, layer, shapes, index, integer, meta, convention)``.
    """

    name: str
    role: str
    refine: Callable[[Any], Converter] | None = None
    reason: Callable[[Any], str | None] | None = None
    canonical: Callable | None = None
    input_shape: Callable | None = None
    weights: Callable | None = None
    check: Callable | None = None
    spiking: bool = False
    decays: Callable | None = None
    recurrent_weight: Callable | None = None
    integer_params: Callable | None = None
    integer_needs: tuple[tuple[str, str], ...] = ()
    initial_state: Callable | None = None
    torch_step: Callable | None = None
    simulate: Callable | None = None
    connectivity: Callable | None = None
    column_scale: Callable | None = None
    rebuild: Callable | None = None
    quantize: Callable | None = None
    compile: Callable | None = None
    run: Callable | None = None
    nir_node: Callable | None = None

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"Converter role must be one of {ROLES}, got {self.role!r}")

    def resolve(self, layer) -> Converter:
        """The converter of ``layer`` itself (``refine`` applied)."""
        return self if self.refine is None else self.refine(layer)

    def __repr__(self) -> str:
        return f"Converter({self.name!r}, role={self.role!r})"
