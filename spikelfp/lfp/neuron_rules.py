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

import torch

from .. import _native as native
from ..allocator import empty_large_like
from ..neurons.alif import ALIF, ALIFParameters, ALIFState, alif_update
from ..neurons.base import StepBuffers, broadcasts_to
from ..neurons.cuba import CubaLIF, CubaLIFParameters, CubaLIFState, cuba_update
from ..neurons.li import LI, LIParameters, LIState, li_update
from ..neurons.lif import LIF, LIFParameters, LIFState, lif_reset, lif_update
from ..neurons.rlif import RLIF, RLIFState, rlif_update
from ._tensor import sum_to

__all__ = ["LIFRule", "LIRule", "CubaLIFRule", "ALIFRule", "RLIFRule", "membrane_backward"]


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


def _lif_fast_ok(z, v0, beta, threshold) -> bool:
    """Whether the preallocated, in-place LIF loops apply (the ordinary case)."""
    step = z.shape[1:]
    if v0.shape != step or not z.is_contiguous():
        return False
    for p in (v0, beta, threshold):
        if p.dtype != z.dtype or p.device != z.device:
            return False
    return broadcasts_to(tuple(beta.shape), tuple(step)) and broadcasts_to(
        tuple(threshold.shape), tuple(step)
    )


def _lif_forward_fast(z, v0, beta, threshold, reset, reset_delay, readout, keep_mem):
    """The LIF recursion written into preallocated tensors, in place.

    Returns ``(out, U)``. With ``keep_mem`` (the backward's replay), ``U[0] = v0`` and
    ``U[t+1]`` is the membrane after step ``t`` (``U[:-1]`` are the ``U_{t-1}`` of the rule) and
    ``out`` is ``None`` (the outputs go to a rolling buffer); otherwise only two rolling
    membrane steps are kept, ``U[-1]`` is the final membrane and ``out`` holds all outputs.
    Each step is the neurons' own kernel (:func:`~spikelfp.neurons.lif_update`, or
    :func:`~spikelfp.neurons.li.li_update` for the readout) writing into these buffers, so the
    results are those of the out-of-place kernel, bit for bit.
    """
    steps = z.shape[0]
    mem = empty_large_like(z, ((steps + 1) if keep_mem else 2,) + tuple(z.shape[1:]))
    mem[0].copy_(v0)
    if readout:
        if keep_mem:
            return None, _li_replay(z, mem, beta)
        out = empty_large_like(z)
        p = LIParameters(beta)
        for t in range(steps):
            vp = li_update(z[t], mem[t % 2], p, out=mem[(t + 1) % 2])  # U_t = β U_{t-1} + Z_t
            out[t].copy_(vp)
        return out, mem[steps % 2 : steps % 2 + 1]
    out = _Ring(z.new_empty((2,) + tuple(z.shape[1:]))) if keep_mem else empty_large_like(z)
    scratch = None if reset == "none" else torch.empty_like(v0)  # the reset mask
    p = LIFParameters(beta, threshold, reset, reset_delay)
    for t in range(steps):
        if keep_mem:
            v, vp = mem[t], mem[t + 1]
        else:
            v, vp = mem[t % 2], mem[(t + 1) % 2]
        lif_update(z[t], v, p, out=StepBuffers(vp, out[t], scratch))
    if keep_mem:
        return None, mem
    return out, mem[steps % 2 : steps % 2 + 1]


class _Ring:
    """``ring[t]`` -> ``buffer[t % 2]``: the outputs of a replay, of which only the last is used."""

    def __init__(self, buffer):
        self.buffer = buffer

    def __getitem__(self, t):
        return self.buffer[t % 2]


def _li_replay(z, mem, beta):
    p = LIParameters(beta)
    for t in range(z.shape[0]):
        li_update(z[t], mem[t], p, out=mem[t + 1])
    return mem


class _LIFLFP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, v0, beta, threshold, reset, reset_delay, epsilon, readout):
        ctx.epsilon = epsilon
        ctx.mode = (reset, reset_delay, readout)
        ctx.fast = _lif_fast_ok(z, v0, beta, threshold)
        ctx.native = ctx.fast and native.usable(z, v0, beta, threshold)
        if ctx.fast:
            # Only Z and U_0 are kept: the backward replays the (cheap, exact) forward
            # recursion for U_{t-1} and recomputes D_t, so the forward holds no full-length
            # membrane or denominator (the memory of a LIF layer is that of its input).
            ctx.save_for_backward(z, v0, beta, threshold)
            if ctx.native:  # fused kernels (spikelfp._native): the same arithmetic, one pass
                return native.lif_forward(z, v0, beta, threshold, reset, reset_delay, readout)
            out, mem = _lif_forward_fast(
                z, v0, beta, threshold, reset, reset_delay, readout, keep_mem=False
            )
            return out, mem[-1].clone()
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
        if ctx.fast:
            z, v0, beta, threshold = ctx.saved_tensors
            keep_n = need[2] or need[3]
            if ctx.native:
                rho, q0, n, u_prev = native.lif_backward(
                    r, g_last, z, v0, beta, threshold, ctx.epsilon, *ctx.mode, keep_n
                )
            else:
                _, mem = _lif_forward_fast(z, v0, beta, threshold, *ctx.mode, keep_mem=True)
                u_prev = mem[:-1]
                rho, n, q0 = _lif_backward_fast(
                    r,
                    g_last,
                    z,
                    u_prev,
                    beta,
                    ctx.epsilon,
                    keep_n=keep_n,
                    rho_out=None if keep_n else u_prev,
                )
        else:
            z, u_prev, inv_d, beta, threshold = ctx.saved_tensors
            n, q0 = membrane_backward(r, g_last, u_prev, inv_d, beta)
            rho = n * z if need[0] else None
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[2] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[3] else None
        return rho if need[0] else None, q0, g_beta, g_theta, None, None, None, None


def _lif_backward_fast(r, q, z, u_prev, beta, epsilon, keep_n, rho_out=None):
    """:func:`membrane_backward` fused with ``D_t`` and ``ρ_t = n_t Z_t``, one step at a time.

    Returns ``(ρ, n or None, q_0)``; ``n`` is only kept in full when ``keep_n``. ``ρ`` is
    written into ``rho_out`` if given, which may be ``u_prev`` itself (step ``t`` of
    ``u_prev`` is not read again once ``ρ_t`` is written). The arithmetic is the same as the
    forward's (``D_t``) and :func:`membrane_backward`'s.
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


class LIFRule:
    r"""LFP rule for :class:`~spikelfp.neurons.LIF` and :class:`~spikelfp.neurons.IF`.

    >>> from spikelfp.neurons import LIF
    >>> z = torch.rand(5, 2, 3, requires_grad=True)
    >>> s, state = LIFRule().forward(LIF(beta=0.9, threshold=0.5), z)
    >>> s.backward(torch.ones_like(s)); z.grad.shape   # reward on the synaptic input
    torch.Size([5, 2, 3])
    """

    def __init__(self, epsilon: float = 1e-6):
        self.epsilon = float(epsilon)

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

    def __repr__(self) -> str:
        return f"{type(self).__name__}(epsilon={self.epsilon})"


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
        n = torch.empty_like(r)
        m = torch.empty_like(r)
        q, p = g_v, g_i
        for t in range(r.shape[0] - 1, -1, -1):
            a = r[t] + q
            n[t] = a * inv_dv[t]
            q = beta * u_prev[t] * n[t]
            rho_i = i_all[t] * n[t] + p
            m[t] = rho_i * inv_di[t]
            p = alpha * i_prev[t] * m[t]
        need = ctx.needs_input_grad
        g_alpha = -(alpha.abs() * sum_to(i_prev * m, alpha.shape)) if need[3] else None
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[4] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[5] else None
        return m * z, p, q, g_alpha, g_beta, g_theta, None, None, None


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
