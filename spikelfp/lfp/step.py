"""The LFP training step: one forward under the composite, one decomposition, one update."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..events import SparseFrames
from ..sequential import Sequential
from .composites import Composite, default_composite
from .rewards import check_reward

__all__ = ["StepResult", "lfp_step", "feedback"]


@dataclass(frozen=True)
class StepResult:
    """What one :func:`lfp_step` produced (all detached).

    Attributes:
        output: the network output ``(T, B, ...)``.
        reward: the reward put on it.
        state: the network state after the last step (to continue a long recording).
        input_reward: the reward that reached the input, or ``None`` unless requested.
    """

    output: torch.Tensor
    reward: torch.Tensor
    state: object
    input_reward: torch.Tensor | None = None


def _detach(state):
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, tuple):
        items = [_detach(s) for s in state]
        return type(state)(*items) if hasattr(state, "_fields") else tuple(items)
    return state


def lfp_step(
    model: nn.Module,
    x: torch.Tensor | SparseFrames,
    target,
    reward: Callable[[torch.Tensor, object], torch.Tensor] | torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    composite: Composite | None = None,
    state=None,
    return_input_reward: bool = False,
) -> StepResult:
    """Train ``model`` by one LFP step on the batch ``x`` (time-first ``(T, B, ...)``).

    The feedback ``F`` of every parameter is written as ``param.grad = -F`` (replacing any
    previous ``.grad``), so ``optimizer.step()`` of any torch optimiser ascends the reward.
    ``reward`` is a function ``(output, target) -> reward`` or a ready reward tensor.

    Args:
        model: the network, e.g. a :class:`spikelfp.Sequential`; it must return ``output``
            or ``(output, state)``.
        x: input ``(T, B, ...)``, floating point (spikes as 0./1.), or
            :class:`~spikelfp.events.SparseFrames`: a :class:`spikelfp.Sequential` whose first
            synapse is a ``Linear`` (after ``Flatten``) then computes that layer and its
            decomposition from the events (any other model gets the dense frames).
        target: what the reward function compares the output with (labels ``(B,)``, ...).
        reward: ``reward(output, target) -> (T, B, ...)`` (see :mod:`spikelfp.lfp`'s reward
            functions) or a reward tensor shaped like the output.
        optimizer: any torch optimiser; ``None`` only writes ``.grad`` (e.g. to accumulate
            feedback or to all-reduce it first).
        composite: the rules; :func:`~spikelfp.lfp.default_composite` by default.
        state: the network state to start from (a previous result's ``state``).
        return_input_reward: also return the reward that reached the input (its relevance).

    Returns:
        A :class:`StepResult`: ``output``, ``reward``, ``state`` (and ``input_reward``).

    Raises:
        TypeError: ``x`` is not a floating-point tensor, the model returns something else
            than a tensor or ``(tensor, state)``, or the reward is not a tensor.
        ValueError: ``x`` holds NaN or inf, is not time-first for the model, or the reward
            does not match the output's shape or is not finite.
        RuntimeError: the output does not depend on any parameter through an LFP rule.
        UnsupportedModuleError: a module of the model has no rule in the composite.

    >>> from spikelfp import Sequential, LIF
    >>> from spikelfp.lfp import rate_coded_reward
    >>> torch.manual_seed(0) and None
    >>> net = Sequential(nn.Linear(20, 10), LIF(beta=0.9, threshold=0.3))
    >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
    >>> x = (torch.rand(8, 4, 20) < 0.3).float()
    >>> res = lfp_step(net, x, torch.tensor([0, 1, 2, 3]), rate_coded_reward, opt)
    >>> res.output.shape, sorted(feedback(net))
    (torch.Size([8, 4, 10]), ['0.bias', '0.weight'])
    """
    if isinstance(x, SparseFrames):
        if return_input_reward:
            raise ValueError(
                "return_input_reward needs the dense input: pass x.dense() instead of SparseFrames"
            )
        if x.value.numel() and not bool(torch.isfinite(x.value).all()):
            raise ValueError("x contains NaN or inf values; clean the event counts first")
        if not isinstance(getattr(model, "module", model), Sequential):
            dtype = next((p.dtype for p in model.parameters()), torch.float32)
            x = x.dense(dtype)  # only spikelfp.Sequential takes events
    elif not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor (T, B, ...) or SparseFrames, got {type(x).__name__}")
    elif not x.is_floating_point():
        raise TypeError(f"x must be floating point (spikes as 0./1.), got {x.dtype}; use x.float()")
    elif x.numel():
        # one pass, no input-sized temporary (isfinite(x) would allocate two); NaN propagates
        lo, hi = torch.aminmax(x)
        if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
            raise ValueError(
                "x contains NaN or inf values; clean the input (e.g. torch.nan_to_num) first"
            )
    composite = composite if composite is not None else default_composite()
    for p in model.parameters():
        p.grad = None
    if return_input_reward:
        x = x.detach().requires_grad_(True)
    with composite.context(model):
        try:
            out = model(x) if state is None else model(x, state)
        except (ValueError, RuntimeError) as err:
            hinted = _time_axis_hint(err, x)
            if hinted is None:
                raise
            raise hinted from err
    new_state = None
    if isinstance(out, tuple):
        out, new_state = out[0], out[1] if len(out) > 1 else None
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"the model must return a tensor or (tensor, state), got {type(out)}")
    if out.grad_fn is None:
        raise RuntimeError(
            "the model's output does not depend on any parameter or input through an LFP rule; "
            "does the model have trainable parameters (requires_grad=True)?"
        )
    detached = out.detach()
    r = reward(detached, target) if callable(reward) else reward
    r = check_reward(r, detached)
    torch.autograd.backward(out, r)
    if optimizer is not None:
        optimizer.step()
    return StepResult(
        output=detached,
        reward=r,
        state=_detach(new_state),
        input_reward=x.grad if return_input_reward else None,
    )


_SHAPE_WORDS = ("shape", "size", "dimension", "channels", "dims")


def _time_axis_hint(err: Exception, x: torch.Tensor) -> ValueError | None:
    """A shape error of the forward pass, reworded to say that ``x`` must be time-first
    (the usual cause: a batch ``(B, C, H, W)`` without its time axis); ``None`` for others.

    >>> err = ValueError("Linear got input of shape (4, 3)")
    >>> str(_time_axis_hint(err, torch.zeros(2, 4, 3))).split(";")[0]
    'x must be time-first (T, B, ...)'
    """
    text = " ".join(str(err).split())
    if not any(word in text.lower() for word in _SHAPE_WORDS):
        return None
    return ValueError(
        f"x must be time-first (T, B, ...); the model could not take x of shape "
        f"{tuple(x.shape)}: {text}"
    )


def feedback(model: nn.Module) -> dict[str, torch.Tensor]:
    """Each parameter's feedback from the last :func:`lfp_step` (``-param.grad``).

    Args:
        model: the model :func:`lfp_step` trained.

    Returns:
        ``{parameter name: feedback}`` for the parameters that received feedback.

    >>> from spikelfp import Sequential, LIF
    >>> from spikelfp.lfp import spike_count_softmax_reward
    >>> net = Sequential(nn.Linear(3, 2), LIF(threshold=0.1))
    >>> _ = lfp_step(net, torch.ones(4, 1, 3), torch.tensor([0]), spike_count_softmax_reward)
    >>> sorted(feedback(net))
    ['0.bias', '0.weight']
    """
    return {name: -p.grad for name, p in model.named_parameters() if p.grad is not None}
