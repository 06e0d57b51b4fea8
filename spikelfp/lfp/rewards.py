r"""Rewards: what the output of a network earned, as a tensor shaped like the output.

A reward function takes the (detached) network output ``(T, B, C)`` and a target and returns a
reward ``(T, B, C)``: positive where the output should grow, negative where it should shrink.
Nothing here needs to be differentiable; any callable with this signature works.
"""

from __future__ import annotations

import torch

__all__ = [
    "rate_coded_reward",
    "spike_count_softmax_reward",
    "membrane_softmax_reward",
    "per_step_softmax_reward",
    "discrete_feedback_reward",
    "check_reward",
]


def _check_output(output: torch.Tensor, labels: torch.Tensor, who: str) -> None:
    if output.dim() != 3:
        raise ValueError(f"{who} expects output (T, B, C), got shape {tuple(output.shape)}")
    if labels.shape != (output.shape[1],):
        raise ValueError(
            f"{who} expects labels of shape (B,) = ({output.shape[1]},), got {tuple(labels.shape)}"
        )
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= output.shape[2]):
        raise ValueError(
            f"{who}: labels must lie in [0, {output.shape[2] - 1}], got "
            f"{int(labels.min())}..{int(labels.max())}"
        )


def rate_coded_reward(
    spikes: torch.Tensor, labels: torch.Tensor, scale: float = 1.0
) -> torch.Tensor:
    r"""lfprop's correct-class reward for rate-coded spike outputs.

    With counts :math:`c = \sum_t S_t`, :math:`pos = 1 - \sigma(c - \lfloor T/2 \rfloor)` and
    :math:`neg = 1 - \sigma((T - c) - \lfloor T/2 \rfloor)`: the target class gets ``pos`` at
    every step (fire more, saturating once it fires half the time), every other class gets
    ``-S_t · neg`` (its spikes are penalised). Multiplied by ``scale``.

    Args:
        spikes: output spikes ``(T, B, C)``.
        labels: target classes ``(B,)`` (integers).
        scale: factor on the whole reward (lfprop uses ``1 / T`` for long recordings).

    Returns:
        The reward ``(T, B, C)``.

    Raises:
        ValueError: ``spikes`` is not ``(T, B, C)``, or ``labels`` is not ``(B,)`` or holds a
            class outside ``[0, C)``.

    >>> s = torch.zeros(4, 1, 2); s[:, 0, 1] = 1
    >>> rate_coded_reward(s, torch.tensor([0]))[0, 0]   # class 0 silent, class 1 always on
    tensor([ 0.8808, -0.8808])
    """
    _check_output(spikes, labels, "rate_coded_reward")
    t = spikes.shape[0]
    count = spikes.sum(0)
    pos = 1 - torch.sigmoid(count - t // 2)
    neg = 1 - torch.sigmoid((t - count) - t // 2)
    onehot = torch.nn.functional.one_hot(labels, spikes.shape[2]).to(spikes.dtype)
    reward = onehot * pos + (1 - onehot) * (-spikes * neg)
    return reward * scale


def _softmax_error(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    onehot = torch.nn.functional.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    return onehot - torch.softmax(logits, dim=-1)


def spike_count_softmax_reward(
    spikes: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    r"""Negative cross-entropy gradient on spike counts, spread evenly over time.

    With logits :math:`c / \tau` (``c`` spike counts), the reward is
    :math:`(\mathrm{onehot} - \mathrm{softmax}(c/\tau)) / T` at every step.

    Args:
        spikes: output spikes ``(T, B, C)``.
        labels: target classes ``(B,)``.
        temperature: :math:`\tau`, divides the counts before the softmax.

    Returns:
        The reward ``(T, B, C)``.

    Raises:
        ValueError: ``spikes`` is not ``(T, B, C)``, or ``labels`` is not ``(B,)`` or holds a
            class outside ``[0, C)``.

    >>> r = spike_count_softmax_reward(torch.zeros(2, 1, 2), torch.tensor([1]))
    >>> r[0, 0].tolist()
    [-0.25, 0.25]
    """
    _check_output(spikes, labels, "spike_count_softmax_reward")
    err = _softmax_error(spikes.sum(0) / temperature, labels)
    return err.unsqueeze(0).expand_as(spikes) / spikes.shape[0]


def membrane_softmax_reward(
    membrane: torch.Tensor, labels: torch.Tensor, reduce: str = "mean"
) -> torch.Tensor:
    r"""Negative cross-entropy gradient for an LI readout's membrane ``(T, B, C)``.

    ``reduce="mean"``: logits = time-mean of the membrane, reward :math:`err/T` at every step;
    ``reduce="last"``: logits = last step, reward only there;
    ``reduce="max"``: logits = maximum over time, reward at each class's arg-max step.

    Args:
        membrane: the readout's membrane ``(T, B, C)``.
        labels: target classes ``(B,)``.
        reduce: ``"mean"`` (default), ``"last"`` or ``"max"``.

    Returns:
        The reward ``(T, B, C)``.

    Raises:
        ValueError: an unknown ``reduce``, ``membrane`` not ``(T, B, C)``, or ``labels`` not
            ``(B,)`` or outside ``[0, C)``.

    >>> r = membrane_softmax_reward(torch.zeros(2, 1, 2), torch.tensor([0]), reduce="last")
    >>> r[:, 0].tolist()
    [[0.0, 0.0], [0.5, -0.5]]
    """
    _check_output(membrane, labels, "membrane_softmax_reward")
    t = membrane.shape[0]
    reward = torch.zeros_like(membrane)
    if reduce == "mean":
        return _softmax_error(membrane.mean(0), labels).unsqueeze(0).expand_as(membrane) / t
    if reduce == "last":
        reward[-1] = _softmax_error(membrane[-1], labels)
        return reward
    if reduce == "max":
        peak, idx = membrane.max(0)
        reward.scatter_(0, idx.unsqueeze(0), _softmax_error(peak, labels).unsqueeze(0))
        return reward
    raise ValueError(f"reduce must be 'mean', 'last' or 'max', got {reduce!r}")


def per_step_softmax_reward(output: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A cross-entropy error at every time step: ``(onehot - softmax(output_t)) / T``.

    Args:
        output: the network output ``(T, B, C)`` (spikes or membranes).
        labels: target classes ``(B,)``.

    Returns:
        The reward ``(T, B, C)``.

    Raises:
        ValueError: ``output`` is not ``(T, B, C)``, or ``labels`` is not ``(B,)`` or holds a
            class outside ``[0, C)``.

    >>> per_step_softmax_reward(torch.zeros(2, 1, 2), torch.tensor([1]))[:, 0].tolist()
    [[-0.25, 0.25], [-0.25, 0.25]]
    """
    _check_output(output, labels, "per_step_softmax_reward")
    return _softmax_error(output, labels.expand(output.shape[0], -1)) / output.shape[0]


def discrete_feedback_reward(output: torch.Tensor, feedback: torch.Tensor) -> torch.Tensor:
    r"""Discrete, per-sample feedback (e.g. a human's +1 "right" / -1 "wrong").

    The network's choice is the class with the most output activity (summed over time);
    ``feedback[b]`` is put on that class at every step, scaled by :math:`1/T`. No label and no
    differentiable loss is needed.

    Args:
        output: the network output ``(T, B, C)``.
        feedback: one value per sample ``(B,)`` (+1 right, -1 wrong, or any weight).

    Returns:
        The reward ``(T, B, C)``: ``feedback[b] / T`` on sample ``b``'s chosen class.

    Raises:
        ValueError: ``output`` is not ``(T, B, C)`` or ``feedback`` is not ``(B,)``.

    >>> out = torch.zeros(2, 2, 3); out[:, 0, 2] = 1; out[:, 1, 0] = 1
    >>> discrete_feedback_reward(out, torch.tensor([1.0, -1.0]))[0].tolist()
    [[0.0, 0.0, 0.5], [-0.5, 0.0, 0.0]]
    """
    if output.dim() != 3:
        raise ValueError(f"expects output (T, B, C), got shape {tuple(output.shape)}")
    feedback = torch.as_tensor(feedback, dtype=output.dtype, device=output.device)
    if feedback.shape != (output.shape[1],):
        raise ValueError(
            f"feedback must have one value per sample, shape ({output.shape[1]},), got "
            f"{tuple(feedback.shape)}"
        )
    choice = output.sum(0).argmax(-1)
    onehot = torch.nn.functional.one_hot(choice, output.shape[2]).to(output.dtype)
    reward = onehot * feedback.unsqueeze(-1) / output.shape[0] + 0.0  # no negative zeros
    return reward.unsqueeze(0).expand_as(output).clone()


def check_reward(reward: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Validate a reward against the output it is for; returns it as the output's dtype.

    Args:
        reward: the reward a reward function returned.
        output: the output it rewards.

    Returns:
        ``reward`` on the output's dtype and device.

    Raises:
        TypeError: ``reward`` is not a tensor.
        ValueError: its shape differs from the output's, or it holds NaN or inf values.

    >>> check_reward(torch.ones(2, 1, 3), torch.zeros(2, 1, 3, dtype=torch.float64)).dtype
    torch.float64
    """
    if not isinstance(reward, torch.Tensor):
        raise TypeError(f"the reward must be a tensor shaped like the output, got {type(reward)}")
    if reward.shape != output.shape:
        raise ValueError(
            f"the reward has shape {tuple(reward.shape)} but the output it rewards has shape "
            f"{tuple(output.shape)}; return one reward per output element (T, B, ...)"
        )
    if not torch.isfinite(reward).all():
        bad = int((~torch.isfinite(reward)).sum())
        raise ValueError(
            f"the reward has {bad} non-finite (NaN/inf) values; check the reward function"
        )
    return reward.to(dtype=output.dtype, device=output.device)
