"""Explanations from LFP's own machinery: which inputs and which events drove a decision.

* :func:`explain`: relevance of every input element for a class (LRP relevance = the LFP
  reward that reaches the input), for spikelfp models and unmodified snntorch / norse ones.
* Composites for explaining, separate from the training ones: :func:`epsilon_composite`,
  :func:`zplus_composite`, :func:`gamma_composite` and :func:`depth_composite` (z⁺ or γ near
  the input, ε above).
* :func:`explain_events`: relevance per original event ``(x, y, t, p)`` of a recording,
  binned exactly as the dataset bins it (:func:`bin_events`).
* :func:`relevance_budget` (where the output reward went), :func:`surrogate_saliency` (the
  surrogate-gradient × input baseline).
* Pictures in :mod:`spikelfp.explain.plots` (matplotlib, imported when drawing).

See ``docs/explanations.md``.
"""

from .core import (
    COMPOSITES,
    REWARDS,
    depth_composite,
    epsilon_composite,
    explain,
    gamma_composite,
    make_composite,
    output_reward,
    relevance_budget,
    surrogate_saliency,
    zplus_composite,
)
from .events import EventBins, EventExplanation, bin_events, explain_events, recording
from .plots import (
    plot_event_relevance,
    plot_explanation,
    plot_relevance_frames,
    plot_relevance_over_time,
    save_relevance_gif,
)

__all__ = [
    "COMPOSITES",
    "REWARDS",
    "EventBins",
    "EventExplanation",
    "bin_events",
    "depth_composite",
    "epsilon_composite",
    "explain",
    "explain_events",
    "gamma_composite",
    "make_composite",
    "output_reward",
    "plot_event_relevance",
    "plot_explanation",
    "plot_relevance_frames",
    "plot_relevance_over_time",
    "recording",
    "relevance_budget",
    "save_relevance_gif",
    "surrogate_saliency",
    "zplus_composite",
]
