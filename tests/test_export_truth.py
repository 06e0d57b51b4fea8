"""An export that tells the truth: refusals write nothing, silent changes are reported, bad
input is one line."""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from spikelfp import LIF, Sequential
from spikelfp.cli import build_parser, main
from spikelfp.hw_export import (
    HardwareProfile,
    ProfileViolationError,
    export,
    load_profile,
    sparsity_report,
)

nir = pytest.importorskip("nir", reason="export() writes NIR files")

from test_export_api import F_IN, C, _task  # noqa: E402  (the same toy task)


def _net(outlier=0.0):
    torch.manual_seed(0)
    net = Sequential(
        nn.Linear(F_IN, 8), LIF(beta=0.75, threshold=0.5), nn.Linear(8, C), LIF(beta=0.75)
    )
    with torch.no_grad():
        w1 = torch.zeros(8, F_IN)
        for c in range(C):
            w1[2 * c : 2 * c + 2, c * 4 : (c + 1) * 4] = 0.4
        net[0].weight.copy_(w1 + 0.01 * torch.randn(8, F_IN))
        net[0].weight[0, 15] += outlier
        net[0].bias.zero_()
        w2 = torch.zeros(C, 8)
        for c in range(C):
            w2[c, 2 * c : 2 * c + 2] = 0.6
        net[2].weight.copy_(w2)
        net[2].bias.zero_()
    return net


def test_pruning_only_when_asked():
    assert inspect.signature(export).parameters["prune"].default == 0.0
    args = build_parser().parse_args(["export", "run"])
    assert args.prune == 0.0 and not args.strict and not args.allow_violations
    assert args.bits is None  # the target's own weight width
    net = _net()
    rep = export(net, path=None, verbose=False)
    assert rep.prune == 0.0
    assert rep.sparsity.sparsity == pytest.approx(sparsity_report(net).sparsity)  # no change


def test_clipping_is_reported_and_strict_refuses_it(tmp_path):
    net = _net(outlier=1.0)  # one larger weight: the mse scale clips it at 4 bits
    rep = export(net, target="loihi2", bits=4, path=None, verbose=False)
    clip = [w for w in rep.constraints.warnings if w.constraint == "weight clipping"]
    assert clip and "layer 0" in clip[0].layer and "clipped" in clip[0].found
    assert rep.quantization.layers[0].clipped >= 1
    path = tmp_path / "n.nir"
    with pytest.raises(ProfileViolationError, match="weight clipping") as info:
        export(net, target="loihi2", bits=4, path=path, strict=True, verbose=False)
    assert not path.exists() and info.value.report is not None
    rep = export(net, target="loihi2", bits=4, scale_method="max", path=None, verbose=False)
    assert not [w for w in rep.constraints.warnings if w.constraint == "weight clipping"]


def test_accuracy_drop_is_loud_and_priced(tmp_path):
    data = _task()
    rep = export(_net(), bits=8, prune=0.0, path=None, data=data, verbose=False)
    assert rep.accuracy_drop_points <= 1.0
    assert not [w for w in rep.constraints.warnings if w.constraint == "accuracy"]
    rep = export(_net(), bits=2, prune=0.9, path=None, data=data, verbose=False)
    assert rep.accuracy_drop_points > 1.0
    (acc,) = [w for w in rep.constraints.warnings if w.constraint == "accuracy"]
    assert f"{rep.accuracy_drop_points:.2f} points lost" in acc.found
    with pytest.raises(ProfileViolationError, match="points") as info:
        export(
            _net(), bits=2, prune=0.9, path=tmp_path / "a.nir", data=data, strict=True,
            verbose=False,
        )  # fmt: skip
    assert "the exported network scores" in str(info.value)
    assert not (tmp_path / "a.nir").exists()


def test_violations_refuse_the_file_unless_allowed(tmp_path):
    data = _task()
    path = tmp_path / "s.nir"
    with pytest.raises(ProfileViolationError) as info:
        export(_net(), target="speck", path=path, data=data, verbose=False)
    msg = str(info.value)
    assert "nothing was written" in msg and "layer type" in msg and "neuron type" in msg
    assert "the exported network scores" in msg  # the cost of the silent LIF -> IF change
    assert not path.exists()
    rep = export(_net(), target="speck", path=path, allow_violations=True, verbose=False)
    assert path.is_file() and not rep.constraints.ok


@pytest.mark.parametrize("suffix", [".json", ".toml", ".yaml"])
def test_profile_files(tmp_path, suffix):
    body = {
        ".json": '{"name": "mine", "weight_bits": 6, "resets": ["zero"], "max_inputs": 64}',
        ".toml": 'name = "mine"\nweight_bits = 6\nresets = ["zero"]\nmax_inputs = 64\n',
        ".yaml": "name: mine\nweight_bits: 6\nresets: [zero]\nmax_inputs: 64\n",
    }[suffix]
    path = tmp_path / f"mine{suffix}"
    path.write_text(body)
    prof = load_profile(path)
    assert prof == HardwareProfile("mine", weight_bits=6, resets=("zero",), max_inputs=64)
    path.write_text(body.replace("max_inputs", "max_input"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['max_input'\]; known: name"):
        load_profile(path)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--target", "speck", "--bits", "9"], "--bits 9 is more than speck stores"),
        (["--target", "tpu"], "unknown --target 'tpu'; choose one of int8, loihi2, speck, xylo"),
        (["--target", "PROFILE"], "unknown key(s) ['weigth_bits']"),
        (["--target", "PROFILE_OK", "--bits", "8"], "more than mine stores (6-bit"),
    ],
)
def test_export_bad_input_is_one_line(tmp_path, capsys, flags, needle):
    (tmp_path / "p.json").write_text('{"name": "mine", "weigth_bits": 6}')
    (tmp_path / "ok.json").write_text('{"name": "mine", "weight_bits": 6}')
    flags = [
        {"PROFILE": str(tmp_path / "p.json"), "PROFILE_OK": str(tmp_path / "ok.json")}.get(f, f)
        for f in flags
    ]
    out = tmp_path / "o.nir"
    rc = main(["export", str(tmp_path / "no-run"), *flags, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not out.exists()
