"""The rule protocol: rules are validated frozen dataclasses; one Composite (leaf types, the
rules' check and hidden-state hooks) serves LFP, the snntorch/norse interop and the BPTT
baseline."""

from __future__ import annotations

import copy
import dataclasses
import functools
import pickle

import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, RLIF, CubaLIF, Sequential
from spikelfp.hw_export.target import IntegerLIFRule, IntegerRLIFRule
from spikelfp.interop.norse import (
    LIBoxCellRule,
    LICellRule,
    LIFBoxCellRule,
    LIFCellRule,
    LIFSequenceRule,
    LISequenceRule,
)
from spikelfp.interop.snntorch import LeakyRule, RecurrentOneToOneRule, RLeakyRule, SynapticRule
from spikelfp.lfp import (
    NATIVE,
    ALIFRule,
    AvgPoolRule,
    BatchNormRule,
    Composite,
    CubaLIFRule,
    DropoutRule,
    EpsilonRule,
    GammaRule,
    LIFRule,
    LIRule,
    MaxPoolRule,
    RLIFRule,
    UnsupportedModuleError,
    ZPlusRule,
    default_composite,
)
from spikelfp.lfp.rules import CheckedRule, Rule, StatefulRule
from spikelfp.neurons.base import NeuronModule
from spikelfp.training.bptt import FastSigmoid, SurrogateRule, surrogate, surrogate_composite

_TRAINING = object()  # stands in for a TargetTraining (compared by identity)

RULES = [
    EpsilonRule(),
    ZPlusRule(),
    GammaRule(),
    AvgPoolRule(),
    MaxPoolRule(),
    BatchNormRule(),
    DropoutRule(),
    LIFRule(),
    LIRule(),
    CubaLIFRule(),
    ALIFRule(),
    RLIFRule(),
    SurrogateRule(),
    IntegerLIFRule(_TRAINING),
    IntegerRLIFRule(_TRAINING),
    LeakyRule(),
    RLeakyRule(),
    SynapticRule(),
    RecurrentOneToOneRule(),
    LIFCellRule(),
    LIFBoxCellRule(),
    LICellRule(),
    LIBoxCellRule(),
    LIFSequenceRule(),
    LISequenceRule(),
]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: type(r).__name__)
def test_rules_are_equal_hashable_immutable(rule):
    assert dataclasses.is_dataclass(rule) and isinstance(rule, Rule)
    twin = copy.copy(rule)
    assert twin == rule and hash(twin) == hash(rule) and len({rule, twin}) == 1
    field = next(iter(dataclasses.fields(rule)), None)
    if field is not None:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(rule, field.name, getattr(rule, field.name))
    else:
        with pytest.raises(dataclasses.FrozenInstanceError):
            rule.anything = 1
    assert not any(rule == other for other in RULES if type(other) is not type(rule))


def test_rules_compare_by_value_and_print_their_settings():
    assert EpsilonRule(0.5) == EpsilonRule(epsilon=0.5) != EpsilonRule(0.25)
    assert LIFRule() != LIRule()  # the same field, another rule
    assert GammaRule(0.0, 0.5) == GammaRule(gamma=0.5) != GammaRule()
    assert repr(EpsilonRule()) == "EpsilonRule(epsilon=0.0)"
    assert repr(ZPlusRule()) == "ZPlusRule(epsilon=0.0)"
    assert repr(GammaRule(gamma=0.5)) == "GammaRule(gamma=0.5, epsilon=0.0)"
    assert repr(LIFRule(1e-3)) == "LIFRule(epsilon=0.001)"
    assert repr(MaxPoolRule()) == "MaxPoolRule()"
    assert repr(SurrogateRule(5)) == "SurrogateRule(slope=5.0)"  # stored as a float
    assert repr(LeakyRule()) == "LeakyRule(epsilon=1e-06)"
    for rule in (GammaRule(gamma=0.5, epsilon=0.1), RLIFRule(0.5), LIFCellRule(2.0)):
        assert eval(repr(rule)) == rule  # noqa: S307 - the repr is the constructor call
    # the settings that select the maths are class constants, not fields
    assert (EpsilonRule.mode, ZPlusRule.mode, GammaRule.mode) == ("epsilon", "zplus", "gamma")
    assert [f.name for f in dataclasses.fields(GammaRule)] == ["epsilon", "gamma"]
    assert EpsilonRule().gamma == 0.0 and GammaRule().gamma == 0.25
    assert isinstance(LeakyRule(), CheckedRule) and isinstance(LeakyRule(), StatefulRule)
    assert isinstance(SurrogateRule(), CheckedRule) and not isinstance(LIFRule(), CheckedRule)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: EpsilonRule(-1), "EpsilonRule: epsilon must be a finite number >= 0, got -1"),
        (lambda: ZPlusRule(float("nan")), "ZPlusRule: epsilon must be a finite number >= 0"),
        (lambda: GammaRule(gamma=-0.5), "GammaRule: gamma must be a finite number >= 0, got -0.5"),
        (
            lambda: AvgPoolRule("big"),
            "AvgPoolRule: epsilon must be a finite number >= 0, got 'big'",
        ),
        (
            lambda: BatchNormRule(True),
            "BatchNormRule: epsilon must be a finite number >= 0, got True",
        ),
        (lambda: ALIFRule(float("inf")), "ALIFRule: epsilon must be a finite number >= 0, got inf"),
        (lambda: SurrogateRule(0), "SurrogateRule: slope must be a finite number > 0, got 0"),
        (lambda: IntegerLIFRule(_TRAINING, -1e-6), "IntegerLIFRule: epsilon must be a finite"),
        (lambda: LeakyRule(None), "LeakyRule: epsilon must be a finite number >= 0, got None"),
        (lambda: LIFCellRule(-2), "LIFCellRule: epsilon must be a finite number >= 0, got -2"),
    ],
)
def test_bad_settings_are_one_line_value_errors(make, message):
    with pytest.raises(ValueError) as err:
        make()
    text = str(err.value)
    assert text.startswith(message) and "\n" not in text and "pass e.g." in text
    assert EpsilonRule(1).epsilon == 1.0 and isinstance(EpsilonRule(1).epsilon, float)


def test_composite_is_immutable_and_with_methods_keep_every_setting():
    comp = Composite({nn.Linear: EpsilonRule(), LIF: LIFRule()}, leaf_types=(nn.RNN,))
    with pytest.raises(dataclasses.FrozenInstanceError):
        comp.rules = {}
    with pytest.raises(TypeError):
        comp.rules[nn.Conv1d] = EpsilonRule()
    with pytest.raises(TypeError, match="leaf_types must be module types"):
        Composite({}, leaf_types=("RNN",))
    net = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    named = comp.with_names({"1": ZPlusRule()})
    typed = named.with_rules({nn.Linear: GammaRule()})
    lower = typed.with_lower_rule(net, ZPlusRule(0.5), 1)
    for new in (named, typed, lower):
        assert new is not comp and new.leaf_types == (nn.RNN,)
    assert dict(lower.names) == {"1": ZPlusRule(), "0": ZPlusRule(0.5)}
    assert lower.rules[nn.Linear] == GammaRule() and lower.rules[LIF] == LIFRule()
    assert dict(comp.names) == {} and comp.rules[nn.Linear] == EpsilonRule()  # untouched
    assert comp == Composite({nn.Linear: EpsilonRule(), LIF: LIFRule()}, {}, (nn.RNN,))
    assert hash(comp) == hash(copy.deepcopy(comp)) and comp != named
    assert "leaf_types=(RNN,)" in repr(comp) and "names={'1': ZPlusRule" in repr(named)
    # copies and pickles keep the NATIVE marker (rules compare with `is NATIVE`)
    back = pickle.loads(pickle.dumps(default_composite()))
    assert back == default_composite() and back.rules[nn.Flatten] is NATIVE
    assert copy.deepcopy(default_composite()).rules[nn.Identity] is NATIVE


class _LibNeuron(nn.Module):
    """A library's recurrent neuron: it holds a submodule and keeps hidden state itself."""

    def __init__(self, bad: bool = False):
        super().__init__()
        self.rec = nn.Linear(3, 3, bias=False)
        self.register_buffer("mem", torch.zeros(3))
        self.bad = bad

    def forward(self, x):
        self.mem = self.mem * 0.5 + x + self.rec(x)
        return (self.mem > 1).float()


@dataclasses.dataclass(frozen=True)
class _LibRule:
    scale: float = 2.0

    def check(self, module):
        return "bad=True has no rule" if module.bad else None

    def hidden_state(self, module):
        return {"mem": None, "trace": None}  # the names count (a dict's keys are its names)

    def forward(self, module, x):
        module.mem = module.mem * 0.5 + self.scale * x  # replaces the buffer, like snntorch
        module.trace = x  # and adds an attribute the module did not have
        return module.mem


def test_leaf_types_check_and_hidden_state_in_one_composite():
    net = nn.Sequential(nn.Linear(3, 3), _LibNeuron(), nn.Linear(3, 3), _LibNeuron())
    plain = default_composite()
    # without leaf_types a neuron with children and no own parameters is a container
    assert [n for n, _, _ in plain.plan(net)] == ["0", "1.rec", "2", "3.rec"]
    leaf = dataclasses.replace(plain, leaf_types=(_LibNeuron,))
    with pytest.raises(UnsupportedModuleError) as err:
        leaf.plan(net)
    assert err.value.missing == (("1", "_LibNeuron"), ("3", "_LibNeuron"))
    comp = leaf.with_rules({_LibNeuron: _LibRule()})
    bad = nn.Sequential(nn.Linear(3, 3), _LibNeuron(bad=True), _LibNeuron(bad=True), nn.GRU(3, 3))
    with pytest.raises(UnsupportedModuleError) as err:  # every problem at once
        with comp.context(bad):
            pytest.fail("the context must not be entered")
    assert err.value.missing == (("3", "GRU"),)
    assert err.value.problems == (
        ("1", "_LibNeuron", "bad=True has no rule"),
        ("2", "_LibNeuron", "bad=True has no rule"),
    )
    msg = str(err.value)
    assert "no LFP rule for: 3 (GRU)" in msg and "2 (_LibNeuron): bad=True has no rule" in msg
    assert "\n" not in msg and all("forward" not in vars(m) for m in bad.modules())

    mem = net[1].mem
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.ones(2, 3, requires_grad=True)
    with comp.context(net):
        out = net(x)
        assert net[1].mem is not mem and hasattr(net[1], "trace")
        assert "forward" in vars(net[1]) and "forward" in vars(net[1].rec)  # its Linear: ε
    assert net[1].mem is mem and "mem" in net[1]._buffers  # the same buffer, put back
    assert not hasattr(net[1], "trace") and "forward" not in vars(net[1])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    # the rule ran: 2 x through the first Linear, the second layer's 0.5 mem + 2 z
    z = net[0](x)
    assert torch.equal(out, 2 * net[2](2 * z))
    with pytest.raises(RuntimeError, match="boom"), comp.context(net):  # restored on errors too
        net(x)
        raise RuntimeError("boom")
    assert net[1].mem is mem and not hasattr(net[1], "trace")


def test_snntorch_hidden_state_restored_by_the_one_composite():
    snn = pytest.importorskip("snntorch", reason="snntorch is not installed")
    from spikelfp.interop import interop_composite, snntorch_composite

    comp = snntorch_composite()
    assert type(comp) is Composite and comp.leaf_types == (snn.SpikingNeuron,)
    assert type(interop_composite()) is Composite
    net = nn.Sequential(nn.Linear(4, 3), snn.Leaky(beta=0.9, threshold=0.2, init_hidden=True))
    net(torch.rand(2, 4))  # hidden state left behind by a user's loop
    mem, reset = net[1].mem, getattr(net[1], "reset", None)
    with comp.context(net):
        out = torch.stack([net(x) for x in torch.rand(5, 2, 4)])
        out.sum().backward()
        assert net[1].mem is not mem
    assert net[1].mem is mem and getattr(net[1], "reset", None) is reset
    assert net[0].weight.grad.abs().sum() > 0
    with pytest.warns(DeprecationWarning, match="merged into spikelfp.lfp.Composite"):
        from spikelfp.interop import InteropComposite
    assert InteropComposite is Composite


def _old_surrogate_forward(module: nn.Module, slope: float):
    """The BPTT baseline before the composite: the module's sequence with FastSigmoid."""
    if isinstance(module, LI) or not isinstance(module, NeuronModule):
        return None
    return functools.partial(module.sequence, spike_fn=FastSigmoid(slope))


def _net(neuron: nn.Module) -> Sequential:
    torch.manual_seed(3)
    net = Sequential(nn.Linear(5, 4), neuron, nn.Linear(4, 3), LI(beta=0.8)).double()
    with torch.no_grad():
        net[0].weight.mul_(3)
    return net


@pytest.mark.parametrize(
    "make",
    [
        lambda: LIF(beta=0.9, threshold=0.5),
        lambda: IF(threshold=0.7),
        lambda: CubaLIF(alpha=0.6, beta=0.9, threshold=0.4),
        lambda: ALIF(beta=0.9, threshold=0.5),
        lambda: RLIF(4, beta=0.85, threshold=0.5),
    ],
    ids=["LIF", "IF", "CubaLIF", "ALIF", "RLIF"],
)
def test_surrogate_composite_equals_the_old_bptt_forward_bit_for_bit(make):
    slope = 7.0
    x = torch.rand(9, 2, 5, dtype=torch.float64)
    ref, new = _net(make()), _net(make())
    new.load_state_dict(ref.state_dict())
    patched = [(m, _old_surrogate_forward(m, slope)) for m in ref.modules()]
    for m, fwd in patched:
        if fwd is not None:
            m.forward = fwd
    out_ref, _ = ref(x)
    out_ref.square().sum().backward()
    for m, _ in patched:
        vars(m).pop("forward", None)

    before = {k: v.clone() for k, v in new.state_dict().items()}
    with surrogate(new, slope=slope) as same:
        assert same is new
        out, _ = new(x)
    out.square().sum().backward()
    assert torch.equal(out, out_ref) and out.grad_fn is not None
    grads = [(n, p.grad) for n, p in new.named_parameters()]
    assert all(g is not None for _, g in grads) and grads[0][1].abs().sum() > 0
    ref_grads = [(n, p.grad) for n, p in ref.named_parameters()]
    for (name, g), (_, g_ref) in zip(grads, ref_grads, strict=True):
        assert torch.equal(g, g_ref), name
    # the model is untouched: parameters, buffers, no forward left on any instance
    assert all(torch.equal(before[k], v) for k, v in new.state_dict().items())
    assert all("forward" not in vars(m) for m in new.modules())
    # and the surrogate forward is the module's own forward bit for bit
    assert torch.equal(out.detach(), new(x)[0])


def test_surrogate_composite_configuration():
    comp = surrogate_composite(5.0)
    assert comp.rule_for(LIF()) == SurrogateRule(5.0) == comp.rule_for(RLIF(3))
    assert comp.rule_for(LI()) is NATIVE and comp.rule_for(nn.GRU(2, 2)) is NATIVE
    assert comp == surrogate_composite(5) != surrogate_composite(6)

    class NoKernel(NeuronModule):
        def forward(self, x, state=None):
            return x, state

    with pytest.raises(UnsupportedModuleError, match="no surrogate-gradient forward for NoKernel"):
        with surrogate(nn.Sequential(nn.Linear(2, 2), NoKernel())):
            pass
    assert isinstance(UnsupportedModuleError("x"), TypeError)  # as the old TypeError
    with pytest.raises(ValueError, match="SurrogateRule: slope must be"):
        surrogate_composite(-1.0)
