r"""The integer neuron layer of a quantised network (:class:`QuantizedNeuron`).

It runs the neuron kernels of :mod:`spikelfp.neurons` with the integer decay and saturation
hooks; :func:`spikelfp.hw_export.simulate` is the independent numpy check of the same arithmetic.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from ..neurons.base import NeuronModule, check_time_first
from ..neurons.lif import RESETS, LIFParameters
from ._decay import DECAY_MODES, ROUNDINGS, decay_torch
from .kinds import INTEGER_KINDS
from .profiles import FIRE_AT, V_FLOORS

__all__ = ["QuantizedNeuron", "ChipState"]


class ChipState(NamedTuple):
    """State of an integer neuron with chip semantics (:attr:`QuantizedNeuron.chip`):
    synaptic current ``i``, membrane ``v`` after the step's spikes, and the step's spike
    counts ``s`` (what the recurrent weights read next step)."""

    i: torch.Tensor
    v: torch.Tensor
    s: torch.Tensor


_KINDS = tuple(INTEGER_KINDS)
F64 = torch.float64


class QuantizedNeuron(NeuronModule):
    r"""An integer neuron layer, in float64 tensors holding integers (see :mod:`._decay`).

    Per step, with integer input :math:`Z_t`, saturation :math:`\mathrm{sat}` to the state
    range and the integer decay :math:`D` (``D_v`` membrane, ``D_i`` current)::

        LI:       V_t = sat(D_v(V_{t-1}) + Z_t)                     output V_t
        CubaLIF:  I_t = sat(D_i(I_{t-1}) + Z_t), then LIF with input I_t
        RLIF:     LIF with input Z_t + W_rec S_{t-1}
        LIF/IF:   V_t = sat(D_v(U_{t-1}) + Z_t);  S_t = [V_t > θ];
                  U_t = 0 if S_t (zero) | sat(V_t - θ S_t) (subtract) | V_t (none)

    With ``reset_delay=True`` the reset uses :math:`R_t = [U_{t-1} > θ]` and
    :math:`S_t = [U_t > θ]`, as :class:`spikelfp.LIF` does.

    **Chip semantics** (the neuron fields of a :class:`~spikelfp.hw_export.HardwareProfile`;
    Xylo's neuron, :mod:`spikelfp.hw_export.vendor_xylo`, and DYNAP-CNN's). When any of
    ``fire_at=">="``, ``min_decay``, ``current_shift``, ``max_spikes > 1``, ``input_delay``,
    ``v_floor="-threshold"`` is set (:attr:`chip`), a spiking neuron runs, with :math:`d` the
    decay's decrement (at least :math:`\mathrm{sign}(v)` under ``min_decay``; none for
    ``decay_mode="none"``) and input :math:`Z_t` (plus :math:`W_{rec} S_{t-1}` for ``RLIF``;
    :math:`Z_{t-1}` under ``input_delay``)::

        I_t = sat(I' - d(I', k_i)),  I' = sat(I_{t-1} + Z_t)   (current stage)
        V_t = sat(V_{t-1} - d(V_{t-1}, k_v) + I_t)             (I_t = Z_t without it)
        S_t = min(max_spikes, #spikes): V_t >= θ → floor(V_t / θ), V_t > θ → floor((V_t-1)/θ)
        U_t = V_t - θ S_t                                      (subtract reset)
        U_t = max(U_t, -θ)                                     (v_floor="-threshold")

    :math:`k_i` is ``current_shift`` for ``LIF``/``RLIF`` and the current decay for
    ``CubaLIF`` (there the current stage replaces :math:`I_t = D_i(I_{t-1}) + Z_t`).

    With a bit-shift decay ``k = 1`` (``v -= v >> 1``) and threshold 10, a constant input 6
    gives membranes 6, 9, 11 → spike:

    >>> n = QuantizedNeuron("LIF", threshold=torch.tensor(10.0), decay_mode="shift",
    ...                     v_decay=torch.tensor(1.0), state_bits=16)
    >>> s, st = n(torch.full((3, 1, 1), 6.0))
    >>> s.flatten().tolist(), st.v.flatten().tolist()
    ([0.0, 0.0, 1.0], [0.0])
    """

    def __init__(
        self,
        kind: str,
        threshold: torch.Tensor | float | None = None,
        decay_mode: str = "mult",
        v_decay: torch.Tensor | float = 0.0,
        i_decay: torch.Tensor | float | None = None,
        decay_bits: int = 12,
        rounding: str = "floor",
        reset: str = "zero",
        reset_delay: bool = False,
        state_bits: int | None = None,
        w_rec: torch.Tensor | None = None,
        fire_at: str = ">",
        min_decay: bool = False,
        current_shift: int | None = None,
        max_spikes: int = 1,
        input_delay: bool = False,
        v_floor: str = "state",
    ):
        super().__init__()
        if kind not in _KINDS:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        if decay_mode not in DECAY_MODES:
            raise ValueError(f"decay_mode must be one of {DECAY_MODES}, got {decay_mode!r}")
        if rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
        if reset not in RESETS:
            raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
        conv = INTEGER_KINDS[kind]
        given = {"i_decay": i_decay, "w_rec": w_rec}
        for name, why in conv.integer_needs:
            if given[name] is None:
                raise ValueError(why)
        if conv.spiking and threshold is None:
            raise ValueError(f"a spiking {kind} needs an integer threshold")
        self.kind = kind
        self.decay_mode = decay_mode
        self.decay_bits = int(decay_bits)
        self.rounding = rounding
        self.reset = reset
        self.reset_delay = bool(reset_delay)
        self.state_bits = None if state_bits is None else int(state_bits)
        if fire_at not in FIRE_AT:
            raise ValueError(f"fire_at must be one of {FIRE_AT}, got {fire_at!r}")
        if int(max_spikes) < 1:
            raise ValueError(f"max_spikes must be >= 1, got {max_spikes}")
        self.fire_at = fire_at
        self.min_decay = bool(min_decay)
        self.current_shift = None if current_shift is None else int(current_shift)
        self.max_spikes = int(max_spikes)
        self.input_delay = bool(input_delay)
        if v_floor not in V_FLOORS:
            raise ValueError(f"v_floor must be one of {V_FLOORS}, got {v_floor!r}")
        self.v_floor = v_floor
        if self.chip and (reset != "subtract" or reset_delay):
            raise ValueError(
                "chip neuron semantics (fire_at='>=', min_decay, a current stage, several "
                "spikes per step, input delay, a membrane floor) need an immediate subtract "
                f"reset; got {reset!r}{' (delayed)' if reset_delay else ''}"
            )
        if self.min_decay and decay_mode != "shift":
            raise ValueError(f"min_decay needs decay_mode='shift', got {decay_mode!r}")
        th = torch.as_tensor(0.0 if threshold is None else threshold, dtype=F64).clone()
        self.register_buffer("threshold", th)
        self.register_buffer("v_decay", torch.as_tensor(v_decay, dtype=F64).clone())
        self.register_buffer(
            "i_decay", None if i_decay is None else torch.as_tensor(i_decay, dtype=F64).clone()
        )
        self.register_buffer("w_rec", None if w_rec is None else w_rec.to(F64).clone())
        for name in ("threshold", "v_decay", "i_decay", "w_rec"):
            t = getattr(self, name)
            if t is not None and not bool((t == t.round()).all()):
                raise ValueError(f"QuantizedNeuron.{name} must hold integers")

    @property
    def chip(self) -> bool:
        """Whether this spiking neuron runs chip semantics (see the class docstring)."""
        return INTEGER_KINDS[self.kind].spiking and (
            self.fire_at != ">"
            or self.min_decay
            or self.current_shift is not None
            or self.max_spikes != 1
            or self.input_delay
            or self.v_floor != "state"
        )

    def _chip_decay(self, v: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return decay_torch(
            v, self.decay_mode, param, self.decay_bits, self.rounding, self.min_decay
        )

    def chip_step(self, z: torch.Tensor, state: ChipState):
        """One step with chip semantics: ``(S_t, ChipState(I_t, U_t, S_t), V_t, U_{t-1})``
        (``V_t`` the membrane before the spikes' subtraction); ``z`` is this step's synaptic
        input (already delayed under ``input_delay``), recurrent input added here."""
        if self.w_rec is not None:
            z = z + state.s @ self.w_rec.t()
        i = state.i
        if self.current_shift is not None:
            k = (
                self.i_decay
                if self.i_decay is not None
                else self.v_decay.new_tensor(float(self.current_shift))
            )
            i = self._chip_decay(self._sat(i + z), k)
            z = i
        v_pre = self._sat(self._chip_decay(state.v, self.v_decay) + z)
        th = self.threshold.clamp(min=1)
        n = torch.floor(v_pre / th) if self.fire_at == ">=" else torch.floor((v_pre - 1) / th)
        n = n.clamp(0, self.max_spikes)
        u = v_pre - n * th
        if self.v_floor == "-threshold":
            u = torch.maximum(u, -th)
        return n, ChipState(i, u, n), v_pre, state.v

    def chip_initial_state(self, x: torch.Tensor) -> ChipState:
        zeros = torch.zeros(x.shape[1:], dtype=F64, device=x.device)
        return ChipState(zeros, zeros.clone(), zeros.clone())

    def delayed(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` one step later (zeros first) under ``input_delay``; else ``x``."""
        if not self.input_delay:
            return x
        return torch.cat([torch.zeros_like(x[:1]), x[:-1]])

    def _sat(self, v: torch.Tensor) -> torch.Tensor:
        if self.state_bits is None:
            return v
        hi = 2.0 ** (self.state_bits - 1)
        return v.clamp(-hi, hi - 1)

    def _decay(self, v: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
        return decay_torch(v, self.decay_mode, param, self.decay_bits, self.rounding)

    def _lif_parameters(self) -> LIFParameters:
        return LIFParameters(self.v_decay, self.threshold, self.reset, self.reset_delay)

    def initial_state(self, x: torch.Tensor):
        zeros = torch.zeros(x.shape[1:], dtype=F64, device=x.device)
        return INTEGER_KINDS[self.kind].initial_state(zeros)

    def forward(self, x: torch.Tensor, state=None):
        check_time_first(x, f"Quantized{self.kind}")
        x = x.to(F64)
        if self.chip:
            # chip semantics (Xylo's neuron); each call starts its input delay afresh
            state = self.chip_initial_state(x) if state is None else state
            out = []
            for z in self.delayed(x).unbind(0):
                o, state, _, _ = self.chip_step(z, state)
                out.append(o)
            return torch.stack(out), state
        if state is None:
            state = self.initial_state(x)
        # the neuron kernels of spikelfp.neurons with the integer decay and saturation hooks
        # (each kind's torch_step, spikelfp.hw_export.kinds): the same recursion as the float
        # modules and the LFP rules (the numpy simulator stays the independent check)
        hooks = {"decay": self._decay, "saturate": self._sat}
        step = INTEGER_KINDS[self.kind].torch_step
        out = []
        for z in x.unbind(0):
            o, state = step(self, z, state, hooks)
            out.append(o)
        return torch.stack(out), state

    def extra_repr(self) -> str:
        text = (
            f"kind={self.kind!r}, decay={self.decay_mode!r}, reset={self.reset!r}, "
            f"reset_delay={self.reset_delay}, state_bits={self.state_bits}"
        )
        if self.chip:
            text += (
                f", fire_at={self.fire_at!r}, min_decay={self.min_decay}, "
                f"current_shift={self.current_shift}, max_spikes={self.max_spikes}, "
                f"input_delay={self.input_delay}, v_floor={self.v_floor!r}"
            )
        return text
