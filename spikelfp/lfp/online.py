r"""Online (windowed) LFP: long recordings in windows of ``K`` steps, memory independent of ``T``.

:func:`lfp_step` decomposes the reward of a whole sequence at once, so it holds what the rules
keep for all ``T`` steps. :func:`online_lfp_step` runs the sequence in windows
``[0, K), [K, 2K), ...``: each window is one forward under the composite, started from the
neuron state the previous window ended in (detached), and its reward is decomposed at the
window's end. The feedback of the windows is either applied after every window (online
learning, ``update="window"``) or summed over the sequence and applied once
(``update="sequence"``). What is truncated: the reward that the decomposition of window
``k + 1`` sends back to the membranes (and currents) it started from, :math:`q_{kK}`, is
dropped; so is any reward a window's output would earn from later steps. With ``K >= T`` there
is one window and the result is :func:`lfp_step`'s, bit for bit. The maths:
``docs/lfp_rules.md`` ("Online LFP").

Inputs may be a ``(T, B, ...)`` tensor (windows are views of it) or :class:`SparseFrames`, a
batch of event-count frames kept as indices, of which only one window at a time is made dense.

>>> import torch
>>> from torch import nn
>>> from spikelfp import LIF, Sequential
>>> from spikelfp.lfp import rate_coded_reward
>>> torch.manual_seed(0) and None
>>> net = Sequential(nn.Linear(20, 10), LIF(beta=0.9, threshold=0.3))
>>> x = (torch.rand(12, 4, 20) < 0.3).float()
>>> res = online_lfp_step(net, x, torch.tensor([0, 1, 2, 3]), rate_coded_reward, window=4)
>>> res.output.shape, res.reward.shape
(torch.Size([12, 4, 10]), torch.Size([12, 4, 10]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..events import SparseFrames
from ..sequential import Sequential, event_input_layer
from .composites import Composite
from .rewards import _check_output, _softmax_error
from .step import StepResult, lfp_step

__all__ = [
    "UPDATES",
    "CausalReward",
    "RunningRateReward",
    "PerStepSoftmaxReward",
    "SparseFrames",
    "online_lfp_step",
    "check_streamable",
    "check_window",
    "augment_sparse",
    "Windowed",
]

#: how :func:`online_lfp_step` applies the feedback: after every window, or once per sequence
UPDATES = ("window", "sequence")

_BATCHNORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def check_window(window) -> int:
    """``window`` as a positive ``int``; a one-line ``ValueError`` otherwise.

    >>> check_window(25)
    25
    """
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window <= 0:
        raise ValueError(
            f"the online window must be a positive whole number of time steps, got {window!r}"
        )
    return int(window)


def check_streamable(model: nn.Module) -> None:
    """Raise a one-line ``ValueError`` if ``model`` cannot run in windows.

    A model streams when its only memory across time steps is the neuron state it takes and
    returns (``model(x, state) -> (output, state)``, as :class:`spikelfp.Sequential`). Batch
    norm in training mode normalises with the statistics of the steps it sees at once, which
    in windows are the window's, not the sequence's: it cannot stream (use ``model.eval()``
    for its batch norm, or a model without batch norm).

    >>> from spikelfp import LIF, Sequential
    >>> check_streamable(Sequential(nn.Linear(2, 2), LIF()))
    >>> bn = Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), LIF())
    >>> check_streamable(bn)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: layer 1 (BatchNorm1d) cannot run in windows: ...
    """
    layers = list(model) if isinstance(model, nn.Sequential) else [model]
    for i, layer in enumerate(layers):
        for m in layer.modules():
            if isinstance(m, _BATCHNORM) and m.training:
                raise ValueError(
                    f"layer {i} ({type(m).__name__}) cannot run in windows: in training mode it "
                    "normalises with the statistics of each window, not of the sequence; put it "
                    "in eval mode or use a model without batch norm"
                )


# -- rewards that need no future ------------------------------------------------------------------
class CausalReward:
    r"""A reward whose value at step ``t`` depends on the outputs up to ``t`` only.

    Such a reward is the same whether it is computed on the whole sequence or window by window
    with a ``carry`` (what it remembers of earlier windows) handed from one window to the next.
    Subclasses implement :meth:`window`; calling the object on a whole sequence is
    ``window(output, target, 0, T, None)[0]``, so it also works with :func:`lfp_step`.
    """

    def window(self, output, target, start: int, total: int, carry):
        """The reward of one window.

        Args:
            output: the window's output ``(K, B, C)``.
            target: labels ``(B,)``.
            start: the sequence step of the window's first step.
            total: the number of steps of the whole sequence.
            carry: what the previous window returned (``None`` for the first).

        Returns:
            ``(reward (K, B, C), carry)``.
        """
        raise NotImplementedError

    def __call__(self, output: torch.Tensor, target) -> torch.Tensor:
        return self.window(output, target, 0, output.shape[0], None)[0]


@dataclass(frozen=True)
class RunningRateReward(CausalReward):
    r"""lfprop's rate-coded reward (:func:`~spikelfp.lfp.rate_coded_reward`) on running counts.

    With :math:`c_t = \sum_{s \le t} S_s` the spike count up to step ``t`` (0-based) and
    :math:`h = \lfloor T/2 \rfloor`, the target class gets :math:`1 - \sigma(c_t - h)` and
    every other class :math:`-S_t (1 - \sigma((t + 1 - c_t) - h))`, times ``scale``: the
    reward of step ``t`` needs no later step. (:func:`rate_coded_reward` uses the final
    count :math:`c_T` at every step.)

    Args:
        scale: factor on the whole reward (e.g. ``1 / T``).

    >>> s = torch.zeros(4, 1, 2); s[:, 0, 0] = 1
    >>> r = RunningRateReward()(s, torch.tensor([0]))
    >>> [round(v, 4) for v in r[:, 0, 0].tolist()]   # the target fires: asked less and less
    [0.7311, 0.5, 0.2689, 0.1192]
    """

    scale: float = 1.0

    def window(self, output, target, start, total, carry):
        _check_output(output, target, "RunningRateReward")
        count = output.cumsum(0) if carry is None else output.cumsum(0) + carry
        steps = torch.arange(
            start + 1, start + output.shape[0] + 1, dtype=output.dtype, device=output.device
        ).view(-1, 1, 1)
        half = total // 2
        pos = 1 - torch.sigmoid(count - half)
        neg = 1 - torch.sigmoid((steps - count) - half)
        onehot = nn.functional.one_hot(target, output.shape[2]).to(output.dtype)
        reward = onehot * pos + (1 - onehot) * (-output * neg)
        return reward * self.scale, count[-1]


@dataclass(frozen=True)
class PerStepSoftmaxReward(CausalReward):
    r"""The cross-entropy error at every step, :math:`(\mathrm{onehot} -
    \mathrm{softmax}(o_t)) / T`: :func:`~spikelfp.lfp.per_step_softmax_reward` by windows.

    >>> r = PerStepSoftmaxReward()(torch.zeros(2, 1, 2), torch.tensor([1]))
    >>> r[:, 0].tolist()
    [[-0.25, 0.25], [-0.25, 0.25]]
    """

    def window(self, output, target, start, total, carry):
        _check_output(output, target, "PerStepSoftmaxReward")
        return _softmax_error(output, target.expand(output.shape[0], -1)) / total, None


def augment_sparse(augmentation, x: SparseFrames, generator=None) -> SparseFrames:
    """Apply a ``spikelfp.datasets.augment`` augmentation to sparse frames.

    ``RandomShift`` draws the same shifts as on dense frames (the same generator calls) and
    gives the same frames; ``DropSpikes`` drops each non-zero entry with probability ``p``
    (the same distribution as on dense frames, other draws). ``None`` returns ``x``.

    Raises:
        TypeError: an augmentation step without a sparse form.
    """
    if augmentation is None:
        return x
    # a Compose holds its steps (read by name: lfp does not import datasets, a layer above)
    steps = tuple(getattr(augmentation, "steps", (augmentation,)))
    for step in steps:
        fn = _SPARSE_AUGMENT.get(type(step).__name__)
        if fn is None:
            raise TypeError(f"{type(step).__name__} has no form for sparse (online) frames")
        x = fn(step, x, generator)
    return x


def _shift(step, x: SparseFrames, generator) -> SparseFrames:
    s = step.max_shift
    if s == 0 or x.index.numel() == 0:
        return x
    shifts = torch.randint(-s, s + 1, (x.shape[1], 2), generator=generator).tolist()
    return x.shifted(shifts)


def _drop(step, x: SparseFrames, generator) -> SparseFrames:
    if step.p == 0 or x.index.numel() == 0:
        return x
    keep = torch.rand(x.index.shape, generator=generator) >= step.p
    keep = keep.to(x.index.device)
    return SparseFrames(x.shape, x.index[keep], x.value[keep])


#: sparse form of each augmentation step, by class name
_SPARSE_AUGMENT = {"RandomShift": _shift, "DropSpikes": _drop}


class Windowed(nn.Module):
    """``model`` run in windows of ``window`` steps (state carried), for inference.

    ``Windowed(model, K)(x, state) -> (output (T, B, ...), state)`` equals ``model(x, state)``
    for a model that streams, holding one window of its layers at a time; ``x`` may be
    :class:`SparseFrames`. The output of all steps is concatenated.

    Args:
        model: the network (returns ``(output, state)``).
        window: steps per window.

    >>> from spikelfp import LIF, Sequential
    >>> net = Sequential(nn.Linear(3, 2), LIF(threshold=0.1))
    >>> x = torch.rand(7, 2, 3)
    >>> torch.equal(Windowed(net, 3)(x)[0], net(x)[0])
    True
    """

    def __init__(self, model: nn.Module, window: int):
        super().__init__()
        self.model = model
        self.window = check_window(window)

    def forward(self, x, state=None):
        outs = []
        for _, xw in _windows(x, self.window):  # sparse windows stay sparse (Sequential)
            out, state = self.model(xw, state) if state is not None else self.model(xw)
            outs.append(out)
        return (outs[0] if len(outs) == 1 else torch.cat(outs)), state


def _windows(x, window: int):
    """``(start, frames)`` of each window of ``x`` (a tensor or :class:`SparseFrames`)."""
    steps = x.steps if isinstance(x, SparseFrames) else x.shape[0]
    for start in range(0, steps, window):
        stop = min(start + window, steps)
        yield start, (x.time_slice(start, stop) if isinstance(x, SparseFrames) else x[start:stop])


# -- the step -----------------------------------------------------------------------------------
def online_lfp_step(
    model: nn.Module,
    x: torch.Tensor | SparseFrames,
    target,
    reward: Callable[[torch.Tensor, object], torch.Tensor] | CausalReward | torch.Tensor,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    window: int,
    update: str = "sequence",
    composite: Composite | None = None,
    state=None,
) -> StepResult:
    r"""Train ``model`` on the sequence ``x`` by LFP in windows of ``window`` steps.

    For windows :math:`w_k = [kK, \min((k+1)K, T))`, in order: run the window under the
    composite from the state the previous window ended in (detached), reward its output,
    decompose the reward back through the window (:func:`lfp_step`), and

    * ``update="window"``: write ``param.grad = -F_k`` and call ``optimizer.step()``
      (online learning: each window is trained with the weights the previous one left);
    * ``update="sequence"``: sum :math:`F = \sum_k F_k`, write ``param.grad = -F`` and call
      ``optimizer.step()`` once at the end (``optimizer=None``: only write ``.grad``).

    The reward: a :class:`CausalReward` (e.g. :class:`RunningRateReward`) is evaluated window by
    window with its carry, which equals its value on the whole sequence; any other
    ``reward(output, target)`` function is applied to each window as to a sequence of its own
    (e.g. :func:`~spikelfp.lfp.rate_coded_reward` then asks each window to fire at its rate).
    The reward a window's decomposition sends to the state it started from is dropped (the
    state is detached); with ``window >= T`` this is :func:`lfp_step` bit for bit. Memory:
    what :func:`lfp_step` needs for ``window`` steps, plus the output ``(T, B, C)``.

    Args:
        model: a model that streams (see :func:`check_streamable`), e.g. a
            :class:`spikelfp.Sequential`, returning ``(output, state)``.
        x: input ``(T, B, ...)`` floating point, or :class:`SparseFrames`.
        target: what the reward compares the output with (labels ``(B,)``).
        reward: a reward function, a :class:`CausalReward`, or a ready reward tensor shaped
            like the output (each window gets its steps).
        optimizer: any torch optimiser (required for ``update="window"``).
        window: ``K``, the number of steps per window (positive).
        update: ``"window"`` or ``"sequence"`` (see above).
        composite: the rules (:func:`~spikelfp.lfp.default_composite` by default).
        state: the network state to start from.

    Returns:
        A :class:`~spikelfp.lfp.StepResult`: the output and reward of all ``T`` steps and the
        final state (``input_reward`` is ``None``).

    Raises:
        ValueError: ``window`` is not a positive integer, ``update`` is unknown or ``"window"``
            without an optimizer, or the model cannot stream (see :func:`check_streamable`;
            also a model that returns no state when there is more than one window).
        TypeError, RuntimeError: as :func:`lfp_step`.
    """
    window = check_window(window)
    if update not in UPDATES:
        raise ValueError(f"update must be one of {', '.join(UPDATES)}, got {update!r}")
    if update == "window" and optimizer is None:
        raise ValueError(
            'update="window" applies the feedback after every window: pass an optimizer'
        )
    if not isinstance(x, (torch.Tensor, SparseFrames)):
        raise TypeError(f"x must be a tensor (T, B, ...) or SparseFrames, got {type(x).__name__}")
    steps = x.steps if isinstance(x, SparseFrames) else x.shape[0]
    if steps > window:
        check_streamable(model)
    params = [p for p in model.parameters()]
    total: list[torch.Tensor | None] = [None] * len(params)
    outputs, rewards = [], []
    carry = None
    for start, xw in _windows(x, window):
        if isinstance(reward, CausalReward):

            def reward_fn(out, tgt, start=start):
                nonlocal carry
                r, carry = reward.window(out, tgt, start, steps, carry)
                return r

        elif isinstance(reward, torch.Tensor):  # a ready reward (T, B, ...): its window
            reward_fn = reward[start : start + window]
        else:
            reward_fn = reward
        res = lfp_step(
            model,
            xw,
            target,
            reward_fn,
            optimizer if update == "window" else None,
            composite=composite,
            state=state,
        )
        if start + window < steps and res.state is None:
            raise ValueError(
                f"{type(model).__name__} returns no state, so it cannot run in windows; use a "
                "model that returns (output, state), e.g. spikelfp.Sequential"
            )
        state = res.state
        outputs.append(res.output)
        rewards.append(res.reward)
        if update == "sequence":
            for i, p in enumerate(params):
                if p.grad is None:
                    continue
                total[i] = p.grad if total[i] is None else total[i].add_(p.grad)
    if update == "sequence":
        for p, g in zip(params, total, strict=True):
            p.grad = g
        if optimizer is not None:
            optimizer.step()
    if len(outputs) == 1:
        output, rew = outputs[0], rewards[0]
    else:
        output, rew = torch.cat(outputs), torch.cat(rewards)
    return StepResult(output=output, reward=rew, state=state)


# -- calibration ---------------------------------------------------------------------------------
def _synapse_inputs(layers, syn, gain_at, x, window):
    """How the bisection gets the input of synapse ``syn`` window by window:
    ``("sparse", syn + 1, None)`` (the synapse computed from the events), ``("packed", syn,
    [(shape, bits), ...])`` or ``("recompute", 0, None)``."""
    prefix = layers[:syn]
    if (
        isinstance(x, SparseFrames)
        and gain_at == syn
        and event_input_layer(layers, x.shape[2:]) == syn
    ):
        return ("sparse", syn + 1, None)
    if syn == 0:
        return ("recompute", 0, None)
    packed, state = [], None
    run = Sequential(*prefix)
    for _, xw in _windows(x, window):
        h, state = run(xw, state)
        binary = h.numel() and bool(((h == 0) | (h == 1)).all())
        if not binary:
            return ("recompute", 0, None)
        packed.append((tuple(h.shape), np.packbits(h.to(torch.bool).cpu().numpy(), axis=None)))
    return ("packed", syn, packed)


def _source_windows(source, x, window, synapse):
    kind, _, packed = source
    if kind == "packed":
        for shape, bits in packed:
            n = int(np.prod(shape))
            h = torch.from_numpy(np.unpackbits(bits, count=n).reshape(shape))
            yield h.to(device=synapse.weight.device, dtype=synapse.weight.dtype)
    elif kind == "sparse":
        for start in range(0, x.steps, window):
            stop = min(start + window, x.steps)
            z = synapse(x.csr(start, stop, dtype=synapse.weight.dtype))
            yield z.view(stop - start, x.shape[1], -1)
    else:
        for _, xw in _windows(x, window):
            yield xw
