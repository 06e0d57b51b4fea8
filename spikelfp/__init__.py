"""spikelfp: train spiking neural networks with Layer-wise Feedback Propagation (LFP).

No surrogate gradients: a reward at the output is decomposed layer by layer and back through
time along the spike trains; each parameter's share of the reward is its update.
"""

from . import lfp, neurons
from ._native import status as native_kernels
from .allocator import reuse_freed_memory
from .events import SparseFrames
from .explain import explain, explain_events
from .layers import SequenceDropout, SumPool2d
from .neurons import ALIF, IF, LI, LIF, RLIF, CubaLIF
from .sequential import Sequential

__version__ = "0.1.0"

__all__ = [
    "ALIF",
    "IF",
    "LI",
    "LIF",
    "RLIF",
    "CubaLIF",
    "Sequential",
    "SparseFrames",
    "SequenceDropout",
    "SumPool2d",
    "explain",
    "explain_events",
    "lfp",
    "native_kernels",
    "neurons",
    "reuse_freed_memory",
]
