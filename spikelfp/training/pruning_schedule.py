r"""Pruning during training: a gradual schedule to a target sparsity (Zhu & Gupta 2017).

``spikelfp train --prune-to S`` removes weights *while* the network trains, so that the
remaining weights learn to do without them, instead of cutting a dense network afterwards
(``spikelfp export --prune S``).

**The schedule.** With :math:`t` the training time in epochs (completed optimiser steps
divided by the steps of an epoch), :math:`t_s` and :math:`t_e` the start and end epochs and
:math:`s_f` the final sparsity, the sparsity at time :math:`t` is the cubic schedule of Zhu &
Gupta (2017, *To prune, or not to prune*)

.. math::

    s(t) = s_f \left(1 - (1 - p)^3\right), \qquad
    p = \operatorname{clip}\!\left(\frac{t - t_s}{t_e - t_s},\, 0,\, 1\right)

(:math:`p = [t \ge t_e]` when :math:`t_e = t_s`): it prunes fast while many redundant
weights remain and slowly near the target. A *pruning event* happens at the end of every epoch
and, with ``every = N``, also after every :math:`N`-th optimiser step; at an event at time
:math:`t` the network is pruned to exactly :math:`\operatorname{round}(s(t)\, n)` of its
:math:`n` prunable weights (the Linear/Conv weights and RLIF recurrent weights, see
:func:`spikelfp.hw_export.prunable_parameters`), so the target :math:`s_f` holds from the end
of epoch :math:`t_e` on.

**The ranking.** ``method="magnitude"`` removes the weights of smallest :math:`|w|`;
``method="feedback"`` removes those that carried the least LFP feedback since the previous
event, :math:`\sum_{\text{steps}} |F(w)|` with :math:`F(w) = -\partial_w` (the ``.grad`` that
:func:`spikelfp.lfp.lfp_step` writes, :math:`F(w_{ji}) = |w_{ji}|\, x_i\, n_j`): a weight that
never carries reward goes first, however large (equal feedback, e.g. none: smaller
:math:`|w|` first). ``scope="global"`` ranks all layers together, ``"layer"`` prunes each
tensor to :math:`s(t)`.

**Masks.** The keep-masks are monotone (a pruned weight stays pruned: the new mask is the
old one AND the new ranking's), the pruned weights' gradients are zeroed before every
optimiser step and the weights re-zeroed after it (:func:`~spikelfp.hw_export.apply_masks_`),
and at each event the optimiser's per-weight state (Adam's moments, SGD's momentum) of the
newly pruned weights is cleared, so nothing resurrects a pruned weight and pruned weights are
exactly zero in every checkpoint. With ``train --target`` the masks act on the float shadow
weights, whose zeros the integer forward pass quantises to zero.

>>> s = PruneSchedule(0.8, start=0, end=4)
>>> [round(s.sparsity_at(t), 4) for t in (0, 1, 2, 4, 6)]
[0.0, 0.4625, 0.7, 0.8, 0.8]
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["PRUNE_METHODS", "PRUNE_SCOPES", "GradualPruner", "PruneSchedule"]

#: how a pruning event ranks the weights
PRUNE_METHODS = ("magnitude", "feedback")
#: where a pruning event ranks the weights: over all layers, or within each
PRUNE_SCOPES = ("global", "layer")


@dataclass(frozen=True)
class PruneSchedule:
    r"""The gradual pruning schedule :math:`s(t) = s_f (1 - (1 - p)^3)` (module docstring).

    Args:
        sparsity: the final sparsity :math:`s_f` in ``[0, 1)`` (0.8: 80 % of the prunable
            weights removed).
        method: ``"magnitude"`` (smallest :math:`|w|` first) or ``"feedback"`` (least LFP
            feedback :math:`\sum |F(w)|` since the previous event first; LFP training only).
        start: epoch :math:`t_s` after which pruning begins (0: from the first epoch).
        end: epoch :math:`t_e \ge \max(t_s, 1)` at whose end the sparsity reaches :math:`s_f`.
        every: also prune after every ``every``-th optimiser step (0: at the end of each epoch
            only).
        scope: ``"global"`` (one ranking over all layers) or ``"layer"`` (each tensor to
            :math:`s(t)`).

    Raises :class:`ValueError` (one line) for a value out of range.

    >>> PruneSchedule(0.9, start=1, end=3).sparsity_at(2)
    0.7875
    """

    sparsity: float
    method: str = "magnitude"
    start: int = 0
    end: int = 1
    every: int = 0
    scope: str = "global"

    def __post_init__(self):
        if not 0.0 <= float(self.sparsity) < 1.0 or math.isnan(float(self.sparsity)):
            raise ValueError(
                f"sparsity must be a fraction in [0, 1) (0.8: 80% of the weights removed), "
                f"got {self.sparsity!r}"
            )
        if self.method not in PRUNE_METHODS:
            raise ValueError(
                f"unknown pruning method {self.method!r}; choose one of {', '.join(PRUNE_METHODS)}"
            )
        if self.scope not in PRUNE_SCOPES:
            raise ValueError(
                f"unknown pruning scope {self.scope!r}; choose one of {', '.join(PRUNE_SCOPES)}"
            )
        if int(self.start) < 0 or int(self.every) < 0:
            raise ValueError(f"start and every must be >= 0, got {self.start}, {self.every}")
        if int(self.end) < max(int(self.start), 1):
            raise ValueError(
                f"end (epoch {self.end}) must be at or after start (epoch {self.start}) and >= 1"
            )

    def sparsity_at(self, t: float) -> float:
        r"""The scheduled sparsity :math:`s(t)` after :math:`t` epochs of training.

        Args:
            t: training time in epochs (may be fractional: steps / steps per epoch).

        Returns:
            :math:`s_f (1 - (1 - p)^3)` with :math:`p` the clipped progress from ``start``
            to ``end``.
        """
        if self.end == self.start:
            p = 1.0 if t >= self.end else 0.0
        else:
            p = min(max((t - self.start) / (self.end - self.start), 0.0), 1.0)
        return float(self.sparsity) * (1.0 - (1.0 - p) ** 3)


class GradualPruner:
    r"""Prunes ``model`` during training along a :class:`PruneSchedule`.

    The trainer calls :meth:`begin_epoch` before each epoch, :meth:`before_step` between the
    feedback (or gradient) computation and ``optimizer.step()``, and :meth:`after_step` right
    after it; :meth:`state_dict` (the masks) goes into the checkpoint.

    Args:
        model: the network (its prunable weights are those of
            :func:`spikelfp.hw_export.prunable_parameters`).
        schedule: the :class:`PruneSchedule`.
        optimizer: the optimiser whose per-weight state of pruned weights is cleared at each
            event (``None``: none).

    >>> from spikelfp import LIF, Sequential
    >>> torch.manual_seed(0) and None
    >>> net = Sequential(nn.Linear(8, 6), LIF(), nn.Linear(6, 2), LIF())
    >>> pruner = GradualPruner(net, PruneSchedule(0.5, end=2))
    >>> for epoch in range(2):
    ...     pruner.begin_epoch(epoch, steps=3)
    ...     for _ in range(3):
    ...         pruner.before_step(); pruner.after_step()
    ...     print(epoch + 1, round(pruner.schedule.sparsity_at(epoch + 1), 4), pruner.sparsity)
    1 0.4375 0.43333333333333335
    2 0.5 0.5

    (after epoch 1, :math:`\operatorname{round}(0.4375 \cdot 60) = 26` of the 60 weights are
    pruned; after epoch 2, 30.)
    >>> int((net[0].weight == 0).sum() + (net[2].weight == 0).sum())
    30
    """

    def __init__(
        self,
        model: nn.Module,
        schedule: PruneSchedule,
        optimizer: torch.optim.Optimizer | None = None,
    ):
        from ..hw_export.pruning import prunable_parameters

        self.model = model
        self.schedule = schedule
        self.optimizer = optimizer
        self.params = prunable_parameters(model)
        if not self.params:
            raise ValueError("the model has no prunable weights (Linear, Conv1d/2d, RLIF)")
        self.masks = {
            n: torch.ones_like(p, dtype=torch.bool, device=p.device) for n, p in self.params.items()
        }
        self.scores: dict[str, torch.Tensor] | None = None
        self._epoch = 0
        self._steps = 1
        self._step = 0

    @property
    def sparsity(self) -> float:
        """The fraction of prunable weights masked out now."""
        total = sum(m.numel() for m in self.masks.values())
        kept = sum(int(m.sum()) for m in self.masks.values())
        return 1.0 - kept / total

    def begin_epoch(self, epoch: int, steps: int) -> None:
        """Start epoch ``epoch`` (0-based) of ``steps`` optimiser steps."""
        self._epoch, self._steps, self._step = int(epoch), max(int(steps), 1), 0
        self.scores = None

    def before_step(self) -> None:
        """Before ``optimizer.step()``: add the step's feedback :math:`|F(w)|` (``|grad|``) to
        the scores (feedback method) and zero the pruned weights' gradients."""
        for name, p in self.params.items():
            if p.grad is None:
                continue
            if self.schedule.method == "feedback":
                g = p.grad.detach().abs().to(torch.float64)
                if self.scores is None:
                    self.scores = {}
                self.scores[name] = self.scores[name] + g if name in self.scores else g
            p.grad.mul_(self.masks[name])

    def after_step(self) -> None:
        """After ``optimizer.step()``: re-zero the pruned weights, and prune at an event."""
        from ..hw_export.pruning import apply_masks_

        self._step += 1
        done = self._epoch * self._steps + self._step
        every = self.schedule.every
        if self._step == self._steps or (every and done % every == 0):
            self.prune(done / self._steps)
        else:
            apply_masks_(self.model, self.masks)

    def prune(self, t: float) -> None:
        """A pruning event at time ``t`` (epochs): prune to :math:`s(t)` (never un-prune) and
        restart the feedback scores."""
        from ..hw_export.pruning import apply_masks_, prune_masks

        target = self.schedule.sparsity_at(t)
        scores, self.scores = self.scores, None
        if target > 0:
            if self.schedule.method == "feedback" and scores is None:
                raise RuntimeError(
                    "feedback pruning found no feedback since the last event: call "
                    "before_step() after each lfp_step"
                )
            apply_masks_(self.model, self.masks)  # the ranking sees pruned weights as zero
            if scores is not None:
                scores = self._ranks(scores)
            new = prune_masks(self.model, target, scores, self.schedule.scope)
            for name, keep in new.items():
                self.masks[name] &= keep.to(self.masks[name].device)
            self._clear_optimizer_state()
        apply_masks_(self.model, self.masks)

    def _ranks(self, scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Feedback scores as ranks, ties (e.g. weights of inputs that never spiked: no
        feedback) broken by :math:`|w|`, over all layers or within each (the scope)."""
        names = list(self.params)
        groups = [names] if self.schedule.scope == "global" else [[n] for n in names]
        out = {}
        for group in groups:
            feedback = torch.cat([scores[n].reshape(-1) for n in group])
            size = torch.cat([self.params[n].detach().abs().reshape(-1).double() for n in group])
            order = torch.argsort(size.cpu(), stable=True)
            order = order[torch.argsort(feedback.cpu()[order], stable=True)]
            rank = torch.empty_like(order, dtype=torch.float64)
            rank[order] = torch.arange(order.numel(), dtype=torch.float64)
            start = 0
            for n in group:
                k = self.params[n].numel()
                out[n] = rank[start : start + k].reshape(self.params[n].shape)
                start += k
        return out

    def _clear_optimizer_state(self) -> None:
        if self.optimizer is None:
            return
        with torch.no_grad():
            for name, p in self.params.items():
                state = self.optimizer.state.get(p, {})
                for value in state.values():
                    if isinstance(value, torch.Tensor) and value.shape == p.shape:
                        value.mul_(self.masks[name].to(value.dtype))

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{"masks": {weight name: bool keep-mask}}`` (on the CPU, for a checkpoint)."""
        return {"masks": {n: m.cpu().clone() for n, m in self.masks.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` saved; raises :class:`ValueError` (one line) if the
        masks do not fit the model."""
        masks = dict(state.get("masks", {}))
        if set(masks) != set(self.params):
            raise ValueError(
                f"pruning masks for {sorted(masks)} but the model's prunable weights are "
                f"{sorted(self.params)}"
            )
        for name, m in masks.items():
            p = self.params[name]
            if tuple(m.shape) != tuple(p.shape) or m.dtype != torch.bool:
                raise ValueError(f"pruning mask {name!r} does not fit the weight {tuple(p.shape)}")
            self.masks[name] = m.to(p.device).clone()
