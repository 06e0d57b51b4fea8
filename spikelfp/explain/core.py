r"""Relevance of every input element for a spiking network's decision: LRP from LFP's rules.

LFP *is* Layer-wise Relevance Propagation run as a learning rule: the signal its rules carry
backwards is each activation's share of the output reward. Put the reward on the target class
only and read what reaches the input, and that share is the input's LRP relevance:

.. math::

    R^{in} = \mathrm{LFP}_{\mathcal{C}}\big(f, x;\ \rho^{out}\big),
    \qquad \rho^{out}_{t,b,c} = [c = y_b]\, o_{t,b,c} \quad (\text{``output''})
    \quad\text{or}\quad [c = y_b] / T \quad (\text{``uniform''}),

where :math:`o` is the network's output (spikes, or an LI readout's membrane) and
:math:`\mathcal{C}` the composite (which rule each layer uses). With the default
``reward="output"`` the reward is the target's own output train, so the relevance sums (up to
the bias and stabiliser shares) to the target's *logit*, its spike count
:math:`\sum_t S_{t,y}` -- exactly LRP's start, :math:`R^{out} = f_y(x)`. ``"uniform"`` puts
:math:`1/T` on the target at every step (relevance sums to about 1, and a target that never
fires still gets an explanation).

Conservation: every rule hands on what it receives except the bias share
:math:`\sum_j b'_j n_j`, the ε-stabiliser's share and, in neurons, the part
:math:`n_t (D_t - V_t)` of the reward that the denominator
:math:`D_t = |U_{t-1}| + |V_t - U_{t-1}| + \varepsilon` absorbs when the membrane leaks faster
than it is driven (see :mod:`spikelfp.lfp.neuron_rules`); :func:`relevance_budget` measures
each share.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..lfp.composites import Composite, default_composite
from ..lfp.synapse_rules import GammaRule, ZPlusRule
from ..neurons import LIF

__all__ = [
    "COMPOSITES",
    "REWARDS",
    "depth_composite",
    "epsilon_composite",
    "explain",
    "gamma_composite",
    "make_composite",
    "output_reward",
    "relevance_budget",
    "surrogate_saliency",
    "zplus_composite",
]

#: How the output reward of a class is formed (see :func:`output_reward`).
REWARDS = ("output", "uniform")

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


# -- composites ---------------------------------------------------------------------------------
def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not epsilon > 0:
        raise ValueError(
            f"epsilon must be > 0 (the neuron rule divides by D_t + epsilon, and D_t is 0 for a "
            f"neuron at rest without input), got {epsilon}"
        )
    return epsilon


def epsilon_composite(epsilon: float = 1e-6, synapse_epsilon: float = 0.0) -> Composite:
    r"""LRP-ε: the rules LFP trains with (:func:`spikelfp.lfp.default_composite`).

    Every Linear/Conv splits its output's reward in proportion to the contributions
    :math:`x_i w_{ji}`; every neuron normalises by :math:`D_t + \varepsilon` (``epsilon``);
    ``synapse_epsilon`` adds LRP's ε to the synapses' own denominators (0: exact; the neuron
    already stabilises). The explanation is then exactly the reward that a training step
    would carry to the input.

    >>> epsilon_composite().rule_for(nn.Linear(2, 2))
    EpsilonRule(epsilon=0.0)
    """
    return default_composite(
        neuron_epsilon=_check_epsilon(epsilon), synapse_epsilon=float(synapse_epsilon)
    )


def zplus_composite(epsilon: float = 1e-6) -> Composite:
    r"""LRP-z⁺ in every Linear/Conv: only excitatory contributions :math:`x_i w^+_{ji}` share
    the reward (sharper, positive-leaning maps; LRP's αβ with α = 1, β = 0).

    >>> zplus_composite().rule_for(nn.Conv2d(1, 1, 3))
    ZPlusRule(epsilon=0.0)
    """
    return default_composite(neuron_epsilon=_check_epsilon(epsilon), synapse_rule=ZPlusRule())


def gamma_composite(gamma: float = 0.25, epsilon: float = 1e-6) -> Composite:
    r"""LRP-γ in every Linear/Conv: weights :math:`w + \gamma w^+` favour excitatory
    contributions by ``gamma`` (γ → ∞ is z⁺, γ = 0 is ε).

    >>> gamma_composite(0.5).rule_for(nn.Linear(2, 2))
    GammaRule(gamma=0.5, epsilon=0.0)
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    return default_composite(
        neuron_epsilon=_check_epsilon(epsilon), synapse_rule=GammaRule(gamma=float(gamma))
    )


def depth_composite(
    model: nn.Module | None = None,
    lower: str = "zplus",
    lower_layers: int | None = None,
    gamma: float = 0.25,
    epsilon: float = 1e-6,
) -> Composite:
    r"""A preset by depth, as zennit's ``EpsilonPlus`` / ``EpsilonGammaBox`` do for CNNs:
    ``lower`` (``"zplus"`` or ``"gamma"``) in the layers near the input, ε above.

    ``lower_layers=None``: every convolution gets ``lower`` and every Linear ε (by type, no
    ``model`` needed). ``lower_layers=k``: the first ``k`` Linear/Conv layers of ``model`` (in
    ``named_modules()`` order, input side) get ``lower`` (by name, with
    :meth:`~spikelfp.lfp.Composite.with_names`).

    >>> from spikelfp import LIF, Sequential
    >>> net = Sequential(nn.Linear(4, 4), LIF(), nn.Linear(4, 2), LIF())
    >>> comp = depth_composite(net, lower="gamma", lower_layers=1)
    >>> comp.rule_for(net[0], "0"), comp.rule_for(net[2], "2")
    (GammaRule(gamma=0.25, epsilon=0.0), EpsilonRule(epsilon=0.0))
    >>> depth_composite().rule_for(nn.Conv2d(1, 1, 3))
    ZPlusRule(epsilon=0.0)
    """
    if lower not in ("zplus", "gamma"):
        raise ValueError(f"lower must be 'zplus' or 'gamma', got {lower!r}")
    base = epsilon_composite(epsilon)
    low = ZPlusRule() if lower == "zplus" else GammaRule(gamma=float(gamma))
    if lower_layers is None:
        return base.with_rules({t: low for t in _CONVS})
    if model is None:
        raise ValueError("depth_composite(lower_layers=k) needs the model, to name its layers")
    if int(lower_layers) < 0:
        raise ValueError(f"lower_layers must be >= 0, got {lower_layers}")
    return base.with_lower_rule(model, low, int(lower_layers))


#: The explanation composites by name (``spikelfp explain --rule``, the benchmark).
COMPOSITES: dict[str, Callable[..., Composite]] = {
    "epsilon": epsilon_composite,
    "zplus": zplus_composite,
    "gamma": gamma_composite,
    "depth": depth_composite,
}


def make_composite(name: str, model: nn.Module | None = None) -> Composite:
    """The composite called ``name`` (a key of :data:`COMPOSITES`) for ``model``.

    >>> make_composite("gamma").rule_for(nn.Linear(1, 1))
    GammaRule(gamma=0.25, epsilon=0.0)
    """
    if name not in COMPOSITES:
        raise ValueError(f"unknown composite {name!r}; choose one of {', '.join(COMPOSITES)}")
    if name == "depth":
        return depth_composite(model)
    return COMPOSITES[name]()


# -- models of other libraries -----------------------------------------------------------------
def _library(module: nn.Module) -> str:
    return type(module).__module__.split(".")[0]


def _libraries(model: nn.Module) -> set[str]:
    return {_library(m) for m in model.modules()} & {"snntorch", "norse"}


def _is_per_step(model: nn.Module, libs: set[str]) -> bool:
    """Whether ``model`` is a per-step network (called once per time step): a torch
    ``nn.Sequential`` of ``init_hidden=True`` snntorch neurons, or a norse ``SequentialState``
    of cells. (A model with its own loop over time is called with the whole ``x``.)"""
    from ..sequential import Sequential

    if "snntorch" in libs and isinstance(model, nn.Sequential):
        if not isinstance(model, Sequential) and any(
            _library(m) == "snntorch" and getattr(m, "init_hidden", False) for m in model.modules()
        ):
            return True
    if "norse" in libs and _library(model) == "norse":
        return any(
            _library(m) == "norse" and type(m).__name__.endswith("Cell") for m in model.children()
        )
    return False


def _neuron_epsilon(comp: Composite) -> float:
    return float(getattr(comp.rules.get(LIF), "epsilon", 1e-6))


def _prepare(
    model: nn.Module, composite: Composite | None, step_loop: bool | None
) -> tuple[nn.Module, Composite]:
    """The module to call with ``x (T, B, ...)`` and the composite for it.

    snntorch / norse models get those libraries' neuron rules added to the composite (the
    explanation rules of the synapses stay); per-step networks are wrapped in
    :class:`spikelfp.interop.StepLoop` (the composite's names follow them under ``net.``).
    """
    comp = composite if composite is not None else epsilon_composite()
    if not isinstance(comp, Composite):
        raise TypeError(f"composite must be a spikelfp.lfp.Composite, got {type(comp).__name__}")
    libs = _libraries(model)
    if not libs:
        if step_loop:
            raise ValueError("step_loop=True is for per-step snntorch or norse networks")
        return model, comp
    from ..interop import StepLoop

    eps = _neuron_epsilon(comp)
    rules: dict[type, object] = {}
    leaf: tuple[type, ...] = ()
    if "snntorch" in libs:
        from ..interop import snntorch_composite

        part = snntorch_composite(eps)
        rules.update(part.rules)
        leaf += part.leaf_types
    if "norse" in libs:
        from ..interop import norse_composite

        part = norse_composite(eps)
        rules.update(part.rules)
        leaf += part.leaf_types
    rules.update(comp.rules)  # the explanation's own rules win (synapses, spikelfp neurons)
    leaf += tuple(t for t in comp.leaf_types if t not in leaf)
    comp = dataclasses.replace(comp, rules=rules, leaf_types=leaf)
    wrap = _is_per_step(model, libs) if step_loop is None else bool(step_loop)
    if not wrap:
        return model, comp
    wrapped = dataclasses.replace(
        comp, names={f"net.{n}" if n else "net": r for n, r in comp.names.items()}
    )
    return StepLoop(model), wrapped


# -- the explanation --------------------------------------------------------------------------
@contextlib.contextmanager
def _untouched(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients inside; the train/eval flags and ``requires_grad``
    of every module and parameter put back on exit (nothing else is changed by explaining)."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _check_x(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a tensor (T, B, ...), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"x must be floating point (spikes or counts), got {x.dtype}; use x.float()"
        )
    if x.dim() < 3:
        raise ValueError(
            f"x must be time-first (T, B, features...), got shape {tuple(x.shape)}; for one "
            "sample use x.unsqueeze(1)"
        )
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or inf values")
    return x


def _call(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    from ..lfp.step import _time_axis_hint

    try:
        out = net(x)
    except (ValueError, RuntimeError) as err:
        hinted = _time_axis_hint(err, x)
        if hinted is None:
            raise
        raise hinted from None
    if isinstance(out, tuple):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise TypeError(
            f"the model must return a tensor or (tensor, ...), got {type(out).__name__}"
        )
    if out.dim() != 3 or out.shape[:2] != x.shape[:2]:
        raise ValueError(
            f"the model's output has shape {tuple(out.shape)}, expected (T, B, classes) = "
            f"({x.shape[0]}, {x.shape[1]}, C) for x of shape {tuple(x.shape)}; is x time-first "
            "(T, B, ...)?"
        )
    return out


def output_reward(output: torch.Tensor, target=None, reward: str = "output") -> torch.Tensor:
    r"""The reward that asks "why ``target``?" of an output ``(T, B, C)``.

    ``target``: ``None`` (the predicted class: most output activity summed over time, ties to
    the lowest index), a class index, a ``(B,)`` integer tensor, or a ready reward tensor
    ``(T, B, C)`` (returned as it is). ``reward``: ``"output"`` puts the target's own output on
    it, :math:`\rho_{t,b,c} = [c = y_b]\,o_{t,b,c}` (its spike train: the reward sums to its
    spike count, LRP's :math:`f_y(x)`); ``"uniform"`` puts :math:`[c = y_b]/T` at every step.

    >>> out = torch.zeros(4, 1, 3); out[:2, 0, 2] = 1
    >>> output_reward(out)[:, 0, 2].tolist()          # predicted class 2, its spike train
    [1.0, 1.0, 0.0, 0.0]
    >>> output_reward(out, 0, "uniform")[:, 0, 0].tolist()
    [0.25, 0.25, 0.25, 0.25]
    >>> output_reward(out, 3)
    Traceback (most recent call last):
    ...
    ValueError: target 3 is outside the classes 0..2 of the model's output
    """
    if output.dim() != 3:
        raise ValueError(f"the output must be (T, B, classes), got shape {tuple(output.shape)}")
    steps, batch, classes = output.shape
    if isinstance(target, torch.Tensor) and target.is_floating_point():
        if target.shape != output.shape:
            raise ValueError(
                f"a reward tensor must have the output's shape {tuple(output.shape)}, got "
                f"{tuple(target.shape)}"
            )
        if not bool(torch.isfinite(target).all()):
            raise ValueError("the reward tensor contains NaN or inf values")
        return target.detach().to(dtype=output.dtype, device=output.device)
    if reward not in REWARDS:
        raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
    if target is None:
        labels = output.sum(0).argmax(-1)
    elif isinstance(target, torch.Tensor):
        if target.dtype == torch.bool or target.is_complex():
            raise TypeError(f"target must hold integer class indices, got {target.dtype}")
        labels = target.reshape(1).expand(batch) if target.dim() == 0 else target
        if labels.shape != (batch,):
            raise ValueError(
                f"target must be one class per sample, shape ({batch},), got {tuple(target.shape)}"
            )
    elif hasattr(target, "__index__") and not isinstance(target, bool):
        labels = torch.full((batch,), int(target), dtype=torch.long)
    else:
        raise TypeError(
            "target must be None, a class index, a (B,) integer tensor or a reward tensor "
            f"(T, B, C); got {type(target).__name__}"
        )
    labels = labels.to(device=output.device, dtype=torch.long)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise ValueError(
            f"target {bad} is outside the classes 0..{classes - 1} of the model's output"
        )
    onehot = nn.functional.one_hot(labels, classes).to(output.dtype).unsqueeze(0)
    if reward == "output":
        return onehot * output
    return onehot.expand(steps, -1, -1) / steps


def explain(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    composite: Composite | None = None,
    *,
    reward: str = "output",
    step_loop: bool | None = None,
    return_output: bool = False,
):
    r"""Relevance of every element of ``x (T, B, ...)`` for the ``target`` class: a tensor
    shaped like ``x``.

    One forward pass through the composite's rules and one backward pass of the output reward
    (:func:`output_reward`: by default the target's own spike train) to the input; the
    relevance is the reward that reaches ``x``, :math:`R^{in}` (module docstring).

    Args:
        model: a spikelfp network, or an unmodified snntorch / norse one (``model(x)`` returns
            the output ``(T, B, C)`` or a tuple starting with it; per-step networks, called
            once per step, are run over time by :class:`spikelfp.interop.StepLoop`).
        x: the input, time-first ``(T, B, ...)``, floating point.
        target: ``None`` (the predicted class), a class index, a ``(B,)`` integer tensor, or a
            ready output reward ``(T, B, C)``.
        composite: which rule each layer uses (default :func:`epsilon_composite`; see
            :func:`zplus_composite`, :func:`gamma_composite`, :func:`depth_composite`). For
            snntorch / norse models the library's neuron rules are added.
        reward: ``"output"`` or ``"uniform"`` (:func:`output_reward`).
        step_loop: run the model once per time step (default: detected).
        return_output: also return the model's output ``(T, B, C)``.

    The model is left exactly as it was: it runs in eval mode with its parameters' gradients
    off inside, and its modes, ``requires_grad`` flags, parameters, buffers, ``.grad`` and
    hooks are as before afterwards. Each sample is explained independently of the others in
    the batch.

    >>> from spikelfp import IF, Sequential
    >>> torch.manual_seed(0) and None
    >>> net = Sequential(nn.Linear(6, 4, bias=False), IF(threshold=0.5))
    >>> with torch.no_grad():
    ...     _ = net[0].weight.uniform_(0, 1)
    >>> x = torch.rand(5, 2, 6)
    >>> rel, out = explain(net, x, target=1, return_output=True)
    >>> rel.shape
    torch.Size([5, 2, 6])
    >>> bool(torch.allclose(rel.sum((0, 2)), out[:, :, 1].sum(0), rtol=1e-4))  # conserved
    True
    >>> try:
    ...     explain(net, x[:, 0])                 # no batch axis
    ... except ValueError as err:
    ...     print(str(err)[:45])
    x must be time-first (T, B, features...), got
    """
    x = _check_x(x)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    net, comp = _prepare(model, composite, step_loop)
    comp.plan(net)  # an unsupported layer is reported before any work
    with _untouched(model):
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            with comp.context(net):
                out = _call(net, xg)
            rho = output_reward(out.detach(), target, reward)
            if out.grad_fn is None:
                rel = torch.zeros_like(x)
            else:
                (rel,) = torch.autograd.grad(out, xg, rho, allow_unused=True)
                rel = torch.zeros_like(x) if rel is None else rel.detach()
    if return_output:
        return rel, out.detach()
    return rel


def relevance_budget(
    model: nn.Module,
    x: torch.Tensor,
    target=None,
    composite: Composite | None = None,
    *,
    reward: str = "output",
) -> dict[str, float]:
    r"""Where the output reward of an explanation went, summed over the batch.

    Runs :func:`explain`'s decomposition on a copy of ``model`` under
    :class:`spikelfp.lfp.LFPDiagnostics` and returns ``output`` (:math:`\sum \rho^{out}`),
    ``input`` (:math:`\sum R^{in}`), ``bias`` (the synapses' bias shares
    :math:`\sum b'_j n_j`), ``synapse_absorbed`` (their ε-stabilisers' shares),
    ``neuron_absorbed`` (the neurons' denominators', :math:`\sum n_t (D_t - V_t)`), and
    ``other = output - input - bias - synapse_absorbed - neuron_absorbed`` (layers the
    diagnostics do not track: pooling, snntorch/norse neurons). ``input + bias + absorbed``
    equals ``output`` up to rounding when ``other`` is 0.

    >>> from spikelfp import IF, Sequential
    >>> torch.manual_seed(0) and None
    >>> net = Sequential(nn.Linear(6, 4), IF(threshold=0.5))
    >>> b = relevance_budget(net, torch.rand(5, 2, 6), target=1)
    >>> sorted(b)
    ['bias', 'input', 'neuron_absorbed', 'other', 'output', 'synapse_absorbed']
    >>> abs(b["output"] - b["input"] - b["bias"] - b["synapse_absorbed"]
    ...     - b["neuron_absorbed"]) < 1e-4
    True
    """
    from ..lfp.diagnostics import LFPDiagnostics
    from ..lfp.step import lfp_step

    x = _check_x(x)
    clone = copy.deepcopy(model).eval()
    for p in clone.parameters():
        p.requires_grad_(True)
    net, comp = _prepare(clone, composite, None)
    diag = LFPDiagnostics(net, composite=comp)
    with diag:
        res = lfp_step(
            net,
            x.detach(),
            None,
            lambda out, _: output_reward(out, target, reward),
            composite=comp,
            return_input_reward=True,
        )
    rows = diag.summary()

    def total(kind: str, key: str) -> float:
        return float(sum(r[key] or 0.0 for r in rows if r["kind"] == kind))

    out = float(res.reward.double().sum())
    inp = float(res.input_reward.double().sum()) if res.input_reward is not None else 0.0
    budget = {
        "output": out,
        "input": inp,
        "bias": total("synapse", "to_bias"),
        "synapse_absorbed": total("synapse", "absorbed"),
        "neuron_absorbed": total("neuron", "absorbed"),
    }
    budget["other"] = out - inp - budget["bias"] - budget["synapse_absorbed"]
    budget["other"] -= budget["neuron_absorbed"]
    return budget


def surrogate_saliency(
    model: nn.Module, x: torch.Tensor, target=None, *, slope: float = 25.0
) -> torch.Tensor:
    r"""The baseline: surrogate-gradient × input, :math:`x \odot \partial c_y / \partial x`,
    with :math:`c_y = \sum_t S_{t,y}` the target's spike count and the fast-sigmoid surrogate
    of :func:`spikelfp.training.bptt.surrogate` (spikelfp neurons only). Shaped like ``x``;
    the model is left as it was (as in :func:`explain`).

    >>> from spikelfp import LIF, Sequential
    >>> net = Sequential(nn.Linear(6, 3), LIF(threshold=0.3))
    >>> surrogate_saliency(net, torch.rand(4, 2, 6), target=0).shape
    torch.Size([4, 2, 6])
    """
    from ..training.bptt import surrogate

    x = _check_x(x)
    with _untouched(model):
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            with surrogate(model, slope=slope):
                out = _call(model, xg)
            if isinstance(target, torch.Tensor) and target.is_floating_point():
                rho = output_reward(out.detach(), target)
            else:  # the gradient of the target's spike count: 1 on it at every step
                rho = output_reward(out.detach(), target, "uniform") * out.shape[0]
            if out.grad_fn is None:
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(out, xg, rho, allow_unused=True)
    return torch.zeros_like(x) if g is None else (g * x).detach()
