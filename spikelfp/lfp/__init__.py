"""Layer-wise Feedback Propagation: rules, composites, rewards and the training step."""

from .composites import NATIVE, Composite, UnsupportedModuleError, default_composite
from .diagnostics import DIAGNOSTIC_COLUMNS, LFPDiagnostics
from .neuron_rules import ALIFRule, CubaLIFRule, LIFRule, LIRule, RLIFRule
from .online import (
    CausalReward,
    PerStepSoftmaxReward,
    RunningRateReward,
    SparseFrames,
    Windowed,
    augment_sparse,
    check_streamable,
    online_lfp_step,
)
from .rewards import (
    check_reward,
    discrete_feedback_reward,
    membrane_softmax_reward,
    per_step_softmax_reward,
    rate_coded_reward,
    spike_count_softmax_reward,
)
from .rules import Rule
from .step import StepResult, feedback, lfp_step
from .synapse_rules import (
    AvgPoolRule,
    BatchNormRule,
    DropoutRule,
    EpsilonRule,
    GammaRule,
    MaxPoolRule,
    ZPlusRule,
)

__all__ = [
    "NATIVE",
    "Composite",
    "Rule",
    "UnsupportedModuleError",
    "default_composite",
    "DIAGNOSTIC_COLUMNS",
    "LFPDiagnostics",
    "ALIFRule",
    "CubaLIFRule",
    "LIFRule",
    "LIRule",
    "RLIFRule",
    "AvgPoolRule",
    "MaxPoolRule",
    "BatchNormRule",
    "DropoutRule",
    "EpsilonRule",
    "GammaRule",
    "ZPlusRule",
    "check_reward",
    "discrete_feedback_reward",
    "membrane_softmax_reward",
    "per_step_softmax_reward",
    "rate_coded_reward",
    "spike_count_softmax_reward",
    "StepResult",
    "feedback",
    "lfp_step",
    "CausalReward",
    "PerStepSoftmaxReward",
    "RunningRateReward",
    "SparseFrames",
    "Windowed",
    "augment_sparse",
    "check_streamable",
    "online_lfp_step",
]
