"""Hardware profiles as data; the constraint check lists every violation with a fix."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from spikelfp import ALIF, IF, LI, LIF, CubaLIF, Sequential
from spikelfp.hw_export import (
    INT8,
    LOIHI2,
    PROFILES,
    SPECK,
    XYLO,
    HardwareProfile,
    ProfileViolationError,
    check_model,
    get_profile,
    quantize,
    register_profile,
)


def test_builtin_profiles_are_frozen_data():
    assert (XYLO.weight_bits, XYLO.state_bits, XYLO.decay, XYLO.max_shift) == (8, 16, "shift", 15)
    assert (XYLO.max_inputs, XYLO.max_hidden, XYLO.max_outputs) == (16, 1000, 8)
    assert XYLO.resets == ("subtract",)
    assert (LOIHI2.state_bits, LOIHI2.decay, LOIHI2.decay_bits) == (24, "mult", 12)
    assert LOIHI2.shared_threshold and LOIHI2.shared_decay
    assert SPECK.neuron_types == ("IF",) and "Linear" not in SPECK.layer_types
    assert INT8.weight_max == 127
    with pytest.raises(dataclasses.FrozenInstanceError):
        XYLO.weight_bits = 4
    assert {"loihi2", "xylo", "speck", "int8"} <= set(PROFILES)


def test_profile_validation_and_lookup():
    with pytest.raises(ValueError, match="decay"):
        HardwareProfile("x", decay="exp")
    with pytest.raises(ValueError, match="weight_bits"):
        HardwareProfile("x", weight_bits=1)
    with pytest.raises(ValueError, match="neuron types"):
        HardwareProfile("x", neuron_types=("Izhikevich",))
    with pytest.raises(ValueError, match="unknown hardware target"):
        get_profile("nope")
    assert get_profile("XYLO") is XYLO


def test_xylo_lists_every_violation_with_fixes():
    net = Sequential(
        nn.Linear(2312, 256),
        LIF(beta=0.9),
        nn.Dropout(0.1),
        nn.Linear(256, 10),
        LIF(beta=0.99999, reset="subtract", reset_delay=True),
    )
    report = check_model(net, "xylo", bits=8)
    got = {(v.layer, v.constraint) for v in report.violations}
    assert got == {
        ("layer 0 (Linear)", "bias"),  # Xylo adds biases to the membrane, not the current
        ("layer 3 (Linear)", "bias"),
        ("layer 1 (LIF)", "reset"),
        ("layer 4 (LIF)", "reset timing"),
        ("layer 4 (LIF)", "decay"),
        ("network", "inputs"),
        ("network", "outputs"),
    }
    assert all(v.fix for v in report.violations)
    assert any(w.constraint == "decay precision" for w in report.warnings)  # 0.9 -> 0.875
    text = str(report)
    assert "NOT DEPLOYABLE" in text and "reset='subtract'" in text
    with pytest.raises(ProfileViolationError) as err:
        report.raise_if_violated()
    assert len(err.value.violations) == 7
    assert str(err.value).count("\n") >= 5


def test_speck_is_convolutional_integrate_and_fire():
    net = Sequential(
        nn.Conv2d(2, 4, 3),
        IF(reset="subtract"),
        nn.MaxPool2d(2),
        ALIF(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 10),
        LI(),
    )
    report = check_model(net, "speck", input_shape=(2, 8, 8))
    kinds = [(v.layer.split(" (")[0], v.constraint) for v in report.violations]
    assert kinds == [
        ("layer 2", "layer type"),
        ("layer 3", "layer type"),
        ("layer 5", "layer type"),
        ("layer 6", "neuron type"),
    ]
    assert "Conv2d" in report.violations[2].fix
    kw = {"reset": "subtract"}  # DYNAP-CNN subtracts the threshold (as sinabs simulates it)
    good = Sequential(nn.Conv2d(2, 4, 3), IF(**kw), nn.AvgPool2d(2), nn.Conv2d(4, 2, 3), IF(**kw))
    assert check_model(good, "speck", bits=8, input_shape=(2, 8, 8)).ok
    zero = Sequential(nn.Conv2d(2, 4, 3), IF(reset="zero"))
    bad = check_model(zero, "speck", bits=8, input_shape=(2, 8, 8)).violations
    assert [v.constraint for v in bad] == ["reset"]


def test_loihi_shared_decay_and_threshold_note():
    net = Sequential(
        nn.Linear(4, 3),
        CubaLIF(
            alpha=torch.tensor([0.5, 0.6, 0.7]), beta=0.9, threshold=torch.tensor([1.0, 2.0, 3.0])
        ),
    )
    report = check_model(net, LOIHI2)
    assert [v.constraint for v in report.violations] == ["shared decay"]
    assert any("folded" in n for n in report.notes)


def test_user_defined_profile_limits_and_bits(monkeypatch):
    # registered in a copy of the table, so other tests see only the built-in targets
    import spikelfp.hw_export.profiles as profiles_module

    monkeypatch.setattr(profiles_module, "PROFILES", dict(profiles_module.PROFILES))
    mine = HardwareProfile(
        "mychip",
        weight_bits=4,
        state_bits=12,
        decay="shift",
        max_shift=6,
        resets=("zero",),
        max_hidden=8,
        max_fan_in=5,
        allow_bias=False,
    )
    register_profile(mine)
    net = Sequential(nn.Linear(10, 16), LIF(beta=0.9), nn.Linear(16, 2), LIF(beta=0.999))
    report = check_model(net, "mychip", bits=8)
    constraints = sorted(v.constraint for v in report.violations)
    assert constraints == sorted(
        ["bias", "bias", "fan-in", "fan-in", "decay", "hidden neurons", "weight bits"]
    )
    q = quantize(net, 8, mine)
    assert any(v.constraint == "weight bits" for v in check_model(q, mine).violations)


def test_quantized_check_warns_about_state_range():
    torch.manual_seed(0)
    net = Sequential(nn.Linear(2000, 4), LIF(beta=0.9, threshold=0.05))
    with torch.no_grad():
        net[0].weight.uniform_(0.001, 0.01)
    report = check_model(quantize(net, 8, "xylo"), "xylo")
    assert any(w.constraint == "state range" for w in report.warnings)
