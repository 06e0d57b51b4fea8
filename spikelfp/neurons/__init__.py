"""Spiking neurons: pure step kernels and thin modules, time-first ``(T, B, ...)``.

Every module returns ``(output, state)``; ``state`` is a typed named tuple.
"""

from .alif import ALIF, ALIFParameters, ALIFState, alif_sequence, alif_step
from .base import NeuronModule, heaviside
from .cuba import CubaLIF, CubaLIFParameters, CubaLIFState, cuba_sequence, cuba_step
from .li import LI, LIParameters, LIState, li_sequence, li_step
from .lif import IF, LIF, LIFParameters, LIFState, lif_sequence, lif_step
from .rlif import RLIF, RLIFState, rlif_sequence, rlif_step

__all__ = [
    "ALIF",
    "ALIFParameters",
    "ALIFState",
    "alif_sequence",
    "alif_step",
    "CubaLIF",
    "CubaLIFParameters",
    "CubaLIFState",
    "cuba_sequence",
    "cuba_step",
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
    "heaviside",
    "li_sequence",
    "li_step",
    "lif_sequence",
    "lif_step",
    "rlif_sequence",
    "rlif_step",
]
