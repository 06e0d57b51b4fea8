r"""Recursions over time in preallocated tensors, in place.

The eager LIF/LI rules run the neuron kernel step by step into buffers allocated once (two
rolling membrane steps for the forward; all ``T+1`` membranes for the backward's replay), and
run the backward recursion fused with its denominator, one step at a time, so that no
full-length temporary is formed. The neuron's kernel is passed in as a *step*
``step(z_t, v, v_next, out_t)`` that writes the new membrane into ``v_next`` and the step's
output into ``out_t``; this package does not know any neuron, only the buffers.

>>> z = torch.ones(3, 2)
>>> def step(z_t, v, v_next, out_t):   # U_t = U_{t-1} / 2 + Z_t, output U_t
...     torch.add(v * 0.5, z_t, out=v_next)
...     out_t.copy_(v_next)
>>> out, v_last = run_inplace(z, torch.zeros(2), step)
>>> out[:, 0].tolist(), v_last.tolist()
([1.0, 1.5, 1.75], [1.75, 1.75])
>>> replay_inplace(z, torch.zeros(2), step)[:, 0].tolist()   # U_0 .. U_T
[0.0, 1.0, 1.5, 1.75]
"""

from __future__ import annotations

import torch

from .allocator import empty_large_like

__all__ = ["inplace_ok", "run_inplace", "replay_inplace", "membrane_backward_inplace"]


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether ``shape`` broadcasts to ``target`` without growing it (plain Python)."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target), strict=False))


def inplace_ok(z, v0, beta, threshold) -> bool:
    """Whether the in-place LIF/LI loops apply (the ordinary case).

    Args:
        z: the synaptic input, ``(T, ...)``.
        v0: the initial membrane.
        beta, threshold: the decay and the threshold.

    Returns:
        ``True`` for a contiguous ``z``, a full-size ``v0``, and parameters of ``z``'s dtype
        and device that broadcast to one step.
    """
    step = z.shape[1:]
    if v0.shape != step or not z.is_contiguous():
        return False
    for p in (v0, beta, threshold):
        if p.dtype != z.dtype or p.device != z.device:
            return False
    return _broadcasts_to(tuple(beta.shape), tuple(step)) and _broadcasts_to(
        tuple(threshold.shape), tuple(step)
    )


def run_inplace(z, v0, step):
    """The recursion over ``z`` keeping two rolling membrane steps and all outputs.

    Args:
        z: the input, ``(T, ...)``.
        v0: the initial membrane, shaped like one step.
        step: ``step(z_t, v, v_next, out_t)`` (see the module docstring).

    Returns:
        ``(outputs, U_T)``: the outputs ``(T, ...)`` and the final membrane (a tensor of its
        own).
    """
    steps = z.shape[0]
    mem = empty_large_like(z, (2,) + tuple(z.shape[1:]))
    mem[0].copy_(v0)
    out = empty_large_like(z)
    for t in range(steps):
        step(z[t], mem[t % 2], mem[(t + 1) % 2], out[t])
    return out, mem[steps % 2].clone()


def replay_inplace(z, v0, step):
    """The recursion over ``z`` keeping every membrane (the backward's replay).

    The outputs go to a two-step scratch buffer and are not kept.

    Args:
        z: the input, ``(T, ...)``.
        v0: the initial membrane, shaped like one step.
        step: ``step(z_t, v, v_next, out_t)`` (see the module docstring).

    Returns:
        ``U``, ``(T+1, ...)``: ``U[0] = v0`` and ``U[t+1]`` the membrane after step ``t``, so
        ``U[:-1]`` are the :math:`U_{t-1}` of the rules.
    """
    steps = z.shape[0]
    mem = empty_large_like(z, (steps + 1,) + tuple(z.shape[1:]))
    mem[0].copy_(v0)
    ring = z.new_empty((2,) + tuple(z.shape[1:]))
    for t in range(steps):
        step(z[t], mem[t], mem[t + 1], ring[t % 2])
    return mem


def membrane_backward_inplace(r, q, z, u_prev, beta, epsilon, keep_n, rho_out=None):
    r"""The membrane rule's backward fused with :math:`D_t` and :math:`\rho_t = n_t Z_t`.

    Going back ``t = T..1``: :math:`\tilde r_t = r_t + q_t`,
    :math:`D_t = |U_{t-1}| + |V_t - U_{t-1}| + \varepsilon` with
    :math:`V_t = \beta U_{t-1} + Z_t`, :math:`n_t = \tilde r_t / D_t`,
    :math:`q_{t-1} = \beta U_{t-1} n_t`, :math:`\rho_t = n_t Z_t`; one step at a time, in the
    operation order of the eager recursion
    (:func:`spikelfp.lfp.neuron_rules.membrane_backward`), so the bits are the same.

    Args:
        r: reward on the outputs, ``(T, ...)``.
        q: reward on the final membrane.
        z: the synaptic input.
        u_prev: :math:`U_{t-1}` for all ``t`` (from :func:`replay_inplace`).
        beta: the decay.
        epsilon: the stabiliser ε.
        keep_n: keep all :math:`n_t`.
        rho_out: where to write ρ (may be ``u_prev`` itself: step ``t`` of ``u_prev`` is not
            read again once :math:`\rho_t` is written); a new tensor if ``None``.

    Returns:
        ``(ρ, n or None, q_0)``.
    """
    steps = z.shape[0]
    rho = empty_large_like(z) if rho_out is None else rho_out
    n_all = empty_large_like(z) if keep_n else None
    a = torch.empty_like(z[0])
    inv_d, tmp, bu, n_t = (torch.empty_like(a) for _ in range(4))
    q = q.expand_as(a) if q.shape != a.shape else q
    for t in range(steps - 1, -1, -1):
        u = u_prev[t]
        torch.add(r[t], q, out=a)  # r̃_t = r_t + q_t
        torch.mul(u, beta, out=bu)  # β U_{t-1}
        # D_t = |U_{t-1}| + |V_t - U_{t-1}| + ε, with V_t = β U_{t-1} + Z_t as in the forward
        torch.add(bu, z[t], out=inv_d)
        inv_d.sub_(u).abs_().add_(torch.abs(u, out=tmp)).add_(epsilon).reciprocal_()
        n = n_all[t] if keep_n else n_t
        torch.mul(a, inv_d, out=n)  # n_t = r̃_t / D_t
        q = bu.mul_(inv_d).mul_(a)  # q_{t-1} = (β U_{t-1} / D_t) r̃_t
        torch.mul(n, z[t], out=rho[t])  # ρ_t = n_t Z_t (may overwrite U_{t-1})
        bu, tmp = tmp, bu
    return rho, n_all, q.clone()
