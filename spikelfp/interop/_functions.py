r"""LFP autograd Functions that reproduce snntorch's and norse's neuron updates exactly.

spikelfp's own rules (:mod:`spikelfp.lfp.neuron_rules`) compute spikelfp's neuron equations.
snntorch and norse write theirs differently (where the reset acts, which state is stored, in
which order the floating-point operations run), so the Functions here run **each library's
forward, operation for operation** (the spikes are bit-identical to the library's own module)
and put the same LFP decomposition on it as spikelfp (``docs/lfp_rules.md``). Every Function
takes a whole time-first sequence ``(T, B, ...)`` and an initial state, returns the final state,
accepts reward on that final state and hands reward to the initial state; a per-step loop that
calls it with ``T = 1`` and passes the state on therefore reproduces the sequence call through
autograd (``tests/test_interop_rules.py`` checks both against each other and against spikelfp's
rules on the equivalent spikelfp neuron).

The decomposition, going backwards ``t = T..1`` (``ε`` the neuron's stabiliser)::

    a_t     = r_t + g_t                      reward on the spike + reward on the state U_t
    D_t     = |P_t| + |V_t - P_t| + ε        P_t: what the previous membrane contributes before
                                             the leak, V_t: the membrane before its reset
    n_t     = a_t / D_t
    → U_{t-1}: β P_t n_t                     (g_{t-1})
    → input  : c_t n_t                       c_t: the input's contribution to V_t

Resets, thresholds and leak potentials are constants. The library-specific parts are what
``P_t``, ``V_t`` and ``c_t`` are; they are spelled out on each Function.
"""

from __future__ import annotations

import torch

from ..lfp._tensor import sum_to
from ..lfp.neuron_rules import membrane_backward

__all__ = ["SnnLeakyLFP", "SnnSynapticLFP", "NorseLFP", "OneToOneLFP"]

RESET_CODES = {"subtract": 0, "zero": 1, "none": 2}


def _h(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The libraries' forward spike ``1[x > 0]`` (their surrogates only change the backward)."""
    return (x > 0).to(dtype)


def _grad_to(g: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if g is None:
        return None
    return sum_to(g, like.shape).to(like.dtype)


class SnnLeakyLFP(torch.autograd.Function):
    r"""snntorch ``Leaky`` and ``RLeaky`` (snntorch 1.0), with their LFP rule.

    Forward per step (``M``: snntorch's ``mem``; ``R_t = 1[M_{t-1} > θ]``; ``rec`` the
    recurrent input of ``RLeaky``, ``0`` for ``Leaky``)::

        Leaky,  reset="zero":   P = (1 - R) M_{t-1};   B = β P + Z
        otherwise:              P = M_{t-1};           B = β P + Z (+ rec)
        M' = B - R θ  (subtract) | B - R B  (RLeaky zero) | B
        S  = 1[M' > θ];  output g·S                     g: graded_spikes_factor
        reset_delay=False:  M = M' - (S - R) θ  (subtract) | M' - (S - R) M'  (zero) | M'
        reset_delay=True:   M = M'

    LFP: ``V = B``, ``c = Z`` (and ``rec`` for the recurrent input, which then goes through
    the recurrent synapse's own rule). Learnable ``β`` gets ``F(β) = |β| Σ P n``, ``θ`` gets
    ``F(θ) = -|θ| Σ n``, ``g`` gets ``F(g) = sign(g) Σ r S`` (the ε-rule of ``y = g S``).

    For ``reset="subtract", reset_delay=True`` this is exactly lfprop's rule; for ``Leaky``
    with ``reset="zero", reset_delay=True`` it is spikelfp's rule for
    ``LIF(reset="zero", reset_delay=False)`` (the two networks spike identically).
    """

    @staticmethod
    def forward(ctx, z, z_rec, v0, beta, threshold, gain, reset, reset_delay, zero_prev, epsilon):
        dtype = torch.promote_types(z.dtype, v0.dtype)
        v = v0.to(dtype).expand(z.shape[1:])
        prevs, dens, outs, spikes, resets = [], [], [], [], []
        for t in range(z.shape[0]):
            r = _h(v - threshold, dtype)
            if zero_prev:
                p = (1 - r) * v
                b = beta * p + z[t]
            else:
                p = v
                b = beta * v + z[t]
                if z_rec is not None:
                    b = b + z_rec[t]
            if reset == "subtract":
                m1 = b - r * threshold
            elif reset == "zero" and not zero_prev:
                m1 = b - r * b
            else:
                m1 = b
            s = _h(m1 - threshold, dtype)
            if reset_delay:
                v = m1
            else:
                d = s - r
                if reset == "subtract":
                    v = m1 - d * threshold
                elif reset == "zero":
                    v = m1 - d * m1
                else:
                    v = m1
            prevs.append(p)
            dens.append((p.abs() + (b - p).abs()).add_(epsilon))
            spikes.append(s)
            outs.append(s * gain)
            resets.append(r)
        prev = torch.stack(prevs)
        spk = torch.stack(spikes)
        ctx.save_for_backward(
            z, z_rec, prev, torch.stack(dens).reciprocal_(), beta, threshold, gain, spk, v0
        )
        ctx.mark_non_differentiable(resets[-1])
        return torch.stack(outs), v.clone() if v is v0 else v, resets[-1]

    @staticmethod
    def backward(ctx, r, g_last, _g_reset):
        z, z_rec, prev, inv_d, beta, threshold, gain, spk, v0 = ctx.saved_tensors
        n, q0 = membrane_backward(r, g_last, prev, inv_d, beta)
        need = ctx.needs_input_grad
        g_z = n * z if need[0] else None
        g_rec = n * z_rec if z_rec is not None and need[1] else None
        g_v0 = _grad_to(q0, v0) if need[2] else None
        g_beta = -(beta.abs() * sum_to(prev * n, beta.shape)) if need[3] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[4] else None
        g_gain = -(torch.sign(gain) * sum_to(r * spk, gain.shape)) if need[5] else None
        return g_z, g_rec, g_v0, g_beta, g_theta, g_gain, None, None, None, None


class SnnSynapticLFP(torch.autograd.Function):
    r"""snntorch ``Synaptic`` (current-based LIF), with spikelfp's CubaLIF rule.

    Forward per step (``R_t = 1[M_{t-1} > θ]``)::

        I  = α I_{t-1} + Z;     B = β M_{t-1} + I
        M' = B - R θ  (subtract) | B - B R  (zero) | B
        S  = 1[M' > θ], output g·S, then the immediate reset as for ``Leaky``.

    LFP (spikelfp's CubaLIF rule, exactly): ``P = M_{t-1}``, ``V = B``; the current receives
    ``ρ^I_t = I_t n_t + p_t`` and is decomposed with ``D^I_t = |I_{t-1}| + |I_t - I_{t-1}| + ε``,
    ``m_t = ρ^I_t / D^I_t``, ``p_{t-1} = α I_{t-1} m_t``; the input receives ``m_t Z_t``.
    """

    @staticmethod
    def forward(ctx, z, i0, v0, alpha, beta, threshold, gain, reset, reset_delay, epsilon):
        dtype = torch.promote_types(torch.promote_types(z.dtype, v0.dtype), i0.dtype)
        shape = z.shape[1:]
        i = i0.to(dtype).expand(shape)
        v = v0.to(dtype).expand(shape)
        i_prev, i_all, u_prev, dv, di, outs, spikes, resets = ([] for _ in range(8))
        for t in range(z.shape[0]):
            r = _h(v - threshold, dtype)
            i_new = alpha * i + z[t]
            b = beta * v + i_new
            if reset == "subtract":
                m1 = b - r * threshold
            elif reset == "zero":
                m1 = b - b * r
            else:
                m1 = b
            s = _h(m1 - threshold, dtype)
            i_prev.append(i)
            i_all.append(i_new)
            u_prev.append(v)
            dv.append((v.abs() + (b - v).abs()).add_(epsilon))
            di.append((i.abs() + (i_new - i).abs()).add_(epsilon))
            if reset_delay:
                v = m1
            else:
                d = s - r
                v = (
                    m1 - d * threshold
                    if reset == "subtract"
                    else (m1 - d * m1 if reset == "zero" else m1)
                )
            i = i_new
            spikes.append(s)
            outs.append(s * gain)
            resets.append(r)
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
            gain,
            st(spikes),
            i0,
            v0,
        )
        ctx.mark_non_differentiable(resets[-1])
        return st(outs), i.clone() if i is i0 else i, v.clone() if v is v0 else v, resets[-1]

    @staticmethod
    def backward(ctx, r, g_i, g_v, _g_reset):
        (z, i_prev, i_all, u_prev, inv_dv, inv_di, alpha, beta, threshold, gain, spk, i0, v0) = (
            ctx.saved_tensors
        )
        n = torch.empty_like(r)
        m = torch.empty_like(r)
        q, p = g_v, g_i
        for t in range(r.shape[0] - 1, -1, -1):
            a = r[t] + q
            n[t] = a * inv_dv[t]
            q = beta * u_prev[t] * n[t]
            m[t] = (i_all[t] * n[t] + p) * inv_di[t]
            p = alpha * i_prev[t] * m[t]
        need = ctx.needs_input_grad
        g_alpha = -(alpha.abs() * sum_to(i_prev * m, alpha.shape)) if need[3] else None
        g_beta = -(beta.abs() * sum_to(u_prev * n, beta.shape)) if need[4] else None
        g_theta = threshold.abs() * sum_to(n, threshold.shape) if need[5] else None
        g_gain = -(torch.sign(gain) * sum_to(r * spk, gain.shape)) if need[6] else None
        return (
            m * z if need[0] else None,
            _grad_to(p, i0) if need[1] else None,
            _grad_to(q, v0) if need[2] else None,
            g_alpha,
            g_beta,
            g_theta,
            g_gain,
            None,
            None,
            None,
        )


class NorseLFP(torch.autograd.Function):
    r"""norse's feed-forward neurons (norse 1.x), with the LFP rule in leak-relative coordinates.

    ``kind`` selects the update (``a_m = dt·τ_mem⁻¹``, ``a_s = dt·τ_syn⁻¹``, exactly in norse's
    operation order):

    * ``"lif"`` (``LIFCell``/``LIF``): ``I = i + Z``; ``v' = v + a_m((v_leak - v) + I)``;
      ``i ← I - a_s I``; ``S = 1[v' > v_th]``; ``v ← (1 - S) v' + S v_reset``.
    * ``"box"`` (``LIFBoxCell``): ``v' = v + a_m((Z + v_leak) - v)``; ``S = 1[v' > v_th]``;
      ``v ← (1 - S) v' + S v_reset`` (``reset="value"``) or ``(1 - S) v' + S (v' - v_th)``
      (``reset="subtract"``).
    * ``"li"`` (``LICell``/``LI``): like ``"lif"`` without spikes; the output is ``v'``.
    * ``"libox"`` (``LIBoxCell``): ``v' = v + a_m((v_leak - v) + Z)``; the output is ``v'``.

    LFP, in coordinates relative to the resting potential ``u = v - v_leak`` (so that the leak
    towards ``v_leak`` is no contribution of anyone and the rule does not depend on where
    the voltage scale puts its zero): ``P = u_{t-1}``, ``V = u'``, ``β = 1 - a_m``,
    ``D = |u_{t-1}| + |u' - u_{t-1}| + ε``. Reward on the stored membrane passes to ``v'``
    only where it was not reset to the constant ``v_reset`` (``(1 - S)``; a subtractive reset
    is an additive constant and passes it all). The input's contribution is ``a_m Z``
    (box kinds) or, for the current kinds, the current ``I`` contributes ``a_m I`` and is
    decomposed like spikelfp's CubaLIF current: ``ρ^I = a_m I n + p``,
    ``D^I = |I_{t-1}| + |I - I_{t-1}| + ε`` with the undecayed ``I_{t-1} = i/(1 - a_s)``,
    ``m = ρ^I / D^I``, ``p_{t-1} = i m``, input ``m Z``. With ``v_leak = v_reset = 0`` this is
    spikelfp's CubaLIF (LIF for ``"box"``, LI for ``"libox"``) rule on a membrane scaled by
    ``a_m`` (identical feedback up to where ``ε`` enters).
    """

    @staticmethod
    def forward(
        ctx, z, v0, i0, tau_syn_inv, tau_mem_inv, v_leak, v_th, v_reset, dt, kind, reset, epsilon
    ):
        current = kind in ("lif", "li")
        spiking = kind in ("lif", "box")
        dtype = torch.promote_types(z.dtype, v0.dtype)
        if current:
            dtype = torch.promote_types(dtype, i0.dtype)
        shape = z.shape[1:]
        v = v0.to(dtype).expand(shape)
        i = i0.to(dtype).expand(shape) if current else None
        a_m = dt * tau_mem_inv
        outs, gates, u_prev, dens = [], [], [], []
        i_prev, i_all = [], []
        for t in range(z.shape[0]):
            if current:
                i_new = i + z[t]
                v_dec = v + dt * tau_mem_inv * ((v_leak - v) + i_new)
                i_prev.append(i)
                i_all.append(i_new)
                i = i_new + -dt * tau_syn_inv * i_new
            elif kind == "box":
                v_dec = v + dt * tau_mem_inv * (z[t] + v_leak - v)
            else:
                v_dec = v + dt * tau_mem_inv * ((v_leak - v) + z[t])
            u = v - v_leak
            u_prev.append(u)
            dens.append((u.abs() + (v_dec - v_leak - u).abs()).add_(epsilon))
            if spiking:
                s = _h(v_dec - v_th, dtype)
                if reset == "subtract":
                    v = (1 - s) * v_dec + s * (v_dec - v_th)
                    gates.append(torch.ones_like(s))
                else:
                    v = (1 - s) * v_dec + s * v_reset
                    gates.append(1 - s)
                outs.append(s)
            else:
                v = v_dec
                outs.append(v_dec)
        st = torch.stack

        def tensor(x):  # norse parameters may be plain floats; the backward needs tensors
            return (
                x
                if isinstance(x, torch.Tensor)
                else torch.as_tensor(x, dtype=dtype, device=z.device)
            )

        a_m = tensor(a_m)
        beta = 1 - a_m
        alpha = tensor(1 + -dt * tau_syn_inv)
        saved = [z, st(u_prev), st(dens).reciprocal_(), beta, a_m, v0]
        if current:
            ip = st(i_prev)
            # The undecayed previous current I_{t-1} = i_{t-1} / alpha (0 where alpha = 0).
            safe = torch.where(alpha == 0, torch.ones_like(alpha), alpha)
            i_und = torch.where(alpha == 0, torch.zeros_like(ip), ip / safe)
            ia = st(i_all)
            inv_di = (i_und.abs() + (ia - i_und).abs()).add_(epsilon).reciprocal_()
            saved += [ip, ia, inv_di, i0]
        ctx.save_for_backward(*saved)
        ctx.current, ctx.spiking = current, spiking
        ctx.gates = st(gates) if spiking else None
        out = st(outs)
        v_last = v.clone() if v is v0 else v
        if current:
            return out, v_last, i.clone() if i is i0 else i
        return out, v_last, torch.zeros((), dtype=dtype, device=z.device)

    @staticmethod
    def backward(ctx, r, g_v, g_i):
        saved = ctx.saved_tensors
        z, u_prev, inv_d, beta, a_m, v0 = saved[:6]
        gates = ctx.gates
        n = torch.empty_like(r)
        q = g_v
        for t in range(r.shape[0] - 1, -1, -1):
            a = r[t] + (q * gates[t] if gates is not None else q)
            n[t] = a * inv_d[t]
            q = beta * u_prev[t] * n[t]
        need = ctx.needs_input_grad
        g_z = g_i0 = None
        if ctx.current:
            ip, ia, inv_di, i0 = saved[6:]
            m = torch.empty_like(r)
            p = g_i
            for t in range(r.shape[0] - 1, -1, -1):
                m[t] = (a_m * ia[t] * n[t] + p) * inv_di[t]
                p = ip[t] * m[t]
            g_z = m * z
            g_i0 = _grad_to(p, i0) if need[2] else None
        else:
            g_z = a_m * z * n
        return (
            g_z if need[0] else None,
            _grad_to(q, v0) if need[1] else None,
            g_i0,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


class OneToOneLFP(torch.autograd.Function):
    r"""ε-rule (ε = 0) of snntorch's one-to-one recurrent synapse ``y = V ⊙ s``.

    ``n = ρ / y`` (0 where ``y = 0``); the spikes receive ``s V n`` and ``V`` receives
    ``F(V) = |V| Σ s n``.
    """

    @staticmethod
    def forward(ctx, s, weight):
        y = s * weight
        ctx.save_for_backward(s, weight, y)
        return y

    @staticmethod
    def backward(ctx, rho):
        s, weight, y = ctx.saved_tensors
        safe = torch.where(y == 0, torch.ones_like(y), y)
        n = torch.where(y == 0, torch.zeros_like(rho), rho / safe)
        need = ctx.needs_input_grad
        g_s = s * weight * n if need[0] else None
        g_w = -(weight.abs() * sum_to(s * n, weight.shape)) if need[1] else None
        return g_s, g_w
