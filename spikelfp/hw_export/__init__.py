"""Deploy trained spiking networks to neuromorphic hardware.

From a trained :class:`spikelfp.Sequential` to what a chip runs, with proof that it still
behaves like the trained network:

* **pruning** — :func:`magnitude_prune`, :func:`feedback_prune` (accumulated LFP feedback,
  :class:`FeedbackAccumulator`), :func:`sparsity_report`; every function returns a pruned
  copy, :func:`apply_masks_` is the one in-place operation;
* **quantisation** — :func:`quantize` to integer weights/thresholds (scale folded into
  threshold, reset and bias; decays rounded to what the target stores), with the max rounding
  error per layer;
* **hardware profiles** — :class:`HardwareProfile` (``loihi2``, ``xylo``, ``speck``,
  ``int8``, or yours) and :func:`check_model`, which lists every violation with its fix;
* **NIR** — :func:`to_nir`, :func:`write_nir` (atomic), :func:`export_nir`, :func:`from_nir`;
  needs the optional packages ``nir`` and ``h5py`` (``pip install 'spikelfp[export]'``),
  imported only when used;
* **integer simulator** — :func:`simulate` (numpy int64, bit-identical to the quantised torch
  model);
* :func:`export` — all of the above in one call, returning an :class:`ExportReport`; the
  model is canonicalised once, into a :class:`CanonicalNet` (every function above also takes
  one), and each layer kind is one converter in :mod:`spikelfp.hw_export.kinds`;
* **training for the chip** — :class:`TargetTraining` (the training forward pass is the
  target's integer network, :class:`IntegerLIFRule`, :class:`IntegerRLIFRule`,
  :class:`IntegerCubaLIFRule`), :func:`adapt_spec`,
  :func:`linear_as_conv`; ``spikelfp train --target T``.
* **vendor SDKs** — :func:`rockpool_xylo_spec`, :func:`rockpool_xylo_simulate`: a Xylo network
  in rockpool's bit-accurate ``XyloSim`` (optional extra ``spikelfp[xylo]``, imported lazily),
  spike for spike the ``xylo`` profile's integer network (Xylo's own neuron: the profile's
  neuron fields, :class:`QuantizedNeuron`'s chip semantics); :func:`xylo_reference`, Xylo's
  neuron in numpy with each difference from spikelfp's own integer neuron a switch.

See ``docs/export.md``.
"""

from ._layers import (
    CanonicalLayer,
    CanonicalNet,
    SumPool2d,
    canonicalize,
    infer_shapes,
    kind_of,
    neuron_outputs,
)
from .checks import ConstraintReport, Violation, check_model
from .errors import (
    ExportError,
    ExportWriteError,
    NIRImportError,
    NonFiniteParameterError,
    ProfileViolationError,
    ResetNotExpressibleError,
    UnsupportedLayerError,
)
from .export import ExportReport, evaluate, export, iterate_batches, spike_agreement
from .nir_io import export_nir, from_nir, read_nir, require_nir, to_nir, write_nir
from .profiles import (
    INT8,
    LOIHI2,
    PROFILES,
    SPECK,
    XYLO,
    HardwareProfile,
    get_profile,
    load_profile,
    register_profile,
)
from .pruning import (
    FeedbackAccumulator,
    LayerSparsity,
    SparsityReport,
    accumulate_feedback,
    apply_masks_,
    feedback_prune,
    magnitude_prune,
    prunable_parameters,
    prune_by_scores,
    prune_masks,
    sparsity_report,
)
from .quantize import (
    LayerQuantization,
    QuantizationReport,
    QuantizedNetwork,
    QuantizedNeuron,
    quantize,
)
from .simulator import SimulationResult, compile_integer, simulate
from .target import (
    IntegerCubaLIFRule,
    IntegerLIFRule,
    IntegerRLIFRule,
    TargetTraining,
    adapt_spec,
    linear_as_conv,
)
from .vendor_xylo import (
    XYLO_DIFFERENCES,
    load_xylo_sim,
    rockpool_xylo_simulate,
    rockpool_xylo_spec,
    xylo_reference,
)

__all__ = [
    # pruning
    "magnitude_prune",
    "feedback_prune",
    "prune_by_scores",
    "prune_masks",
    "apply_masks_",
    "prunable_parameters",
    "FeedbackAccumulator",
    "accumulate_feedback",
    "sparsity_report",
    "SparsityReport",
    "LayerSparsity",
    # quantisation
    "quantize",
    "QuantizedNetwork",
    "QuantizedNeuron",
    "QuantizationReport",
    "LayerQuantization",
    # profiles and checks
    "HardwareProfile",
    "LOIHI2",
    "XYLO",
    "SPECK",
    "INT8",
    "PROFILES",
    "get_profile",
    "register_profile",
    "load_profile",
    "check_model",
    "ConstraintReport",
    "Violation",
    # NIR
    "to_nir",
    "write_nir",
    "export_nir",
    "from_nir",
    "read_nir",
    "require_nir",
    # simulator
    "simulate",
    "SimulationResult",
    "compile_integer",
    # train for the chip
    "TargetTraining",
    "IntegerCubaLIFRule",
    "IntegerLIFRule",
    "IntegerRLIFRule",
    "adapt_spec",
    "linear_as_conv",
    # vendor SDKs (rockpool's XyloSim; optional extra spikelfp[xylo])
    "rockpool_xylo_spec",
    "rockpool_xylo_simulate",
    "load_xylo_sim",
    "xylo_reference",
    "XYLO_DIFFERENCES",
    # one call
    "export",
    "ExportReport",
    "evaluate",
    "spike_agreement",
    "iterate_batches",
    # layers and errors
    "SumPool2d",
    "canonicalize",
    "CanonicalNet",
    "CanonicalLayer",
    "infer_shapes",
    "kind_of",
    "neuron_outputs",
    "ExportError",
    "UnsupportedLayerError",
    "NonFiniteParameterError",
    "ResetNotExpressibleError",
    "ProfileViolationError",
    "ExportWriteError",
    "NIRImportError",
]
