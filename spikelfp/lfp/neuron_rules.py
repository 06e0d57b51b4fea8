r"""LFP rules for spiking neurons: reward decomposed back through time along the spike trains.

All membrane-type neurons share one decomposition (derivation in ``docs/lfp_rules.md``). The
spike :math:`S_t = H(\cdot)` is crossed as an identity (reward on :math:`S_t` is reward on the
membrane); resets and adaptive thresholds are constants. Going backwards ``t = T..1``::

    r̃_t     = r_t + q_t                           reward on S_t + reward from step t+1
    D_t     = |U_{t-1}| + |V_t - U_{t-1}| + ε     V_t: membrane before the reset
    n_t     = r̃_t / D_t
    q_{t-1} = β U_{t-1} n_t                       reward to the previous membrane
    ρ_t     = n_t Z_t                             reward to the synaptic input (the synapse rule
                                                  recovers n_t with ε = 0)
    F(β)   += |β| U_{t-1} n_t                      learnable decay
    F(θ)   -= |θ| n_t                              learnable threshold (acts as a negative bias)

For ``reset="subtract", reset_delay=True`` this is exactly lfprop's rule (reproduced to 1e-16 on
its golden cases). Current-based, adaptive and recurrent neurons extend it:

* **CubaLIF**: the reward reaching the current, :math:`\tilde\rho^I_t = I_t n_t + p_t`, is
  decomposed the same way through :math:`I_t = \alpha I_{t-1} + Z_t` with
  :math:`D^I_t = |I_{t-1}| + |I_t - I_{t-1}| + ε`, :math:`m_t = \tilde\rho^I_t / D^I_t`,
  :math:`p_{t-1} = \alpha I_{t-1} m_t`, :math:`\rho_t = m_t Z_t`, :math:`F(\alpha) \mathrel{+}=
  |\alpha| I_{t-1} m_t`.
* **ALIF**: :math:`\theta_t = \theta_0 + \kappa a_{t-1}` is a constant like the reset;
  :math:`F(\theta_0) \mathrel{-}= |\theta_0| n_t`, :math:`F(\kappa) \mathrel{-}= |\kappa|
  a_{t-1} n_t`.
* **RLIF**: the recurrent input :math:`W_{rec} S_{t-1}` is a synapse: :math:`F(W_{rec})
  \mathrel{+}= |W_{rec}| \odot n_t S_{t-1}^\top` and the previous spikes receive
  :math:`S_{t-1} \odot W_{rec}^\top n_t`, added to their reward :math:`r_{t-1}`.
* **LI** (readout): the output is the membrane itself, :math:`V_t = U_t`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _accel as accel
from ..neurons.alif import ALIF, ALIFParameters, ALIFState, alif_update
from ..neurons.cuba import CubaLIF, CubaLIFParameters, CubaLIFState, cuba_update
from ..neurons.li import LI, LIParameters, LIState, li_update
from ..neurons.lif import (
    LIF,
    LIFParameters,
    LIFState,
    lif_inplace_step,
    lif_reset,
    lif_update,
)
from ..neurons.rlif import RLIF, RLIFState, rlif_update
from ._tensor import sum_to
from .rules import nonnegative

__all__ = [
    "LIFRule",
    "LIRule",
    "CubaLIFRule",
    "ALIFRule",
    "RLIFRule",
    "membrane_backward",
    "current_backward",
]


def _reset(v_pre, v_prev, theta, reset, reset_delay):
    """Membrane after the reset, and the spikes (the kernel's :func:`lif_reset`)."""
    s, v_new = lif_reset(v_pre, v_prev, theta, reset, reset_delay)
    return v_new, s


def membrane_backward(r, q, u_prev, inv_d, beta):
    """Backward recursion ``n_t = (r_t + q_t)/D_t``, ``q_{t-1} = β U_{t-1} n_t``.

    Returns ``(n, q_0)``; elementwise only (the matmuls are done once, outside the loop).
    """
    n = torch.empty_like(r)
    for t in range(r.shape[0] - 1, -1, -1):
        a = r[t] + q
        n[t] = a * inv_d[t]
        # c_t = β U_{t-1} / D_t, formed per step (no full-length temporary)
        c = beta * u_prev[t]
        q = c.mul_(inv_d[t]).mul_(a) if c.shape == a.shape else c * inv_d[t] * a
    return n, q


def recurrent_backward(r, q, e, u_prev, inv_d, beta, spikes, s0, w_rec):
    """Backward recursion of a recurrent LIF layer (:class:`~spikelfp.neurons.RLIF`):
    ``n_t = (r_t + e_t + q_t)/D_t``, ``q_{t-1} = β U_{t-1} n_t``,
    ``e_{t-1} = S_{t-1} ⊙ (W_rec^T n_t)``, and the recurrent weights' feedback
    ``-|W_rec| ⊙ Σ_t n_t S_{t-1}^T``.

    Returns ``(n, q_0, e_0, feedback of W_rec)``; the float rule and the integer rule of
    ``hw_export`` (integer ``w_rec``) both call it.
    """
    n = torch.empty_like(r)
    for t in range(r.shape[0] - 1, -1, -1):
        n[t] = (r[t] + e + q) * inv_d[t]
        q = beta * u_prev[t] * n[t]
        e = (spikes[t - 1] if t > 0 else s0) * (n[t] @ w_rec)
    s_prev = torch.cat([s0.unsqueeze(0), spikes[:-1]])
    gw = n.reshape(-1, n.shape[-1]).t() @ s_prev.reshape(-1, n.shape[-1])
    return n, q, e, -(w_rec.abs() * gw)


def current_backward(r, p, q, i_prev, i_all, u_prev, inv_dv, inv_di, alpha, beta):
    """Backward recursion of a current-based LIF layer (:class:`~spikelfp.neurons.CubaLIF`):
    the membrane ``n_t = (r_t + q_t)/D^V_t``, ``q_{t-1} = β U_{t-1} n_t``, then the current
    ``m_t = (I_t n_t + p_t)/D^I_t``, ``p_{t-1} = α I_{t-1} m_t`` (the membrane's reward reaches
    the current through the share ``I_t`` of its input).

    Returns ``(n, m, p_0, q_0)``; the input's feedback is ``m ⊙ Z``. The float rule and the
    integer rule of ``hw_export`` (integer currents and membranes) both call it.
    """
    n = torch.empty_like(r)
    m = torch.empty_like(r)
    for t in range(r.shape[0] - 1, -1, -1):
        n[t] = (r[t] + q) * inv_dv[t]
        q = beta * u_prev[t] * n[t]
        m[t] = (i_all[t] * n[t] + p) * inv_di[t]
        p = alpha * i_prev[t] * m[t]
    return n, m, p, q


def _kernel_step(beta, threshold, reset, reset_delay, readout, v0, outputs=True):
    """The neuron's own kernel as an in-place step for :mod:`spikelfp._accel.recurrence`.

    ``step(z_t, v, v_next, out)`` writes :math:`U_t` into ``v_next`` and the spikes (or, for the
    readout, :math:`U_t`; not when ``outputs`` is false) into ``out``: the results of the
    out-of-place kernel, bit for bit.
    """
    if readout:
        p = LIParameters(beta)

        def li_step(z_t, v, v_next, out):
            u = li_update(z_t, v, p, out=v_next)  # U_t = β U_{t-1} + Z_t
            if outputs:
                out.copy_(u)

        return li_step
    return lif_inplace_step(LIFParameters(beta, threshold, reset, reset_delay), v0)


def _lif_forward_inplace(z, v0, beta, threshold, reset, reset_delay, readout):
    """The LIF/LI recursion in preallocated tensors -> ``(outputs, U_T)``."""
    step = _kernel_step(beta, threshold, reset, reset_delay, readout, v0)
    return accel.run_inplace(z, v0, step)


def _lif_replay(z, v0, beta, threshold, reset, reset_delay, readout):
    """The backward's replay of the forward: ``U`` ``(T+1, ...)``, ``U[:-1]`` the
    :math:`U_{t-1}` of the rule."""
    step = _kernel_step(beta, threshold, reset, reset_delay, readout, v0, outputs=False)
    return accel.replay_inplace(z, v0, step)


class _LIFLFP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, v0, beta, threshold, reset, reset_delay, epsilon, readout):
        ctx.epsilon = epsilon
        ctx.mode = (reset, reset_delay, readout)
        ctx.path = accel.lif_path(z, v0, beta, threshold)
        if ctx.path is not accel.LIFPath.GENERAL:
            # Only Z and U_0 are kept: the backward replays the (cheap, exact) forward
            # recursion for U_{t-1} and recomputes D_t, so the forward holds no full-length
            # membrane or denominator (the memory of a LIF layer is that of its input).
            ctx.save_for_backward(z, v0, beta, threshold)
            if ctx.path is accel.LIFPath.NATIVE:  # the same arithmetic, one fused pass
                return accel.lif_forward_fused(z, v0, beta, threshold, *ctx.mode)
            return _lif_forward_inplace(z, v0, beta, threshold, *ctx.mode)
        v = v0
        u_prev, dens, outs = [], [], []
        p = LIFParameters(beta, threshold, reset, reset_delay)
        for z_t in z.unbind(0):
            if readout:
                s = v_new = v_pre = li_update(z_t, v, LIParameters(beta))
            else:
                s, v_new, v_pre = lif_update(z_t, v, p)
            u_prev.append(v)
            dens.append((v.abs() + (v_pre - v).abs()).add_(epsilon))
            v = v_new
            outs.append(s)
        u_prev = torch.stack(u_prev)
        inv_d = torch.stack(dens).reciprocal_()
        ctx.save_for_backward(z, u_prev, inv_d, beta, threshold)
        return torch.stack(outs), v

    @staticmethod
    def backward(ctx, r, g_last):
        need = ctx.needs_input_grad
        if ctx.path is not accel.LIFPath.GENERAL:
            z, v0, beta, threshold = ctx.saved_tensors
            keep_n = need[2] or need[3]
            if ctx.path is accel.LIFPath.NATIVE:
                rho, q0, n, u_prev = accel.lif_backward_fused(
                    r, g_last, z, v0, beta, threshold, ctx.epsilon, *ctx.mode, keep_n
                )
            else:  # membrane_backward, fused with D_t and ρ_t = n_t Z_t
                u_prev = _lif_replay(z, v0, beta, threshold, *ctx.mode)[:-1]
                rho, n, q0 = accel.membrane_backward_inplace(
                    r, g_last, z, u_prev, beta, ctx.epsilon, keep_n, u_prev if not keep_n else None
                )
        else:
            z, u_prev, inv_d, beta, threshold = ctx.saved_tensors
            n, q0 = membrane_backward(r, g_last, u_prev, inv_d, beta)
            rho = n * z if need[0] else None
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[2] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[3] else None
        return rho if need[0] else None, q0, g_beta, g_theta, None, None, None, None


@dataclass(frozen=True)
class LIFRule:
    r"""LFP rule for :class:`~spikelfp.neurons.LIF` and :class:`~spikelfp.neurons.IF`.

    A frozen dataclass (:class:`~spikelfp.lfp.Rule`); the other neuron rules share its
    field.

    Args:
        epsilon: the stabiliser :math:`\varepsilon \ge 0` of the denominators :math:`D_t`.

    >>> from spikelfp.neurons import LIF
    >>> z = torch.rand(5, 2, 3, requires_grad=True)
    >>> s, state = LIFRule().forward(LIF(beta=0.9, threshold=0.5), z)
    >>> s.backward(torch.ones_like(s)); z.grad.shape   # reward on the synaptic input
    torch.Size([5, 2, 3])
    >>> LIFRule(), LIFRule() == LIFRule(1e-6), LIFRule() == LIRule()
    (LIFRule(epsilon=1e-06), True, False)
    """

    epsilon: float = 1e-6

    def __post_init__(self):
        nonnegative(self, "epsilon", "1e-6")

    def forward(self, module: LIF, x: torch.Tensor, state: LIFState | None = None):
        module.check_input(x)
        v0 = module.initial_state(x).v if state is None else state.v
        s, v = _LIFLFP.apply(
            x,
            v0,
            module.beta,
            module.threshold,
            module.reset,
            module.reset_delay,
            self.epsilon,
            False,
        )
        return s, LIFState(v)


@dataclass(frozen=True)
class LIRule(LIFRule):
    """LFP rule for the :class:`~spikelfp.neurons.LI` readout (output = membrane)."""

    def forward(self, module: LI, x: torch.Tensor, state: LIState | None = None):
        module.check_input(x)
        v0 = module.initial_state(x).v if state is None else state.v
        thr = torch.zeros((), dtype=x.dtype, device=x.device)
        u, v = _LIFLFP.apply(x, v0, module.beta, thr, "none", False, self.epsilon, True)
        return u, LIState(v)


class _CubaLFP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, i0, v0, alpha, beta, threshold, reset, reset_delay, epsilon):
        i, v = i0, v0
        i_prev, i_all, u_prev, dv, di, outs = [], [], [], [], [], []
        p = CubaLIFParameters(alpha, beta, threshold, reset, reset_delay)
        for z_t in z.unbind(0):
            s, state, v_pre = cuba_update(z_t, CubaLIFState(i, v), p)
            i_new = state.i
            i_prev.append(i)
            i_all.append(i_new)
            u_prev.append(v)
            dv.append((v.abs() + (v_pre - v).abs()).add_(epsilon))
            di.append((i.abs() + (i_new - i).abs()).add_(epsilon))
            i, v = state
            outs.append(s)
        st = torch.stack
        ctx.save_for_backward(
            z,
            st(i_prev),
            st(i_all),
            st(u_prev),
            st(dv).reciprocal_(),
            st(di).reciprocal_(),
            alpha,
            beta,
            threshold,
        )
        return st(outs), i, v

    @staticmethod
    def backward(ctx, r, g_i, g_v):
        z, i_prev, i_all, u_prev, inv_dv, inv_di, alpha, beta, threshold = ctx.saved_tensors
        n, m, p, q = current_backward(
            r, g_i, g_v, i_prev, i_all, u_prev, inv_dv, inv_di, alpha, beta
        )
        need = ctx.needs_input_grad
        g_alpha = -(alpha.abs() * sum_to(i_prev * m, alpha.shape)) if need[3] else None
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[4] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[5] else None
        return m * z, p, q, g_alpha, g_beta, g_theta, None, None, None


@dataclass(frozen=True)
class CubaLIFRule(LIFRule):
    """LFP rule for :class:`~spikelfp.neurons.CubaLIF` (current and membrane both decomposed)."""

    def forward(self, module: CubaLIF, x: torch.Tensor, state: CubaLIFState | None = None):
        module.check_input(x)
        st = module.initial_state(x) if state is None else state
        s, i, v = _CubaLFP.apply(
            x,
            st.i,
            st.v,
            module.alpha,
            module.beta,
            module.threshold,
            module.reset,
            module.reset_delay,
            self.epsilon,
        )
        return s, CubaLIFState(i, v)


class _ALIFLFP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, v0, a0, beta, threshold, rho, kappa, reset, epsilon):
        v, a = v0, a0
        u_prev, a_prev, dens, outs = [], [], [], []
        p = ALIFParameters(beta, threshold, rho, kappa, reset)
        for z_t in z.unbind(0):
            s, state, v_pre, _ = alif_update(z_t, ALIFState(v, a), p)
            u_prev.append(v)
            a_prev.append(a)
            dens.append((v.abs() + (v_pre - v).abs()).add_(epsilon))
            v, a = state
            outs.append(s)
        u_prev = torch.stack(u_prev)
        ctx.save_for_backward(
            z, u_prev, torch.stack(a_prev), torch.stack(dens).reciprocal_(), beta, threshold, kappa
        )
        return torch.stack(outs), v, a

    @staticmethod
    def backward(ctx, r, g_v, g_a):
        z, u_prev, a_prev, inv_d, beta, threshold, kappa = ctx.saved_tensors
        n, q0 = membrane_backward(r, g_v, u_prev, inv_d, beta)
        need = ctx.needs_input_grad
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[3] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[4] else None
        g_kappa = kappa.abs() * sum_to(a_prev * n, kappa.shape) if need[6] else None
        # The adaptation trace is a constant of the decomposition: no reward flows into a0.
        return n * z, q0, None, g_beta, g_theta, None, g_kappa, None, None


@dataclass(frozen=True)
class ALIFRule(LIFRule):
    """LFP rule for :class:`~spikelfp.neurons.ALIF` (adaptive threshold held constant)."""

    def forward(self, module: ALIF, x: torch.Tensor, state: ALIFState | None = None):
        module.check_input(x)
        st = module.initial_state(x) if state is None else state
        s, v, a = _ALIFLFP.apply(
            x,
            st.v,
            st.a,
            module.beta,
            module.threshold,
            module.rho,
            module.kappa,
            module.reset,
            self.epsilon,
        )
        return s, ALIFState(v, a)


class _RLIFLFP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, v0, s0, w_rec, beta, threshold, reset, reset_delay, epsilon):
        v, s = v0, s0
        u_prev, dens, outs = [], [], []
        p = LIFParameters(beta, threshold, reset, reset_delay)
        for z_t in z.unbind(0):
            s, state, v_pre = rlif_update(z_t, RLIFState(v, s), p, w_rec)
            u_prev.append(v)
            dens.append((v.abs() + (v_pre - v).abs()).add_(epsilon))
            v = state.v
            outs.append(s)
        spikes = torch.stack(outs)
        ctx.save_for_backward(
            z,
            s0,
            spikes,
            torch.stack(u_prev),
            torch.stack(dens).reciprocal_(),
            w_rec,
            beta,
            threshold,
        )
        return spikes, v, s

    @staticmethod
    def backward(ctx, r, g_v, g_s):
        z, s0, spikes, u_prev, inv_d, w_rec, beta, threshold = ctx.saved_tensors
        n, q, e, g_w = recurrent_backward(r, g_v, g_s, u_prev, inv_d, beta, spikes, s0, w_rec)
        need = ctx.needs_input_grad
        g_w = g_w if need[3] else None
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[4] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[5] else None
        return n * z, q, e, g_w, g_beta, g_theta, None, None, None


@dataclass(frozen=True)
class RLIFRule(LIFRule):
    """LFP rule for :class:`~spikelfp.neurons.RLIF` (recurrent weights get their share)."""

    def forward(self, module: RLIF, x: torch.Tensor, state: RLIFState | None = None):
        module.check_input(x)
        st = module.initial_state(x) if state is None else state
        s, v, s_last = _RLIFLFP.apply(
            x,
            st.v,
            st.s,
            module.recurrent_weight,
            module.beta,
            module.threshold,
            module.reset,
            module.reset_delay,
            self.epsilon,
        )
        return s, RLIFState(v, s_last)
