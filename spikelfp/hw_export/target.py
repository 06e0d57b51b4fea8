r"""Train for the chip: the training forward pass is the target's integer network.

LFP needs no derivative of the forward pass, so the forward can be the exact integer network
that a chip runs — integer weights, integer thresholds, the chip's integer decay and saturating
states — while the LFP feedback updates float *shadow* weights. :class:`TargetTraining` does it:

* before each forward it quantises the shadow model with :func:`~spikelfp.hw_export.quantize`
  (the very function :func:`~spikelfp.hw_export.export` uses, with ``scale_method="max"``: no
  weight is clipped), writes the integer weights and biases into the synapses' parameters for
  the duration of the step (:meth:`TargetTraining.integer_forward`), and runs the neurons with
  :class:`IntegerLIFRule` (:class:`IntegerRLIFRule`, :class:`IntegerCubaLIFRule`), which
  computes :class:`~spikelfp.hw_export.QuantizedNeuron`'s integer dynamics;
* the spikes trained on are therefore the integer simulator's spikes, and exporting the shadow
  model to the same target reproduces the trained network bit for bit;
* the LFP feedback is scale-free, so the feedback computed in integer units is the feedback of
  the shadow weights: with a row scale :math:`s` (float :math:`= s \cdot` integer), the
  membrane and the denominators :math:`D_t` are divided by :math:`s`, so
  :math:`n_t = \tilde r_t / D_t` is multiplied by :math:`s`, and
  :math:`F(w) = |w|\, x\, n` (:math:`|w|/s \cdot x \cdot s n`), :math:`\rho_t = n_t Z_t`,
  :math:`F(\beta) = -|\beta| \sum U_{t-1} n_t` and :math:`F(\theta) = |\theta| \sum n_t`
  (with the integer threshold :math:`\theta/s`) are unchanged.

:func:`adapt_spec` picks the zoo model's options the target allows (neuron model, reset,
bias, sum pooling), :func:`linear_as_conv` expresses dense layers as full-kernel convolutions
for convolution-only targets (Speck), and :func:`structural_violations` lists what the target
cannot run at all — before any training.

>>> from torch import nn
>>> from spikelfp import IF, Sequential
>>> from spikelfp.lfp import lfp_step, rate_coded_reward
>>> torch.manual_seed(0) and None
>>> net = Sequential(nn.Linear(12, 8, bias=False), IF(threshold=1.0),
...                  nn.Linear(8, 3, bias=False), IF(threshold=1.0))
>>> tt = TargetTraining(net, "speck", input_shape=(12,))
>>> x = (torch.rand(10, 4, 12) < 0.3).float()
>>> with tt.integer_forward() as q:
...     res = lfp_step(net, x, torch.tensor([0, 1, 2, 0]), rate_coded_reward,
...                    composite=tt.composite())
>>> bool(torch.equal(res.output.double(), q(x)[0])), net[0].weight.grad is not None
(True, True)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from ..lfp import default_composite
from ..lfp.neuron_rules import current_backward, membrane_backward, recurrent_backward
from ..lfp.rules import nonnegative
from ..neurons import IF, LIF, RLIF, CubaLIF
from ..neurons.base import check_time_first
from ..neurons.cuba import CubaLIFParameters, CubaLIFState, cuba_update
from ..neurons.lif import LIFState, lif_update
from ..neurons.rlif import RLIFState, rlif_update
from ..sequential import Sequential
from ._decay import quantize_decay
from ._layers import SYNAPSE_TYPES, SumPool2d
from ._qneuron import ChipState
from .checks import check_model
from .profiles import PROFILES, HardwareProfile, get_profile
from .quantize import QuantizedNetwork, QuantizedNeuron, quantize

__all__ = [
    "TargetTraining",
    "IntegerLIFRule",
    "adapt_spec",
    "linear_as_conv",
    "structural_violations",
]

F64 = torch.float64


def adapt_spec(spec, profile: str | HardwareProfile):
    r"""A copy of a zoo :class:`~spikelfp.training.models.ModelSpec` with the options the
    target allows, and the list of what was changed (human-readable).

    The neuron model (``"if"`` when the target has no leaky neurons, ``"lif"`` when it has no
    integrate-and-fire), the reset (the target's first), no bias when the target has none,
    sum pooling (exact in integers), no batch norm (its folding would change the integer
    weights between training and export), no dropout (its kept spikes, scaled by
    :math:`1/(1-p)`, are not integers), ``reset_delay`` only where the target has it, and a
    decay the target represents exactly (the nearest :math:`\beta_q`, e.g. :math:`1 - d/4096`).

    Args:
        spec: the zoo model's spec.
        profile: target name or :class:`HardwareProfile`; stored in ``spec.extra["target"]``.

    Returns:
        ``(new_spec, changes)``: the adapted copy and ``["neuron=if", ...]``.
    """
    prof = get_profile(profile)
    changes: dict = {}
    if spec.neuron == "lif" and "LIF" not in prof.neuron_types and "IF" in prof.neuron_types:
        changes["neuron"] = "if"
    if spec.neuron == "if" and "IF" not in prof.neuron_types and "LIF" in prof.neuron_types:
        changes["neuron"] = "lif"
    if spec.reset not in prof.resets:
        changes["reset"] = prof.resets[0]
    if spec.reset_delay and not prof.reset_delay:
        changes["reset_delay"] = False
    if spec.bias and not prof.allow_bias:
        changes["bias"] = False
    if spec.pool != "sum":
        changes["pool"] = "sum"
    if spec.batch_norm:
        changes["batch_norm"] = False
    if spec.dropout > 0:  # spikes scaled by 1/(1-p) are no integer input
        changes["dropout"] = 0.0
    if changes.get("neuron", spec.neuron) == "lif" and prof.decay in ("shift", "mult"):
        _, bq = quantize_decay(
            torch.tensor([float(spec.beta)], dtype=F64).numpy(),
            prof.decay,
            prof.decay_bits,
            prof.max_shift,
        )
        if float(bq[0]) != float(spec.beta):
            changes["beta"] = float(bq[0])
    extra = dict(spec.extra)
    extra["target"] = dataclasses.asdict(prof)
    new = dataclasses.replace(spec, extra=extra, **changes)
    return new, [f"{k}={v}" for k, v in changes.items()]


def target_of(spec) -> HardwareProfile | None:
    """The profile a spec was adapted to (:func:`adapt_spec`), or ``None``."""
    d = (getattr(spec, "extra", None) or {}).get("target")
    if d is None:
        return None
    d = dict(d)
    known = {f.name for f in dataclasses.fields(HardwareProfile)}
    builtin = PROFILES.get(str(d.get("name", "")).lower())
    if builtin is not None:
        # a spec saved before a field existed: the built-in profile's value of that field
        d = {**dataclasses.asdict(builtin), **d}
    d = {k: v for k, v in d.items() if k in known}
    for k in ("weight_exponent_range", "resets", "neuron_types", "layer_types"):
        if isinstance(d.get(k), list):
            d[k] = tuple(d[k])
    return HardwareProfile(**d)


def linear_as_conv(model: Sequential, input_shape: Sequence[int]) -> Sequential:
    r"""``model`` with every ``Flatten → Linear`` and ``Linear`` expressed as ``Conv2d`` (a
    kernel the size of its input), the ``Flatten`` moved to the end: the same function, in the
    layer types a convolution-only target (Speck) has. Weights are copied (reshaped):
    :math:`W^{conv}_{o,c,h,w} = W_{o,\,(c,h,w)}`.

    Args:
        model: a :class:`spikelfp.Sequential` (not modified).
        input_shape: the per-sample input shape ``(C, H, W)``.

    Returns:
        a new :class:`spikelfp.Sequential` without ``Linear`` layers.
    """
    shape = tuple(input_shape)
    layers: list[nn.Module] = []
    flat_pending = False
    for layer in model:
        if isinstance(layer, nn.Flatten):
            flat_pending = True
            continue
        if isinstance(layer, nn.Linear):
            c, h, w = shape if len(shape) == 3 else (shape[0], 1, 1)
            conv = nn.Conv2d(c, layer.out_features, (h, w), bias=layer.bias is not None)
            with torch.no_grad():
                conv.weight.copy_(layer.weight.reshape(layer.out_features, c, h, w))
                if layer.bias is not None:
                    conv.bias.copy_(layer.bias)
            layers.append(conv)
            shape = (layer.out_features, 1, 1)
            flat_pending = True
            continue
        layers.append(layer)
        if isinstance(layer, (nn.Conv2d, nn.AvgPool2d, SumPool2d)):
            with torch.no_grad():
                shape = tuple(layer(torch.zeros(1, *shape)).shape[1:])
    if flat_pending:
        layers.append(nn.Flatten())
    return Sequential(*layers)


def structural_violations(model: Sequential, profile, input_shape, bits=None) -> list:
    """The violations of ``profile`` that no training can remove (layer and neuron types,
    resets, sizes, weight bits): what ``train --target`` refuses before training."""
    prof = get_profile(profile)
    report = check_model(model, prof, bits=bits, input_shape=input_shape)
    weight_dependent = {"fan-in", "fan-out", "threshold", "decay precision", "shared decay"}
    return [v for v in report.violations if v.constraint not in weight_dependent]


class _IntegerLIF(torch.autograd.Function):
    """Forward: :class:`QuantizedNeuron`'s integer LIF/IF; backward: the LFP membrane rule."""

    @staticmethod
    def forward(ctx, z, v0, beta, threshold, qn, epsilon):
        zd = z.detach().to(F64)
        v = v0.to(F64)
        th = qn.threshold
        u_prev, dens, outs = [], [], []
        ctx.delay = qn.chip and qn.input_delay
        if qn.chip:
            # the chip's neuron (QuantizedNeuron.chip_step: Xylo's current stage, multi-spike
            # steps, readout delay); the membrane's feedback goes to the same step's input
            zd = qn.delayed(zd)
            state = ChipState(torch.zeros_like(v), v, torch.zeros_like(v))
            for z_t in zd.unbind(0):
                s, state, v_pre, u = qn.chip_step(z_t, state)
                u_prev.append(u)
                dens.append((u.abs() + (v_pre - u).abs()).add_(epsilon))
                outs.append(s)
            v = state.v
        else:
            p = qn._lif_parameters()
            for z_t in zd.unbind(0):
                # the LIF kernel of spikelfp.neurons with the integer neuron's hooks
                s, new, v_pre = lif_update(z_t, v, p, decay=qn._decay, saturate=qn._sat)
                u_prev.append(v)
                dens.append((v.abs() + (v_pre - v).abs()).add_(epsilon))
                outs.append(s)
                v = new
        u_prev_t = torch.stack(u_prev)
        inv_d = torch.stack(dens).reciprocal_()
        ctx.save_for_backward(zd, u_prev_t, inv_d, beta, threshold)
        ctx.th_int = th
        return torch.stack(outs).to(z.dtype), v.to(z.dtype)

    @staticmethod
    def backward(ctx, r, g_last):
        z, u_prev, inv_d, beta, threshold = ctx.saved_tensors
        b = beta.detach().to(F64)
        q = torch.zeros_like(z[0]) if g_last is None else g_last.to(F64).expand_as(z[0])
        n, q0 = membrane_backward(r.to(F64), q, u_prev, inv_d, b)
        need = ctx.needs_input_grad
        rho = _undelay(n * z, ctx.delay).to(r.dtype) if need[0] else None
        g_beta, g_theta = _membrane_feedback(n, u_prev, b, ctx.th_int, beta, threshold, need[2:4])
        return rho, q0.to(r.dtype), g_beta, g_theta, None, None


def _undelay(rho: torch.Tensor, delay: bool) -> torch.Tensor:
    """Feedback of a delayed input (step ``t`` saw ``z_{t-1}``) moved back to ``z``'s steps."""
    if not delay:
        return rho
    return torch.cat([rho[1:], torch.zeros_like(rho[:1])])


def _sum_to(t: torch.Tensor, shape) -> torch.Tensor:
    shape = tuple(shape)
    while t.dim() > len(shape):
        t = t.sum(0)
    for i, n in enumerate(shape):
        if n == 1 and t.shape[i] != 1:
            t = t.sum(i, keepdim=True)
    return t.reshape(shape)


def _membrane_feedback(n, u_prev, b, th_int, beta, threshold, need):
    """The feedback of the decay and the threshold, ``F(β) = -|β| Σ U_{t-1} n_t`` and
    ``F(θ) = |θ| Σ n_t`` (integer ``θ``: scale-free), each where ``need`` asks for it."""
    g_beta = g_theta = None
    if need[0]:
        g_beta = -(b.abs() * _sum_to(u_prev * n, beta.shape)).to(beta.dtype)
    if need[1]:
        th = th_int.abs().expand(n.shape[1:])
        g_theta = _sum_to(th * n, threshold.shape).to(threshold.dtype)
    return g_beta, g_theta


@dataclasses.dataclass(frozen=True, repr=False)
class IntegerLIFRule:
    r"""LFP rule for :class:`~spikelfp.LIF` / :class:`~spikelfp.IF` layers that runs the
    target's integer neuron (the :class:`QuantizedNeuron` that :class:`TargetTraining` made
    for the layer) in the forward pass and LFP's membrane rule in the backward pass:
    :math:`V_t = \mathrm{sat}(D(U_{t-1}) + Z_t)` with the target's integer decay :math:`D`,
    then :math:`D_t = |U_{t-1}| + |V_t - U_{t-1}| + \varepsilon`, :math:`n_t = \tilde r_t/D_t`,
    :math:`\rho_t = n_t Z_t` (see :func:`spikelfp.lfp.neuron_rules.membrane_backward`).

    With chip semantics (the ``xylo`` profile: :meth:`QuantizedNeuron.chip_step`) the forward
    is the chip's neuron: input through the synaptic current :math:`I_t`, several spikes per
    step, the output layer reading the previous step. The backward stays the membrane rule on
    that forward's :math:`U_{t-1}, V_t`, with three choices:

    * the membrane's feedback :math:`n_t` is assigned to the step's current :math:`I_t` (the
      input that reached the membrane) and passed unchanged to the same step's synaptic input:
      :math:`\rho_t = n_t Z_t`. This truncates the current: that :math:`Z_t` also reaches the
      membrane at later steps through :math:`I_{t+1}, I_{t+2}, \dots` is not decomposed;
    * spike counts (up to 31 per step) are the layer's output, so the reward is taken on
      counts;
    * under the readout delay (step :math:`t` integrates :math:`Z_{t-1}`) the feedback of
      step :math:`t` goes to :math:`Z_{t-1}` (the output layer's feedback moves one step back).

    Args:
        training: the :class:`TargetTraining` whose integer neurons to run.
        epsilon: the denominators' stabiliser :math:`\varepsilon` (>= 0).

    A frozen dataclass (:class:`~spikelfp.lfp.Rule`): equal when it runs the same
    :class:`TargetTraining` (compared by identity) with the same ``epsilon``.
    """

    training: TargetTraining
    epsilon: float = 1e-6

    def __post_init__(self):
        nonnegative(self, "epsilon", "1e-6")

    def forward(self, module: LIF, x: torch.Tensor, state: LIFState | None = None):
        check_time_first(x, type(module).__name__)
        qn = self.training.integer_neuron(module)
        v0 = torch.zeros(x.shape[1:], dtype=F64, device=x.device) if state is None else state.v
        s, v = _IntegerLIF.apply(x, v0, module.beta, module.threshold, qn, self.epsilon)
        return s, LIFState(v)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.training.profile.name!r})"


class _IntegerRLIF(torch.autograd.Function):
    """Forward: :class:`QuantizedNeuron`'s integer RLIF (integer recurrent weights); backward:
    the LFP rule of :class:`~spikelfp.neurons.RLIF` (reward through time, into the recurrent
    weights and to the previous step's spikes) on those integers."""

    @staticmethod
    def forward(ctx, z, v0, s0, w_rec, beta, qn, epsilon):
        zd = z.detach().to(F64)
        v, s = v0.to(F64), s0.to(F64)
        p, w_int = qn._lif_parameters(), qn.w_rec
        u_prev, dens, outs = [], [], []
        if qn.chip:
            # the chip's neuron (QuantizedNeuron.chip_step; the recurrent spike counts enter
            # the synaptic current with the input, and their feedback is the same step's)
            zd = qn.delayed(zd)
            state = ChipState(torch.zeros_like(v), v, s)
            for z_t in zd.unbind(0):
                s, state, v_pre, u = qn.chip_step(z_t, state)
                u_prev.append(u)
                dens.append((u.abs() + (v_pre - u).abs()).add_(epsilon))
                outs.append(s)
            v, s = state.v, state.s
        else:
            for z_t in zd.unbind(0):
                # the RLIF kernel of spikelfp.neurons with the integer neuron's hooks
                s, state, v_pre = rlif_update(
                    z_t, RLIFState(v, s), p, w_int, decay=qn._decay, saturate=qn._sat
                )
                u_prev.append(v)
                dens.append((v.abs() + (v_pre - v).abs()).add_(epsilon))
                outs.append(s)
                v = state.v
        spikes = torch.stack(outs)
        ctx.save_for_backward(zd, s0.to(F64), spikes, torch.stack(u_prev), torch.stack(dens))
        ctx.qn, ctx.beta = qn, beta.detach().to(F64)
        ctx.delay = qn.chip and qn.input_delay
        ctx.dtypes = (z.dtype, v0.dtype, s0.dtype, w_rec.dtype)
        return spikes.to(z.dtype), v.to(z.dtype), s.to(z.dtype)

    @staticmethod
    def backward(ctx, r, g_v, g_s):
        z, s0, spikes, u_prev, dens = ctx.saved_tensors
        w_int, beta = ctx.qn.w_rec, ctx.beta
        z_dt, v_dt, s_dt, w_dt = ctx.dtypes
        q = torch.zeros_like(z[0]) if g_v is None else g_v.to(F64).expand_as(z[0])
        e = torch.zeros_like(z[0]) if g_s is None else g_s.to(F64).expand_as(z[0])
        n, q, e, g_w = recurrent_backward(
            r.to(F64), q, e, u_prev, dens.reciprocal(), beta, spikes, s0, w_int
        )
        need = ctx.needs_input_grad
        g_w = g_w.to(w_dt) if need[3] else None
        return (
            _undelay(n * z, ctx.delay).to(z_dt) if need[0] else None,
            q.to(v_dt) if need[1] else None,
            e.to(s_dt) if need[2] else None,
            g_w,
            None,
            None,
            None,
        )


@dataclasses.dataclass(frozen=True, repr=False)
class IntegerRLIFRule(IntegerLIFRule):
    r"""LFP rule for :class:`~spikelfp.neurons.RLIF` layers that runs the target's integer
    recurrent neuron (integer input and recurrent weights, integer decay, saturating state) in
    the forward pass and the RLIF rule's backward (:math:`n_t = (\tilde r_t + e_t + q_t)/D_t`,
    :math:`q_{t-1} = \beta U_{t-1} n_t`, :math:`e_{t-1} = S_{t-1} \odot (W_{rec}^\top n_t)`)
    on those integers; the recurrent weights' feedback goes to their float shadows.

    Args:
        training: the :class:`TargetTraining` whose integer neurons to run.
        epsilon: the denominators' stabiliser :math:`\varepsilon`.
    """

    def forward(self, module: RLIF, x: torch.Tensor, state: RLIFState | None = None):
        check_time_first(x, "RLIF")
        qn = self.training.integer_neuron(module)
        st = module.initial_state(x) if state is None else state
        s, v, s_last = _IntegerRLIF.apply(
            x, st.v, st.s, module.recurrent_weight, module.beta, qn, self.epsilon
        )
        return s, RLIFState(v, s_last)


class _IntegerCuba(torch.autograd.Function):
    """Forward: :class:`QuantizedNeuron`'s integer CubaLIF; backward: the LFP rule of
    :class:`~spikelfp.neurons.CubaLIF` (:func:`~spikelfp.lfp.neuron_rules.current_backward`)
    on those integer currents and membranes."""

    @staticmethod
    def forward(ctx, z, i0, v0, alpha, beta, threshold, qn, epsilon):
        zd = z.detach().to(F64)
        i, v = i0.to(F64), v0.to(F64)
        i_prev, i_all, u_prev, dv, di, outs = [], [], [], [], [], []
        ctx.delay = qn.chip and qn.input_delay
        if qn.chip:
            # the chip's neuron (QuantizedNeuron.chip_step: the current stage with the
            # CubaLIF's current decay, multi-spike steps, readout delay)
            zd = qn.delayed(zd)
            state = ChipState(i, v, torch.zeros_like(v))
            step = qn.chip_step
        else:
            p = CubaLIFParameters(qn.i_decay, qn.v_decay, qn.threshold, qn.reset, qn.reset_delay)
            state = CubaLIFState(i, v)

            def step(z_t, st):
                # the CubaLIF kernel of spikelfp.neurons with the integer neuron's hooks
                s, new, v_pre = cuba_update(z_t, st, p, decay=qn._decay, saturate=qn._sat)
                return s, new, v_pre, st.v

        for z_t in zd.unbind(0):
            before = state.i
            s, state, v_pre, u = step(z_t, state)
            i_prev.append(before)
            i_all.append(state.i)
            u_prev.append(u)
            dv.append((u.abs() + (v_pre - u).abs()).add_(epsilon))
            di.append((before.abs() + (state.i - before).abs()).add_(epsilon))
            outs.append(s)
        st = torch.stack
        ctx.save_for_backward(
            zd,
            st(i_prev),
            st(i_all),
            st(u_prev),
            st(dv).reciprocal_(),
            st(di).reciprocal_(),
            alpha,
            beta,
            threshold,
        )
        ctx.th_int = qn.threshold
        ctx.dtypes = (z.dtype, i0.dtype, v0.dtype)
        return st(outs).to(z.dtype), state.i.to(z.dtype), state.v.to(z.dtype)

    @staticmethod
    def backward(ctx, r, g_i, g_v):
        z, i_prev, i_all, u_prev, inv_dv, inv_di, alpha, beta, threshold = ctx.saved_tensors
        a, b = alpha.detach().to(F64), beta.detach().to(F64)
        p = torch.zeros_like(z[0]) if g_i is None else g_i.to(F64).expand_as(z[0])
        q = torch.zeros_like(z[0]) if g_v is None else g_v.to(F64).expand_as(z[0])
        n, m, p, q = current_backward(r.to(F64), p, q, i_prev, i_all, u_prev, inv_dv, inv_di, a, b)
        need = ctx.needs_input_grad
        z_dt, i_dt, v_dt = ctx.dtypes
        g_alpha = None
        if need[3]:
            g_alpha = -(a.abs() * _sum_to(i_prev * m, alpha.shape)).to(alpha.dtype)
        g_beta, g_theta = _membrane_feedback(n, u_prev, b, ctx.th_int, beta, threshold, need[4:6])
        return (
            _undelay(m * z, ctx.delay).to(z_dt) if need[0] else None,
            p.to(i_dt) if need[1] else None,
            q.to(v_dt) if need[2] else None,
            g_alpha,
            g_beta,
            g_theta,
            None,
            None,
        )


@dataclasses.dataclass(frozen=True, repr=False)
class IntegerCubaLIFRule(IntegerLIFRule):
    r"""LFP rule for :class:`~spikelfp.neurons.CubaLIF` layers that runs the target's integer
    current-based neuron (:math:`I_t = \mathrm{sat}(D_i(I_{t-1}) + Z_t)`, then the integer LIF
    with input :math:`I_t`; on Xylo its current stage) in the forward pass and the CubaLIF
    rule's backward on those integers: :math:`n_t = (\tilde r_t + q_t)/D^V_t`,
    :math:`q_{t-1} = \beta U_{t-1} n_t`, :math:`m_t = (I_t n_t + p_t)/D^I_t`,
    :math:`p_{t-1} = \alpha I_{t-1} m_t`, input feedback :math:`m_t Z_t`, with
    :math:`D^V_t = |U_{t-1}| + |V_t - U_{t-1}| + \varepsilon` and
    :math:`D^I_t = |I_{t-1}| + |I_t - I_{t-1}| + \varepsilon`. As for LIF, the feedback is
    scale-free, so it updates the float shadow weights, :math:`\alpha`, :math:`\beta` and
    :math:`\theta` directly.

    Args:
        training: the :class:`TargetTraining` whose integer neurons to run.
        epsilon: the denominators' stabiliser :math:`\varepsilon`.
    """

    def forward(self, module: CubaLIF, x: torch.Tensor, state: CubaLIFState | None = None):
        check_time_first(x, "CubaLIF")
        qn = self.training.integer_neuron(module)
        st = module.initial_state(x) if state is None else state
        s, i, v = _IntegerCuba.apply(
            x, st.i, st.v, module.alpha, module.beta, module.threshold, qn, self.epsilon
        )
        return s, CubaLIFState(i, v)


class TargetTraining:
    """Train ``model`` as the integer network of ``profile`` (see the module docstring).

    Args:
        model: the float (shadow) :class:`spikelfp.Sequential`: Linear/Conv2d synapses,
            sum pooling, Flatten and LIF/IF neurons (no dropout or batch norm).
        profile: target name or :class:`HardwareProfile`.
        bits: weight bits (default: the profile's ``weight_bits``).
        input_shape: per-sample input shape (needed for convolutional models).
        scale_method: :func:`quantize`'s ``scale_method``; ``"max"`` (default) clips no weight.
    """

    def __init__(
        self,
        model: Sequential,
        profile: str | HardwareProfile,
        bits: int | None = None,
        input_shape: Sequence[int] | None = None,
        scale_method: str = "max",
    ):
        self.model = model
        self.profile = get_profile(profile)
        self.bits = int(self.profile.weight_bits if bits is None else bits)
        if self.bits > self.profile.weight_bits:
            raise ValueError(
                f"{self.profile.name} stores {self.profile.weight_bits}-bit weights; bits="
                f"{self.bits} is more"
            )
        self.input_shape = None if input_shape is None else tuple(input_shape)
        self.scale_method = scale_method
        for i, layer in enumerate(model):
            ok = isinstance(layer, (*SYNAPSE_TYPES, SumPool2d, nn.Flatten, LIF, RLIF, CubaLIF))
            if not ok or isinstance(layer, nn.AvgPool2d):
                raise ValueError(
                    f"training for {self.profile.name}: layer {i} ({type(layer).__name__}) is "
                    "not supported; use Linear/Conv2d synapses, SumPool2d, Flatten and LIF/IF/"
                    "RLIF/CubaLIF neurons (no dropout or batch norm)"
                )
        self._neurons: dict[int, QuantizedNeuron] = {}

    def quantized(self) -> QuantizedNetwork:
        """The integer network of the current shadow weights (what :func:`export` writes),
        on the model's device (quantised on the CPU, as :func:`export` does)."""
        p = next(self.model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
        src = self.model if device.type == "cpu" else copy.deepcopy(self.model).cpu()
        qnet = quantize(
            src,
            self.bits,
            self.profile,
            input_shape=self.input_shape,
            scale_method=self.scale_method,
        )
        if device.type != "cpu":
            qnet.model.to(device)
        return qnet

    def integer_neuron(self, module: nn.Module) -> QuantizedNeuron:
        """The integer neuron of ``module`` inside :meth:`integer_forward`."""
        try:
            return self._neurons[id(module)]
        except KeyError:
            raise RuntimeError(
                "IntegerLIFRule runs inside TargetTraining.integer_forward() only"
            ) from None

    @contextlib.contextmanager
    def integer_forward(self) -> Iterator[QuantizedNetwork]:
        """Inside the block the synapses hold the integer weights and biases (their ``.grad``
        stays with the shadow parameters) and :meth:`composite`'s neurons run the integer
        dynamics; on exit the shadow values are back. Yields the :class:`QuantizedNetwork`."""
        qnet = self.quantized()
        saved: list[tuple[torch.Tensor, torch.Tensor]] = []
        clip = self.profile.input_clip
        hook = None
        if clip is not None and len(self.model) > 0:
            # the chip clips input counts per channel and step (Xylo: 15), as simulate() does
            hook = self.model[0].register_forward_pre_hook(
                lambda _m, args: (args[0].clamp(max=float(clip)), *args[1:])
            )
        try:
            for layer, q in zip(self.model, qnet.model, strict=True):
                if isinstance(layer, SYNAPSE_TYPES):
                    for name in ("weight", "bias"):
                        p = getattr(layer, name)
                        if p is not None:
                            saved.append((p, p.data))
                            p.data = getattr(q, name).to(p.dtype).reshape(p.shape)
                elif isinstance(layer, (LIF, RLIF, CubaLIF)):
                    self._neurons[id(layer)] = q
            yield qnet
        finally:
            for p, data in saved:
                p.data = data
            self._neurons.clear()
            if hook is not None:
                hook.remove()

    def composite(self, base=None):
        """``base`` (default :func:`~spikelfp.lfp.default_composite`) with
        :class:`IntegerLIFRule` for LIF and IF, :class:`IntegerRLIFRule` for RLIF and
        :class:`IntegerCubaLIFRule` for CubaLIF."""
        base = default_composite() if base is None else base
        rule = IntegerLIFRule(self)
        return base.with_rules(
            {LIF: rule, IF: rule, RLIF: IntegerRLIFRule(self), CubaLIF: IntegerCubaLIFRule(self)}
        )

    def evaluation_model(self) -> nn.Module:
        """The integer network of the current shadow weights as a module taking float input
        (for accuracy measurements: exactly what the chip computes)."""
        return _Float64Input(self.quantized().model, self.profile.input_clip)


class _Float64Input(nn.Module):
    def __init__(self, model: nn.Module, clip: int | None = None):
        super().__init__()
        self.model = copy.deepcopy(model)
        self.clip = clip

    def forward(self, x, state=None):
        x64 = x.to(F64) if self.clip is None else x.to(F64).clamp(max=float(self.clip))
        out, st = self.model(x64, state)
        return out.to(x.dtype), st


def model_for_target(model: Sequential, spec) -> Sequential:
    """``model`` (built from ``spec`` by the zoo) in the layer types of the target ``spec``
    was adapted to (:func:`adapt_spec`): dense layers as convolutions for a target without
    ``Linear``; unchanged otherwise (also for specs without a target)."""
    prof = target_of(spec)
    if prof is None or "Linear" in prof.layer_types or "Conv2d" not in prof.layer_types:
        return model
    if not any(isinstance(m, nn.Linear) for m in model):
        return model
    return linear_as_conv(model, spec.input_shape)


def refuse_text(violations, profile) -> str:
    """One line: why ``profile`` cannot run the model, and what would fit."""
    prof = get_profile(profile)
    parts = [
        f"{v.layer}: {v.constraint}: {v.found}, {prof.name} takes {v.required}" for v in violations
    ]
    fixes = sorted({v.fix for v in violations})
    return (
        f"--target {prof.name} cannot run this model ({'; '.join(parts)}); what would fit: "
        + "; ".join(fixes)
    )
