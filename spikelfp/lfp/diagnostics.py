r"""Per-layer diagnostics of LFP training: where the reward goes, whom it reaches, what it changes.

In LFP the signal that autograd carries backwards *is* the reward (see
:mod:`spikelfp.lfp.synapse_rules`), so hooks on the activations read the reward reaching every
layer directly, and conservation between a module's output and input tells where the rest went.
:class:`LFPDiagnostics` wraps :func:`~spikelfp.lfp.lfp_step` calls and reports, per synapse
(Linear/Conv) and neuron layer: the reward magnitude at its output and input, how a synapse
splits it (input / bias / ε-stabiliser) and how a neuron splits it (input / membrane's past /
absorbed by the denominator), the fraction of units and weights that receive any feedback, dead
and saturated neurons, and the relative size of the optimiser's update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from torch import nn

from .._accel import divide, inplace_ok
from ..neurons import LI, LIF
from ..neurons.base import NeuronModule
from ._tensor import sum_to
from .composites import Composite, default_composite
from .neuron_rules import (
    LIFRule,
    _lif_replay,
    _reset,
    membrane_backward,
)
from .synapse_rules import _modified, _SynapseRule

__all__ = ["LFPDiagnostics", "DIAGNOSTIC_COLUMNS"]

_SYNAPSES = (nn.Linear, nn.modules.conv._ConvNd)

#: Columns of :meth:`LFPDiagnostics.to_table` by default: ``(key, header)``.
DIAGNOSTIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("reward_out_abs", "‖R‖₁ out"),
    ("reward_out_rel", "rel. to net"),
    ("reward_in_abs", "‖R‖₁ in"),
    ("input_frac_abs", "→ input"),
    ("bias_frac_abs", "→ bias"),
    ("past_frac_abs", "→ past"),
    ("absorbed_frac_abs", "absorbed"),
    ("rewarded_frac", "units w/ R≠0"),
    ("weight_nonzero_frac", "weights w/ F≠0"),
    ("dead_frac", "dead"),
    ("saturated_frac", "saturated"),
    ("spike_rate", "rate"),
    ("update_ratio", "‖Δw‖/‖w‖"),
)


@dataclass
class _Layer:
    """Accumulators of one tracked module (plain Python numbers unless noted)."""

    name: str
    module: nn.Module
    kind: str  # "synapse" or "neuron"
    index: int  # position in named_modules()
    path: str = ""  # the name in named_modules() ("" for the model itself)
    first_call: int | None = None
    last_pass: int = -1
    passes: int = 0  # backward passes that reached the output
    out_abs: float = 0.0
    out_sum: float = 0.0
    in_passes: int = 0
    in_last_pass: int = -1
    in_abs: float = 0.0
    in_sum: float = 0.0
    bias_share: float = 0.0
    bias_passes: int = 0
    to_past: float = 0.0
    q_init: float = 0.0
    replay_in: float = 0.0
    replay_passes: int = 0
    # |R|-weighted element-wise split: sum of sign(R)·part and of |R| over the elements
    el_input: float = 0.0
    el_bias: float = 0.0
    el_past: float = 0.0
    el_absorbed: float = 0.0
    el_den: float = 0.0
    rewarded: float = 0.0
    rewarded_n: int = 0
    nonzero: float = 0.0
    nonzero_n: int = 0
    dead: float = 0.0
    saturated: float = 0.0
    rate: float = 0.0
    spike_n: int = 0
    ever_spiked: torch.Tensor | None = None  # bool per unit, over all recorded forwards
    ever_ok: bool = True
    ratio: float = 0.0
    ratio_n: int = 0
    snapshot: list[torch.Tensor] | None = None  # parameters before the pending update
    pass_reward: dict = field(default_factory=dict)

    @property
    def params(self) -> list[nn.Parameter]:
        """The parameters whose feedback and update are measured."""
        if self.kind == "synapse":
            return [self.module.weight]
        return list(self.module.parameters(recurse=False))


def _sum_abs(t: torch.Tensor) -> tuple[float, float]:
    t = t.detach()
    return float(t.abs().sum()), float(t.sum())


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    """Σ a·b (a dot product: no full-size temporary)."""
    return float(torch.dot(a.reshape(-1), b.reshape(-1)))


def _norm(ts: Sequence[torch.Tensor]) -> float:
    return math.sqrt(sum(float(t.detach().double().pow(2).sum()) for t in ts))


def _div(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0 or not math.isfinite(b):
        return None
    return a / b


class LFPDiagnostics:
    r"""Measure per layer what LFP does in the :func:`~spikelfp.lfp.lfp_step` calls of a block.

    Use it as a context manager around training steps; on exit the model is exactly as before
    (only forward hooks on modules and tensor hooks on activations are used, all removed):

    >>> import torch
    >>> from torch import nn
    >>> import spikelfp
    >>> from spikelfp.lfp import LFPDiagnostics, lfp_step, rate_coded_reward
    >>> torch.manual_seed(0) and None
    >>> net = spikelfp.Sequential(nn.Linear(4, 8), spikelfp.LIF(threshold=0.3),
    ...                           nn.Linear(8, 3), spikelfp.LIF(threshold=0.3))
    >>> opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    >>> x, y = (torch.rand(10, 6, 4) < 0.5).float(), torch.tensor([0, 1, 2, 0, 1, 2])
    >>> diag = LFPDiagnostics(net)
    >>> with diag:
    ...     for _ in range(3):
    ...         res = lfp_step(net, x, y, rate_coded_reward, opt)
    >>> stats = diag.summary()                       # one dict per layer, input to output
    >>> [(s["name"], s["kind"], s["steps"]) for s in stats]
    [('0', 'synapse', 3), ('1', 'neuron', 3), ('2', 'synapse', 3), ('3', 'neuron', 3)]
    >>> s = stats[2]                                 # a Linear's reward split is conservative
    >>> abs(s["to_input"] + s["to_bias"] + s["absorbed"] - s["reward_out"]) < 1e-5
    True
    >>> stats[3]["reward_out_rel"]                   # the output layer gets the whole reward
    1.0
    >>> stats[0]["update_ratio"] > 0                 # Adam changed the first layer
    True
    >>> print(diag.to_table(columns=["reward_out_abs", "dead_frac"]).splitlines()[0])
    | layer | ‖R‖₁ out | dead |
    >>> dict(net._forward_hooks), dict(net[0]._forward_pre_hooks)  # nothing left behind
    ({}, {})

    **What is measured.** The signal autograd carries backwards in LFP is the reward; for a
    layer with output :math:`y` the hook sees :math:`R^{out} = \partial(\cdot)/\partial y`, i.e.
    the reward on :math:`y`. All sums run over time :math:`t`, batch :math:`b` and units; every
    per-step quantity is averaged over the backward passes (steps) recorded:

    * ``reward_out_abs`` :math:`= \sum |R^{out}|`, ``reward_out`` :math:`= \sum R^{out}`;
      ``reward_in_abs``, ``reward_in`` the same for the reward on the layer's input
      :math:`R^{in}` (for the first layer the input is made to require grad inside the block so
      that its reward is seen; ``input_reward=False`` turns that off).
      ``reward_out_rel`` :math:`= \sum|R^{out}| / \sum|R^{net}|`, relative to the reward put on
      the network's output.
    * **Synapse split** (Linear/Conv, :math:`z_j = \sum_i w'_{ji} x_i + b'_j`,
      :math:`n_j = R^{out}_j/(z'_j + \varepsilon\,\mathrm{sign}\,z'_j)`; ``w'``, ``b'`` are the
      weights of the rule: ε, z⁺ or γ). The rule hands on
      :math:`R^{in}_i = x_i \sum_j w'_{ji} n_j` and gives the bias the feedback
      :math:`F(b_j) = |b'_j| \sum n_j`, hence

      .. math::

          \sum_j R^{out}_j = \underbrace{\sum_i R^{in}_i}_{\texttt{to\_input}}
          + \underbrace{\sum_j b'_j n_j}_{\texttt{to\_bias}}
          + \underbrace{\sum_j \varepsilon\,\mathrm{sign}(z'_j)\, n_j}_{\texttt{absorbed}}

      ``to_input`` is measured by the input hook, ``to_bias``
      :math:`= \sum_j \mathrm{sign}(b_j) F(b_j) = -\sum_j \mathrm{sign}(b_j)\,\Delta g_{b_j}`
      from the bias gradient this step wrote (:math:`\mathrm{sign}\,b' = \mathrm{sign}\,b` for all
      three rules), and ``absorbed`` :math:`= \sum R^{out} - \texttt{to\_input} -
      \texttt{to\_bias}` by conservation (with ε = 0 it is the reward on outputs with
      :math:`z'_j = 0`, which the rule drops). ``input_frac``, ``bias_frac``, ``absorbed_frac``
      divide them by :math:`\sum R^{out}` (signed sums: with rewards of mixed sign they can
      exceed 1).
    * **Neuron split** (LIF/IF/LI; :math:`V_t = \beta U_{t-1} + Z_t`). Going backwards the rule
      handles :math:`\tilde r_t = R^{out}_t + q_t` per step (reward on the spike plus what step
      :math:`t+1` passed back), with :math:`D_t = |U_{t-1}| + |V_t - U_{t-1}| + \varepsilon`,
      :math:`n_t = \tilde r_t / D_t`, and splits it into the current input
      :math:`\rho_t = n_t Z_t`, the membrane's past :math:`q_{t-1} = \beta U_{t-1} n_t` and the
      rest :math:`a_t = \tilde r_t - \rho_t - q_{t-1} = n_t (D_t - V_t)` (the denominator is not
      :math:`V_t`: this part is *absorbed*). Summed over time the internal :math:`q` cancel:

      .. math::

          \sum_t \tilde r_t = \underbrace{\sum_t \rho_t}_{\texttt{to\_input}}
          + \underbrace{\sum_t q_{t-1}}_{\texttt{to\_past}}
          + \underbrace{\sum_t a_t}_{\texttt{absorbed}},
          \qquad \sum_t R^{out}_t = \texttt{to\_input} + q_{-1} + \texttt{absorbed}

      ``to_input`` (:math:`=\sum R^{in}`) comes from the input hook and ``absorbed``
      :math:`= \sum R^{out} - \sum R^{in} - q_{-1}` from conservation; ``to_past`` needs the
      membrane, so it is recomputed from the layer's input with the same recursion
      (:math:`q_{-1}` goes to the initial state, 0 when it starts at rest; ``replay_mismatch`` is
      the relative difference between the recomputed :math:`\sum_t\rho_t` and the hook's, a
      self-check). Fractions divide by :math:`\sum_t \tilde r_t` (``handled``).
    * **Element-wise, magnitude-weighted split** (``*_frac_abs``). The signed sums above cancel
      when rewards of both signs meet (a correct class pushed up, the others down), so their
      fractions can be far outside :math:`[0, 1]`. Every element :math:`e` (one
      :math:`(t, b, \text{unit})`) is split by the rule on its own,
      :math:`R_e = \sum_k P_{k,e}` (synapse: :math:`(z'_e - b'_e) n_e` to the input,
      :math:`b'_e n_e` to the bias, the rest absorbed; neuron: :math:`\rho_t`,
      :math:`q_{t-1}`, :math:`a_t` of :math:`\tilde r_t`), and the parts are weighted by
      :math:`|R_e|`:

      .. math::

          \texttt{k\_frac\_abs} = \frac{\sum_e \mathrm{sign}(R_e)\, P_{k,e}}{\sum_e |R_e|},
          \qquad \sum_k \texttt{k\_frac\_abs} = 1,

      i.e. the split the layer would make if every element's reward had the same sign; each
      lies in :math:`[0, 1]` unless a part opposes its element's reward (e.g. a negative bias
      or :math:`z'_e - b'_e` of the other sign than :math:`z'_e`). They are recomputed from the
      layer's input and output with the rule's :math:`w'`, :math:`b'`, ε (taken, like the
      neuron's ε, from ``composite``, which must be the one the steps use; ``None`` for
      modules whose rule is not an ε/z⁺/γ synapse or LIF/IF/LI neuron rule).
    * ``rewarded_frac``: fraction of the layer's output units (features for Linear, channel ×
      position for Conv and neurons) whose reward is non-zero at some :math:`(t, b)`, per step.
    * ``weight_nonzero_frac``: fraction of weights with non-zero feedback
      :math:`F(w) = -\Delta g_w \ne 0` in a step, where :math:`\Delta g` is the gradient the
      step's backward pass added (read at the end of the pass, so it does not matter whether an
      optimiser zeroes ``.grad`` afterwards). For neuron layers: their own parameters
      (learnable β/θ), ``None`` if they have none.
    * ``dead_frac`` / ``saturated_frac``: fraction of neurons that never spike in a batch
      (:math:`\sum_{t,b} S = 0`) / that spike at :math:`\ge` ``saturation`` of the
      :math:`T\cdot B` steps; ``spike_rate`` the mean of :math:`S`; ``never_spiked_frac`` the
      neurons silent over *all* recorded batches. Measured in every grad-enabled forward.
    * ``update_ratio`` :math:`= \|w_{after} - w_{before}\| / \|w_{before}\|`: the real change
      of the layer's weight by whatever updates it between the end of a step's backward pass
      and the next forward (or the end of the block) — ``optimizer.step()`` inside
      :func:`lfp_step`, or your own after ``lfp_step(..., optimizer=None)``. 0 if nothing
      stepped. Averaged over steps.

    **Cost.** The recomputed splits replay each neuron layer's membrane and divide each synapse's
    output once more; with the first layer's input reward this makes a step 2-3× slower (the
    spiking conv net of ``benchmarks/learning_in_depth.py``: 75 → 200 ms on one CPU thread).
    Measure on a probe batch or a few epochs, not in every production run.

    Args:
        model: the network (any module; its Linear/Conv and neuron submodules are tracked).
        composite: the composite the steps use (its synapse and neuron rules' parameters are
            read for the recomputed splits; default: :func:`default_composite`).
        saturation: spike-rate threshold of a saturated neuron.
        input_reward: make a non-differentiable input of a tracked module require grad inside
            the block so the reward reaching it is measured (costs the first layer's input
            decomposition).
    """

    def __init__(
        self,
        model: nn.Module,
        composite: Composite | None = None,
        saturation: float = 0.95,
        input_reward: bool = True,
    ):
        self.model = model
        self.composite = composite if composite is not None else default_composite()
        self.saturation = float(saturation)
        self.input_reward = bool(input_reward)
        self._layers: list[_Layer] = []
        for i, (name, module) in enumerate(model.named_modules()):
            if isinstance(module, _SYNAPSES) and not getattr(module, "transposed", False):
                self._layers.append(_Layer(name or "<model>", module, "synapse", i, name))
            elif isinstance(module, NeuronModule):
                self._layers.append(_Layer(name or "<model>", module, "neuron", i, name))
        self._handles: list[Any] = []
        self.reset()

    # ------------------------------------------------------------------ context management

    def __enter__(self) -> LFPDiagnostics:
        if self._handles:
            raise RuntimeError("LFPDiagnostics is already active; it cannot be nested")
        try:
            root = self.model
            self._handles.append(root.register_forward_pre_hook(self._root_pre_hook))
            self._handles.append(root.register_forward_hook(self._root_hook))
            for layer in self._layers:
                m = layer.module
                if self.input_reward:
                    self._handles.append(
                        m.register_forward_pre_hook(self._pre_hook, with_kwargs=True)
                    )
                self._handles.append(
                    m.register_forward_hook(partial(self._forward_hook, layer), with_kwargs=True)
                )
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._finalize_update()
        finally:
            self._remove()
            self._in_pass = False

    def _remove(self) -> None:
        for h in reversed(self._handles):
            h.remove()
        self._handles.clear()

    def reset(self) -> None:
        """Forget everything recorded (also an update not yet measured)."""
        self._pass = 0
        self._in_pass = False
        self._calls = 0
        self._net_abs = 0.0
        self._net_sum = 0.0
        self._net_passes = 0
        self._grad_before: dict[int, torch.Tensor | None] = {}
        for layer in self._layers:
            fresh = _Layer(layer.name, layer.module, layer.kind, layer.index, layer.path)
            layer.__dict__.update(fresh.__dict__)

    @property
    def steps(self) -> int:
        """Backward passes recorded."""
        return self._net_passes

    # ------------------------------------------------------------------ hooks

    def _root_pre_hook(self, module, args) -> None:
        self._in_pass = False  # a pass that raised never reached its end callback
        self._finalize_update()

    def _root_hook(self, module, args, output) -> None:
        out = output[0] if isinstance(output, tuple) and output else output
        if torch.is_grad_enabled() and isinstance(out, torch.Tensor) and out.requires_grad:
            out.register_hook(self._net_reward_hook)

    def _net_reward_hook(self, grad: torch.Tensor) -> None:
        self._begin_pass()
        a, s = _sum_abs(grad)
        self._net_abs += a
        self._net_sum += s
        self._net_passes += 1

    def _pre_hook(self, module, args, kwargs):
        if not torch.is_grad_enabled() or not args:
            return None
        x = args[0]
        if isinstance(x, torch.Tensor) and x.is_floating_point() and not x.requires_grad:
            return (x.detach().requires_grad_(True), *args[1:]), kwargs
        return None

    def _forward_hook(self, layer: _Layer, module, args, kwargs, output) -> None:
        if not torch.is_grad_enabled():
            return
        if layer.first_call is None:
            layer.first_call = self._calls
            self._calls += 1
        x = args[0] if args else next(iter(kwargs.values()), None)
        out = output[0] if isinstance(output, tuple) else output
        if not isinstance(out, torch.Tensor):
            return
        if layer.kind == "neuron" and not isinstance(module, LI):
            self._record_spikes(layer, out.detach())
        if isinstance(x, torch.Tensor) and x.requires_grad:
            x.register_hook(partial(self._input_hook, layer))
        if out.requires_grad:
            replay = None
            if layer.kind == "neuron" and isinstance(x, torch.Tensor):
                state = args[1] if len(args) > 1 else kwargs.get("state")
                replay = self._replay_inputs(module, layer.path, x, state)
            elif layer.kind == "synapse" and isinstance(x, torch.Tensor):
                replay = self._synapse_inputs(module, layer.path, x, out)
            out.register_hook(partial(self._output_hook, layer, replay))

    def _record_spikes(self, layer: _Layer, s: torch.Tensor) -> None:
        if s.dim() < 2 or s.numel() == 0:
            return
        steps = s.shape[0] * s.shape[1]
        count = s.sum((0, 1))
        layer.dead += float((count == 0).float().mean())
        layer.saturated += float((count >= self.saturation * steps).float().mean())
        layer.rate += float(s.float().mean())
        layer.spike_n += 1
        fired = count > 0
        if layer.ever_ok:
            if layer.ever_spiked is None:
                layer.ever_spiked = fired
            elif layer.ever_spiked.shape != fired.shape:
                layer.ever_ok, layer.ever_spiked = False, None
            else:
                layer.ever_spiked = layer.ever_spiked | fired

    def _replay_inputs(self, module: nn.Module, name: str, z: torch.Tensor, state) -> dict | None:
        """What the membrane recomputation needs, or ``None`` for neurons it does not cover."""
        rule = self.composite.rule_for(module, name)
        if not isinstance(module, (LIF, LI)) or not isinstance(rule, LIFRule):
            return None
        z = z.detach()
        v0 = module.initial_state(z).v if state is None else state.v.detach()
        if isinstance(module, LI):
            theta = torch.zeros((), dtype=z.dtype, device=z.device)
            mode = ("none", False)
        else:
            theta = module.threshold.detach()
            mode = (module.reset, module.reset_delay)
        return {
            "z": z,
            "v0": v0,
            "beta": module.beta.detach(),
            "theta": theta,
            "mode": mode,
            "readout": isinstance(module, LI),
            "epsilon": rule.epsilon,
        }

    @torch.no_grad()
    def _synapse_inputs(
        self, module: nn.Module, name: str, x: torch.Tensor, z: torch.Tensor
    ) -> dict | None:
        """The rule's :math:`z'` and :math:`b'` for the element-wise split, or ``None``."""
        rule = self.composite.rule_for(module, name)
        if not isinstance(rule, _SynapseRule):
            return None
        bias = module.bias.detach() if module.bias is not None else None
        b2 = _modified(bias, rule.mode, rule.gamma)
        if rule.mode == "epsilon":
            zmod = z.detach()
        else:
            w2 = _modified(module.weight.detach(), rule.mode, rule.gamma)
            x = x.detach()
            if isinstance(module, nn.Linear):
                zmod = nn.functional.linear(x, w2, b2)
            else:
                zmod = module._conv_forward(x, w2, b2)
        if b2 is not None:
            shape = (-1,) if isinstance(module, nn.Linear) else (-1,) + (1,) * (zmod.dim() - 2)
            b2 = b2.reshape(shape)
        return {"zmod": zmod, "bias": b2, "epsilon": rule.epsilon}

    def _begin_pass(self) -> None:
        if self._in_pass:
            return
        self._in_pass = True
        self._pass += 1
        self._grad_before = {
            id(p): (None if p.grad is None else p.grad.detach().clone())
            for layer in self._layers
            for p in self._tracked_params(layer)
        }
        torch.autograd.Variable._execution_engine.queue_callback(self._end_pass)

    @staticmethod
    def _tracked_params(layer: _Layer) -> list[nn.Parameter]:
        params = list(layer.params)
        bias = getattr(layer.module, "bias", None) if layer.kind == "synapse" else None
        if isinstance(bias, torch.Tensor):
            params.append(bias)
        return [p for p in params if isinstance(p, torch.Tensor)]

    def _output_hook(self, layer: _Layer, replay: dict | None, grad: torch.Tensor) -> None:
        self._begin_pass()
        if layer.last_pass != self._pass:
            layer.last_pass = self._pass
            layer.passes += 1
            # units reached in this pass: OR over every call of the module in it
            layer.pass_reward = {}
        a, s = _sum_abs(grad)
        layer.out_abs += a
        layer.out_sum += s
        g = grad.detach()
        if layer.kind == "neuron":
            unit_dims = (0, 1)
        elif isinstance(layer.module, nn.Linear):
            unit_dims = tuple(range(g.dim() - 1))
        else:
            unit_dims = (0,)
        if g.dim() > len(unit_dims):
            frac = float((g != 0).any(dim=unit_dims).float().mean()) if g.numel() else 0.0
            layer.rewarded += frac
            layer.rewarded_n += 1
        if replay is not None and layer.kind == "neuron":
            self._replay(layer, replay, g)
        elif replay is not None:
            self._synapse_split(layer, replay, g)

    def _input_hook(self, layer: _Layer, grad: torch.Tensor) -> None:
        self._begin_pass()
        if layer.in_last_pass != self._pass:
            layer.in_last_pass = self._pass
            layer.in_passes += 1
        a, s = _sum_abs(grad)
        layer.in_abs += a
        layer.in_sum += s

    @torch.no_grad()
    def _replay(self, layer: _Layer, c: dict, r: torch.Tensor) -> None:
        r"""Recompute the rule's membrane recursion: :math:`\sum_t q_{t-1}`, :math:`q_{-1}`."""
        z, beta, theta, eps = c["z"], c["beta"], c["theta"], c["epsilon"]
        reset, delay = c["mode"]
        if r.shape != z.shape:
            return
        v0, readout = c["v0"], c["readout"]
        if z.is_contiguous() and inplace_ok(z, v0, beta, theta):
            # the rule's own replay: U_{t-1} for all t, then D_t for all t at once
            u = _lif_replay(z, v0, beta, theta, reset, delay, readout)[:-1]
        else:
            u_prev, v = [], v0
            for z_t in z.unbind(0):
                v_pre = beta * v + z_t
                u_prev.append(v.expand_as(v_pre))
                v = v_pre if readout else _reset(v_pre, v, theta, reset, delay)[0]
            u = torch.stack(u_prev)
        # D_t = |U_{t-1}| + |V_t - U_{t-1}| + ε with V_t = β U_{t-1} + Z_t (the rule's order)
        inv_d = torch.mul(u, beta).add_(z).sub_(u).abs_().add_(u.abs()).add_(eps).reciprocal_()
        n, _ = membrane_backward(r, torch.zeros_like(r[0]), u, inv_d, beta)
        q = torch.mul(u, beta).mul_(n)  # q_{t-1} = β U_{t-1} n_t
        rho = n * z  # ρ_t = n_t Z_t
        handled = n.div_(inv_d)  # r̃_t = n_t D_t (n is not needed any more)
        den = float(handled.abs().sum())
        sign = handled.sign_()  # only the signs are needed from here on
        el_input, el_past = _dot(sign, rho), _dot(sign, q)
        layer.to_past += float(q.sum())
        layer.q_init += float(q[0].sum())
        layer.replay_in += float(rho.sum())
        layer.replay_passes += 1
        layer.el_input += el_input
        layer.el_past += el_past
        layer.el_absorbed += den - el_input - el_past
        layer.el_den += den

    @torch.no_grad()
    def _synapse_split(self, layer: _Layer, c: dict, rho: torch.Tensor) -> None:
        r"""Each output element's :math:`\rho_j = (z'_j - b'_j) n_j + b'_j n_j + \text{rest}`."""
        zmod, b2 = c["zmod"], c["bias"]
        if rho.shape != zmod.shape:
            return
        n = divide(rho.contiguous(), zmod, c["epsilon"])  # the rule's n_j
        signed_n = n.mul_(rho.sign())
        if b2 is None:
            to_bias = 0.0
        else:  # Σ_j sign(ρ_j) n_j b'_j: n summed to the bias' shape first
            to_bias = float((sum_to(signed_n, b2.shape) * b2).sum())
        to_input = _dot(signed_n, zmod) - to_bias
        den = float(rho.abs().sum())
        layer.el_input += to_input
        layer.el_bias += to_bias
        layer.el_absorbed += den - to_input - to_bias
        layer.el_den += den

    def _end_pass(self) -> None:
        """End of a backward pass: the feedback this pass wrote, and a snapshot of the weights."""
        try:
            for layer in self._layers:
                if layer.last_pass != self._pass:
                    continue
                params = layer.params
                deltas = [self._delta(p) for p in params]
                if params:
                    nz = sum(int((d != 0).sum()) for d in deltas if d is not None)
                    total = sum(p.numel() for p in params)
                    layer.nonzero += nz / max(total, 1)
                    layer.nonzero_n += 1
                    layer.snapshot = [p.detach().clone() for p in params]
                bias = getattr(layer.module, "bias", None) if layer.kind == "synapse" else None
                if isinstance(bias, torch.Tensor) and bias.requires_grad:
                    db = self._delta(bias)
                    if db is not None:
                        layer.bias_share += float(-(bias.detach().sign() * db).sum())
                    layer.bias_passes += 1
        finally:
            self._grad_before = {}
            self._in_pass = False

    def _delta(self, p: torch.Tensor) -> torch.Tensor | None:
        before = self._grad_before.get(id(p))
        if p.grad is None:
            return None
        return p.grad.detach() if before is None else p.grad.detach() - before

    def _finalize_update(self, commit: bool = True) -> dict[int, float]:
        """Measure the pending update of every layer; keep it unless ``commit`` is false."""
        ratios = {}
        for k, layer in enumerate(self._layers):
            if layer.snapshot is None:
                continue
            now = [p.detach() for p in layer.params]
            before = layer.snapshot
            if len(now) != len(before) or any(
                a.shape != b.shape for a, b in zip(now, before, strict=True)
            ):
                layer.snapshot = None
                continue
            w = _norm(before)
            dw = _norm([a - b for a, b in zip(now, before, strict=True)])
            ratios[k] = dw / w if w > 0 else (0.0 if dw == 0 else math.inf)
            if commit:
                layer.ratio += ratios[k]
                layer.ratio_n += 1
                layer.snapshot = None
        return ratios

    # ------------------------------------------------------------------ results

    def summary(self) -> list[dict[str, Any]]:
        """One dict of plain floats (``None`` where not applicable) per layer, input to output.

        Layers are ordered by their first forward call (named_modules order for layers never
        called). An update made after the last step but not yet measured (the block is still
        open) is included.
        """
        pending = self._finalize_update(commit=False)
        net = _div(self._net_abs, self._net_passes)
        rows = []
        order = sorted(
            range(len(self._layers)),
            key=lambda k: (
                self._layers[k].first_call is None,
                self._layers[k].first_call if self._layers[k].first_call is not None else 0,
                self._layers[k].index,
            ),
        )
        for k in order:
            rows.append(self._row(self._layers[k], net, pending.get(k)))
        return rows

    def _row(self, L: _Layer, net_abs: float | None, pending: float | None) -> dict[str, Any]:
        p = L.passes
        out_abs, out = _div(L.out_abs, p), _div(L.out_sum, p)
        if L.in_passes:
            in_abs, rin = L.in_abs / L.in_passes, L.in_sum / L.in_passes
        else:
            in_abs = rin = None
        row: dict[str, Any] = {
            "name": L.name,
            "type": type(L.module).__name__,
            "kind": L.kind,
            "steps": p,
            "reward_out_abs": out_abs,
            "reward_out": out,
            "reward_out_rel": _div(out_abs, net_abs),
            "reward_in_abs": in_abs,
            "reward_in": rin,
            "to_input": rin,
            "to_bias": None,
            "to_past": None,
            "absorbed": None,
            "handled": None,
            "input_frac": None,
            "bias_frac": None,
            "past_frac": None,
            "absorbed_frac": None,
            "replay_mismatch": None,
            "input_frac_abs": None,
            "bias_frac_abs": None,
            "past_frac_abs": None,
            "absorbed_frac_abs": None,
        }
        if L.el_den > 0:
            row.update(
                input_frac_abs=L.el_input / L.el_den,
                absorbed_frac_abs=L.el_absorbed / L.el_den,
            )
            if L.kind == "synapse":
                row["bias_frac_abs"] = L.el_bias / L.el_den
            else:
                row["past_frac_abs"] = L.el_past / L.el_den
        if L.kind == "synapse" and out is not None and rin is not None:
            bias = L.bias_share / L.bias_passes if L.bias_passes else 0.0
            absorbed = out - rin - bias
            row.update(
                to_bias=bias,
                absorbed=absorbed,
                handled=out,
                input_frac=_div(rin, out),
                bias_frac=_div(bias, out),
                absorbed_frac=_div(absorbed, out),
            )
        if L.kind == "neuron" and L.replay_passes and out is not None and rin is not None:
            past = L.to_past / L.replay_passes
            q_init = L.q_init / L.replay_passes
            replay_in = L.replay_in / L.replay_passes
            absorbed = out - rin - q_init
            handled = out + past - q_init
            row.update(
                to_past=past,
                absorbed=absorbed,
                handled=handled,
                input_frac=_div(rin, handled),
                past_frac=_div(past, handled),
                absorbed_frac=_div(absorbed, handled),
                replay_mismatch=abs(replay_in - rin) / max(abs(rin), 1e-30),
            )
        spiking = L.kind == "neuron" and L.spike_n > 0
        n_ratio = L.ratio_n + (pending is not None)
        ratio_sum = L.ratio + (pending or 0.0)
        row.update(
            rewarded_frac=_div(L.rewarded, L.rewarded_n),
            weight_nonzero_frac=_div(L.nonzero, L.nonzero_n),
            dead_frac=L.dead / L.spike_n if spiking else None,
            saturated_frac=L.saturated / L.spike_n if spiking else None,
            spike_rate=L.rate / L.spike_n if spiking else None,
            never_spiked_frac=(
                float((~L.ever_spiked).float().mean())
                if spiking and L.ever_spiked is not None
                else None
            ),
            update_ratio=(ratio_sum / n_ratio) if n_ratio and L.params else None,
        )
        return {
            k: (float(v) if isinstance(v, (float, int)) and k != "steps" else v)
            for k, v in row.items()
        }

    def to_table(
        self,
        columns: Sequence[str] | None = None,
        fmt: Callable[[Any], str] | None = None,
    ) -> str:
        """The summary as a Markdown table (``columns``: keys of :meth:`summary`'s dicts)."""
        headers = dict(DIAGNOSTIC_COLUMNS)
        keys = list(columns) if columns is not None else [k for k, _ in DIAGNOSTIC_COLUMNS]
        fmt = fmt or _format
        lines = [
            "| layer | " + " | ".join(headers.get(k, k) for k in keys) + " |",
            "|---|" + "---:|" * len(keys),
        ]
        for row in self.summary():
            cells = [f"{row['name']} {row['type']}"] + [fmt(row.get(k)) for k in keys]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


def _format(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if v == 0:
            return "0"
        if not math.isfinite(v):
            return str(v)
        return f"{v:.3g}" if abs(v) >= 1e-3 else f"{v:.2e}"
    return str(v)
