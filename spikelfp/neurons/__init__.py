"""Spiking neurons: pure step kernels and thin modules, time-first ``(T, B, ...)``.

Every module returns ``(output, state)``; ``state`` is a typed named tuple. Each neuron's
dynamics are written once, in its kernel (``lif_update``, ``li_update``, ``cuba_update``,
``alif_update``, ``rlif_update``, with hooks for the spike function, the decay and the
saturation); the modules, the LFP rules' forwards and the BPTT baseline all call it.
"""

from .alif import ALIF, ALIFParameters, ALIFState, alif_sequence, alif_step, alif_update
from .base import NeuronModule, StepBuffers, heaviside, leaky_integrate, threshold_spike
from .cuba import CubaLIF, CubaLIFParameters, CubaLIFState, cuba_sequence, cuba_step, cuba_update
from .li import LI, LIParameters, LIState, li_sequence, li_step, li_update
from .lif import IF, LIF, LIFParameters, LIFState, lif_reset, lif_sequence, lif_step, lif_update
from .rlif import RLIF, RLIFState, rlif_sequence, rlif_step, rlif_update

__all__ = [
    "ALIF",
    "ALIFParameters",
    "ALIFState",
    "alif_sequence",
    "alif_step",
    "alif_update",
    "CubaLIF",
    "CubaLIFParameters",
    "CubaLIFState",
    "cuba_sequence",
    "cuba_step",
    "cuba_update",
    "IF",
    "LI",
    "LIF",
    "RLIF",
    "LIFParameters",
    "LIFState",
    "LIParameters",
    "LIState",
    "RLIFState",
    "NeuronModule",
    "StepBuffers",
    "heaviside",
    "leaky_integrate",
    "li_sequence",
    "li_step",
    "li_update",
    "lif_reset",
    "lif_sequence",
    "lif_step",
    "lif_update",
    "rlif_sequence",
    "rlif_step",
    "rlif_update",
    "threshold_spike",
]
